"""Locust users never follow a redirect: the answer is an error that names it.

The users run in a subprocess (importing Locust gevent-patches a process) against
``Redirecting``, a threaded HTTP server in this process that answers every request with a
307 to ``elsewhere``, a second server that counts what reaches it. Checked: the predict user
and the job user record each request as an error saying where it was sent, the stage
statistics carry that text as their top error (what summary.json shows), and nothing, body
included, reached the other server.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pandas as pd
import pytest

from analysis.stages import window_stats
from tests.fakes import reply, serving

CLIENT = r"""
import sys
from pathlib import Path
from locust.env import Environment
from loadtests import jobusers, users
from loadtests.recorder import RequestRecorder

host, out = sys.argv[1], Path(sys.argv[2])
env = Environment()
recorder = RequestRecorder(out)
env.events.request.add_listener(recorder.on_request)
for base, send in ((users.HttpPredict, "send_predict"), (jobusers.JobUser, "job")):
    cls = type("U", (base,), {"abstract": False, "host": host})
    cls.bodies = [b'{"instances": [[0]]}']
    user = cls(env)
    user.on_start()
    for _ in range(3):
        getattr(user, send)()
recorder.close()
"""


@pytest.fixture
def redirecting() -> Iterator[tuple[str, list[str]]]:
    """(URL of a server redirecting everything to another one, what that other one saw)."""
    seen: list[str] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.path)
            reply(self, 202, b'{"job_id": "abc"}')

        do_GET = do_POST

        def log_message(self, *args: object) -> None:
            pass

    class Redirecting(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            reply(self, 307, headers={"Location": f"{other}{self.path}"})

        def log_message(self, *args: object) -> None:
            pass

    with serving(Elsewhere) as other, serving(Redirecting) as url:
        yield url, seen


def test_load_users_record_a_redirect_as_an_error_and_never_follow_it(
    redirecting: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, seen = redirecting
    proc = subprocess.run([sys.executable, "-c", CLIENT, url, str(tmp_path)],
                          capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).parents[2])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with next(tmp_path.glob("requests-*.csv")).open() as f:
        rows = list(csv.DictReader(f))
    by_name = {name: [r for r in rows if r["name"] == name] for name in ("predict", "submit",
                                                                           "job")}  # fmt: skip
    assert all(len(found) == 3 for found in by_name.values()), json.dumps(rows)[:500]
    for row in rows:
        assert row["outcome"] == "error"
        assert "HTTP 307 redirect to another origin" in row["error"], row
    assert all(r["error"].startswith("submit answered") for r in by_name["job"])
    assert seen == []  # not one request, body or not, reached the other server
    frame = pd.DataFrame(rows).assign(latency_ms=lambda f: f["latency_ms"].astype(float),
                                      bytes=0)  # fmt: skip
    assert "redirect to another origin" in window_stats(frame, 1.0)["top_error"]
