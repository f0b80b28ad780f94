"""The harness's own requests go straight to the server named: no proxy, no redirect, capped.

``FakeServer`` is a threaded HTTP server in this process answering each path as told and
counting what it was asked; ``FakeProxy`` stands in for an HTTP proxy set in the environment
(it answers 502 to anything and counts it). Checked through the functions servecap's parts
call: readiness probes, metadata discovery, warm-up/verify requests, metrics scrapes, gRPC.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from loadtests.collectors.prometheus import PrometheusSampler
from targets.common.loopback import MAX_READ_BYTES, RefusedAnswer, redirect_error
from targets.kind import MetricsSource
from targets.launchers.base import probe_http
from targets.launchers.external import probe
from targets.protocols import Endpoint, get_protocol
from targets.protocols.base import grpc_unary
from tests.fakes import reply, serving

Answer = tuple[int, dict[str, str], bytes]


class FakeServer:
    """Answers ``routes[path]`` (status, headers, body); 404 elsewhere; counts requests."""

    def __init__(self, routes: dict[str, Answer], stack: contextlib.ExitStack) -> None:
        self.routes = routes
        self.seen: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.seen.append(self.path)
                status, headers, body = outer.routes.get(self.path, (404, {}, b"no"))
                reply(self, status, body, headers)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.url = stack.enter_context(serving(Handler))


@pytest.fixture
def servers() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as stack:
        yield stack


def serve(stack: contextlib.ExitStack, routes: dict[str, Answer]) -> FakeServer:
    return FakeServer(routes, stack)


INFO = (200, {}, b'{"input_shape": [32, 32, 3], "input_range": [0, 1]}')


def metrics_source(url: str) -> MetricsSource:
    return MetricsSource(url=url, requests="r", inferences="i", executions="e",
                         queue_time="q", model_time="m")  # fmt: skip


@pytest.fixture
def proxied(servers: contextlib.ExitStack, monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    """A fake proxy set in the environment the way a corporate host sets it, no no_proxy."""
    proxy = serve(servers, {})
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(var, proxy.url)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return proxy


def test_health_metadata_requests_and_scrapes_never_go_through_a_proxy(
    servers: contextlib.ExitStack, proxied: FakeServer, tmp_path: Path
) -> None:
    target = serve(servers, {"/healthz": (200, {}, b"ok"), "/v1/info": INFO,
                             "/metrics": (200, {}, b"up 1\n")})  # fmt: skip
    endpoint = Endpoint(protocol="servecap", base_url=target.url)
    assert probe_http(f"{target.url}/healthz")
    assert probe(f"{target.url}/healthz", target.url) is None
    assert get_protocol("servecap").discover(endpoint).shape == (32, 32, 3)
    source = metrics_source(f"{target.url}/metrics")
    assert PrometheusSampler(tmp_path / "m.csv", source).sample_once()
    assert proxied.seen == []
    assert target.seen == ["/healthz", "/healthz", "/v1/info", "/metrics"]


def test_grpc_calls_never_go_through_a_proxy(proxied: FakeServer) -> None:
    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(2))
    echo = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.S", {"E": echo}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        endpoint = Endpoint(protocol="v2-grpc", base_url="http://127.0.0.1:9",
                            grpc_target=f"127.0.0.1:{port}")  # fmt: skip
        assert grpc_unary(endpoint, "/t.S/E", b"direct", timeout_s=5) == b"direct"
    finally:
        server.stop(0)
    assert proxied.seen == []


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_an_error_and_never_followed(
    servers: contextlib.ExitStack, status: int
) -> None:
    elsewhere = serve(servers, {"/v1/predict": (200, {}, b"{}"), "/v1/info": INFO,
                                "/healthz": (200, {}, b"ok")})  # fmt: skip
    moved = {"Location": f"{elsewhere.url}/v1/predict"}
    target = serve(servers, {"/v1/predict": (status, moved, b""),
                             "/v1/info": (status, {"Location": "/v1/info2"}, b""),
                             "/healthz": (status, {"Location": f"{elsewhere.url}/healthz"},
                                          b"")})  # fmt: skip
    endpoint = Endpoint(protocol="servecap", base_url=target.url)
    protocol = get_protocol("servecap")
    body, headers = b'{"instances": []}', {"Content-Type": "application/json"}
    with pytest.raises(RefusedAnswer, match="redirect to another origin"):
        protocol.infer(endpoint, body, headers, timeout_s=5)  # warm-up and verify send this
    with pytest.raises(RefusedAnswer, match="redirect to the same origin"):
        protocol.discover(endpoint)
    assert not probe_http(f"{target.url}/healthz")
    assert "another origin" in str(probe(f"{target.url}/healthz", target.url))
    assert elsewhere.seen == []


def test_the_redirect_error_names_the_origin() -> None:
    base = "http://127.0.0.1:8000/v1/predict"
    assert "the same origin" in redirect_error(base, 307, "/v2/predict")
    assert "the same origin" in redirect_error(base, 307, "http://127.0.0.1:8000/x")
    assert "another origin" in redirect_error(base, 307, "http://127.0.0.1:8001/x")
    assert "another origin" in redirect_error(base, 301, "https://127.0.0.1:8000/x")
    assert "without a Location" in redirect_error(base, 302, None)


def test_metadata_and_metrics_past_the_cap_fail_clearly(
    servers: contextlib.ExitStack, tmp_path: Path
) -> None:
    huge = b"#" * (MAX_READ_BYTES + 1)
    target = serve(servers, {"/v1/info": (200, {}, huge), "/metrics": (200, {}, huge),
                             "/v2/models/m": (200, {}, huge)})  # fmt: skip
    with pytest.raises(RefusedAnswer, match=f"more than {MAX_READ_BYTES} bytes"):
        get_protocol("servecap").discover(Endpoint(protocol="servecap", base_url=target.url))
    with pytest.raises(RefusedAnswer, match="MAX_READ_BYTES"):
        get_protocol("v2-rest").discover(Endpoint(protocol="v2-rest", base_url=target.url,
                                                  model_name="m"))  # fmt: skip
    sampler = PrometheusSampler(tmp_path / "m.csv", metrics_source(f"{target.url}/metrics"))
    with pytest.raises(RefusedAnswer, match="more than"):
        sampler.sample_once()


def test_a_dead_port_is_still_an_os_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert not probe_http(f"http://127.0.0.1:{port}/healthz")
