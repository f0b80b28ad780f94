"""nginx in front of the app server: a valid self-contained conf, loopback only, JSON errors,
keep-alive to the app server, per-run folder rewritten, nothing left running.

The live tests run the real nginx (through the real process launcher) in front of
``FakeAppServer``, a small HTTP server in this process standing in for gunicorn + Django.
"""

from __future__ import annotations

import http.server
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from targets.common import nginx
from targets.common.django_front import DjangoConfig
from targets.config import TargetConfig
from targets.kind import Kind
from targets.launch_types import HOST, Placement, ProcessSpec
from targets.launchers.process import ProcessLauncher
from targets.registry import target_config
from tests.ports import free_port

pytestmark = pytest.mark.skipif(
    shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/usr/bin") is None,
    reason="nginx is not installed (scripts/system-deps.sh installs it)",
)


LIMIT = 2 * 1024 * 1024


def nginx_test(conf: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    argv = [*nginx.nginx_argv(prefix, conf)[:-2], "-t"]  # without -g 'daemon off; ...'
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def test_conf_passes_nginx_t_and_binds_loopback_only(tmp_path: Path) -> None:
    prefix = tmp_path / "run"
    conf = nginx.write_conf(prefix, "127.0.0.1", 18401, 18402, 5 * 1024 * 1024)
    result = nginx_test(conf, prefix)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    text = conf.read_text()
    assert re.findall(r"^\s*listen\s+(\S+)", text, re.M) == ["127.0.0.1:18401"]
    assert "server 127.0.0.1:18402;" in text and re.search(r"^\s*keepalive \d+;", text, re.M)
    assert "client_max_body_size 5242880;" in text
    assert "worker_processes 1;" in text and "access_log off;" in text
    # Everything nginx writes stays in the prefix.
    for path in re.findall(r"^\s*(?:pid|\w+_temp_path|error_log)\s+(/\S+?);", text, re.M):
        assert path.startswith(str(prefix.resolve())), path
    assert len(re.findall(r"_temp_path ", text)) == len(nginx.TEMP_PATHS)


def test_ipv6_loopback_listen(tmp_path: Path) -> None:
    text = nginx.render_conf(tmp_path, "::1", 18401, 18402, 4096)
    assert re.findall(r"^\s*listen\s+(\S+)", text, re.M) == ["[::1]:18401"]
    assert "server 127.0.0.1:18402;" in text  # the app server is always on IPv4 loopback


def test_run_dir_is_per_target_and_port_and_rewritten() -> None:
    name = "weird name/../x"
    prefix = nginx.run_dir(name, 18409)
    assert prefix.name == "weird_name_.._x-18409" and prefix.parent.name == "nginx"
    try:
        nginx.write_conf(prefix, "127.0.0.1", 18409, 18410, 4096)
        stale = prefix / "logs" / "error.log"
        stale.write_text("old run")
        nginx.write_conf(prefix, "127.0.0.1", 18409, 18410, 8192)
        assert not stale.exists()  # a launch starts from an empty folder
        assert "client_max_body_size 8192;" in (prefix / "nginx.conf").read_text()
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


# ------------------------------------------------------------------------------ live


class FakeAppServer(http.server.ThreadingHTTPServer):
    """Stands in for gunicorn + Django: /healthz, /v1/predict answers 200 or 422 by body,
    /drop closes the connection without answering; counts the connections it accepts."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _AppHandler)
        self.connections = 0
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _AppHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeAppServer

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == "/drop":
            self.close_connection = True
            return
        status = 422 if body == b"bad" else 200
        doc = {"path": self.path, "bytes": len(body), "host": self.headers.get("host")}
        if status != 200:
            doc = {"error": "fake: bad body"}
        out = orjson.dumps(doc)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = _serve
    do_POST = _serve


class NginxOnly(Kind):
    """A kind whose plan is just nginx (the fake app server already runs in-process)."""

    name = "nginx-only"

    def process_plan(
        self, name: str, config: TargetConfig, placement: Placement = HOST
    ) -> list[ProcessSpec]:
        assert isinstance(config, DjangoConfig)
        return [nginx.nginx_spec(name, config.host, config.port, config.app_port,
                                 config.max_body_bytes)]  # fmt: skip


@pytest.fixture
def app_server() -> Iterator[FakeAppServer]:
    server = FakeAppServer()
    yield server
    server.shutdown()
    server.server_close()


def request(url: str, body: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read()), dict(err.headers)


def test_nginx_proxies_with_json_errors_and_leaves_nothing(
    app_server: FakeAppServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("targets.launchers.process.get_kind", lambda kind: NginxOnly())
    config = target_config(
        kind="django-embedded",
        port=free_port(),
        internal_port=app_server.port,
        model_path=str(tmp_path),
        max_body_bytes=LIMIT,
        ready_timeout_s=20,
    )
    with ProcessLauncher().launch("ngx", config, tmp_path / "logs") as running:
        procs = [psutil.Process(running.pids[0])]
        procs += procs[0].children(recursive=True)
        assert len(procs) == 2  # master + worker_processes 1
        listening = {
            (c.laddr.ip, c.laddr.port)
            for p in procs
            for c in p.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
        assert listening == {("127.0.0.1", config.port)}

        base = running.base_url
        # At the limit: passed on (over 1 MiB, so nginx buffers it in its temp folder, which
        # its workers must be able to write, also when they run as nobody under root).
        status, doc, _ = request(f"{base}/v1/predict", b"x" * LIMIT)
        assert status == 200 and doc["bytes"] == LIMIT
        assert doc["host"] == "127.0.0.1"  # the client's host name reaches Django
        status, doc, _ = request(f"{base}/v1/predict", b"bad")  # app errors pass through
        assert (status, doc) == (422, {"error": "fake: bad body"})
        status, doc, headers = request(f"{base}/v1/predict", b"x" * (LIMIT + 1))
        assert (status, doc) == (413, {"error": f"body exceeds {LIMIT} bytes"})
        assert headers["Content-Type"] == "application/json"
        status, doc, headers = request(f"{base}/drop")
        assert status == 502 and "error" in doc and headers["Content-Type"] == "application/json"

        assert request(f"{base}/healthz")[0] == 200  # /drop closed the kept connection
        before = app_server.connections
        for _ in range(5):
            assert request(f"{base}/healthz")[0] == 200
        assert app_server.connections == before  # kept-alive upstream connection reused
        log = nginx.run_dir("ngx", config.port) / "logs" / "error.log"
        assert log.is_file()
    assert not psutil.wait_procs(procs, timeout=5)[1]
    shutil.rmtree(nginx.run_dir("ngx", config.port))
