"""``load.connections``: keep-alive reuses the user's connection, per-request opens one each time.

The predict user runs in a subprocess (importing Locust gevent-patches a process) against a
fake HTTP/1.1 server in this process that notes the client port of every request. Per request
matters to replicas behind SO_REUSEPORT: the kernel balances connections, not requests.
"""

from __future__ import annotations

import subprocess
import sys
from http.server import BaseHTTPRequestHandler

import pytest

from tests.fakes import reply, serving

CLIENT = r"""
import sys
from locust.env import Environment
from loadtests import users

host, connections = sys.argv[1], sys.argv[2]
cls = type("U", (users.HttpPredict,), {"abstract": False, "host": host,
                                       "connections": connections})
cls.bodies = [b'{"instances": [[0]]}']
user = cls(Environment())
user.on_start()
for _ in range(6):
    user.send_predict()
"""


@pytest.mark.parametrize(("connections", "ports"), [("keep-alive", 1), ("per-request", 6)])
def test_requests_travel_on_one_connection_or_each_on_its_own(connections: str, ports: int
                                                              ) -> None:  # fmt: skip
    seen: list[int] = []

    class Noting(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive unless the client asks to close

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(self.client_address[1])
            reply(self, 200, b'{"classes": [0], "probabilities": [[1.0]]}',
                  {"Content-Type": "application/json"})  # fmt: skip

        def log_message(self, *args: object) -> None:
            pass

    with serving(Noting) as url:
        proc = subprocess.run([sys.executable, "-c", CLIENT, url, connections],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(seen) == 6 and len(set(seen)) == ports, seen
