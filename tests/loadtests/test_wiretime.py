"""Wire timing of predict requests (loadtests.wiretime through the HttpPredict user).

The Locust side runs in a subprocess (importing Locust gevent-patches a process; the test
process stays unpatched) against ``FakePredictServer``, a threaded HTTP server in this
process that answers each predict after the delay the request asks for. Checked: every
request's wire time covers the server's delay and never exceeds Locust's own timing; the
recorder's ``service_ms`` + ``client_ms`` add up to Locust's figure; concurrent users each
get their own request's stamps; a request that never reached the wire carries none.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import serving

CLIENT = r"""
import json, sys
from pathlib import Path
import gevent
from locust.env import Environment
from loadtests import users, wiretime
from loadtests.recorder import RequestRecorder

host, out = sys.argv[1], Path(sys.argv[2])
events = []
env = Environment()
env.events.request.add_listener(lambda **kw: events.append(
    {"name": kw["name"], "response_time": kw["response_time"],
     "context": kw["context"], "exception": repr(kw["exception"])}))
recorder = RequestRecorder(out)
env.events.request.add_listener(recorder.on_request)

def user(delay_ms):
    cls = type("U", (users.HttpPredict,), {"abstract": False, "host": host})
    cls.bodies = [json.dumps({"delay_ms": delay_ms}).encode()]
    u = cls(env)
    u.on_start()
    return u

def send(delay_ms, n):
    u = user(delay_ms)
    for _ in range(n):
        u.send_predict({"delay": delay_ms})

gevent.joinall([gevent.spawn(send, 120, 3), gevent.spawn(send, 15, 12)])
wiretime.begin()
missing = wiretime.read()
dead = type("D", (users.HttpPredict,), {"abstract": False, "host": "http://127.0.0.1:9"})
dead.bodies = [b"{}"]
d = dead(env)
d.on_start()
d.send_predict()
recorder.close()
print(json.dumps({"events": events, "missing": missing}))
"""


class FakePredictServer(BaseHTTPRequestHandler):
    """Answers POST /v1/predict after the ``delay_ms`` given in the JSON body (keep-alive)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(json.loads(body)["delay_ms"] / 1000)
        answer = b'{"probabilities": [1.0]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def fake_server() -> Iterator[str]:
    with serving(FakePredictServer) as url:
        yield url


@pytest.fixture(scope="module")
def client_run(fake_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One client run (a real Locust user in a subprocess) read by every test below."""
    tmp_path = tmp_path_factory.mktemp("wiretime")
    proc = subprocess.run(
        [sys.executable, "-c", CLIENT, fake_server, str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    with next(tmp_path.glob("requests-*.csv")).open() as f:
        result["rows"] = list(csv.DictReader(f))
    return result


def test_wire_time_covers_the_server_and_stays_inside_locusts_timing(
    client_run: dict[str, Any],
) -> None:
    events = [e for e in client_run["events"] if e["context"].get("delay")]
    assert len(events) == 15
    for event in events:
        context, delay_ms = event["context"], event["context"]["delay"]
        assert event["exception"] == "None"
        assert delay_ms <= context["wire_ms"] <= event["response_time"]
        assert abs(context["sent_ts"] - time.time()) < 60
    # Concurrent users: the 15 ms requests ran while 120 ms ones were in flight, and each got
    # its own request's stamps, not the other greenlet's.
    fast = [e["context"]["wire_ms"] for e in events if e["context"]["delay"] == 15]
    assert len(fast) == 12 and max(fast) < 100


def test_recorder_splits_locusts_time_into_wire_and_client(client_run: dict[str, Any]) -> None:
    rows = [r for r in client_run["rows"] if r["outcome"] == "ok"]
    events = [e for e in client_run["events"] if e["exception"] == "None"]
    assert len(rows) == len(events) == 15
    for row, event in zip(rows, events, strict=True):
        service, client = float(row["service_ms"]), float(row["client_ms"])
        assert service == pytest.approx(event["context"]["wire_ms"], abs=0.001)
        assert service + client == pytest.approx(event["response_time"], abs=0.002)
        assert float(row["latency_ms"]) == service and client >= 0


def test_no_stamps_without_a_sent_request(client_run: dict[str, Any]) -> None:
    assert client_run["missing"] == {}
    refused = [e for e in client_run["events"] if e["exception"] != "None"]
    assert len(refused) == 1 and "wire_ms" not in refused[0]["context"]
    row = next(r for r in client_run["rows"] if r["outcome"] == "error")
    assert float(row["client_ms"]) == 0.0
