"""Django forward mode (the chains b, c, d), in process: targets.common.forward.

Django's test client in forward mode against small real HTTP servers standing in for the model
tier: ``FakeModelServer`` (the servecap schema, as the Flask and FastAPI targets speak it) and
``FakeTFServing`` (TF Serving's documented REST API, which it validates: a request in another
format gets TF Serving's 400). Both answer class = (sum of the image's pixels) mod 10, so a test
can tell which pixels arrived. They listen on 127.0.0.1 only.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
from django.test import Client

from targets.common.forward import ForwardService, Upstream
from targets.common.payload import encode_request
from targets.common.settings import ServerSettings
from targets.django_embedded.conf import configure
from targets.django_embedded.wsgi import create_app
from tests.answers import timings
from tests.ports import free_port

IMAGES = np.random.default_rng(2).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
EXPECTED = (IMAGES.reshape(3, -1).astype(np.int64).sum(axis=1) % 10).tolist()
TF_PREDICT = "/v1/models/cifar10_cnn:predict"
TF_STATUS = "/v1/models/cifar10_cnn"


def fake_probabilities(pixels: Any) -> list[list[float]]:
    arr = np.asarray(pixels, dtype=np.float64)
    classes = arr.reshape(len(arr), -1).sum(axis=1).astype(np.int64) % 10
    probs = np.full((len(arr), 10), 0.01)
    probs[np.arange(len(arr)), classes] = 0.91
    return probs.tolist()


def valid_images(pixels: Any) -> str | None:
    """Why ``pixels`` is not a [n,32,32,3] list of numbers in 0..255 (None when it is)."""
    try:
        arr = np.asarray(pixels, dtype=np.float64)
    except (ValueError, TypeError):
        return "not a rectangular numeric array"
    if arr.ndim != 4 or arr.shape[1:] != (32, 32, 3) or len(arr) == 0:
        return f"wrong shape {list(arr.shape)}"
    if arr.min() < 0 or arr.max() > 255:
        return "pixel out of range"
    return None


class FakeUpstream(http.server.ThreadingHTTPServer):
    """Base of the fake model servers: records requests and connections, can be told to
    answer something else (``override``), to wait (``delay_s``) or to hold (``gate``)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str, Any]] = []
        self.connections = 0
        self.override: tuple[int, bytes, dict[str, str]] | None = None
        self.delay_s = 0.0
        self.gate: threading.Event | None = None
        self.close_after_each = False
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)

    def answer(self, method: str, path: str, doc: Any) -> tuple[int, bytes, dict[str, str]]:
        raise NotImplementedError


class FakeModelServer(FakeUpstream):
    """Stands in for the Flask/FastAPI model server: servecap's /v1/predict and /healthz."""

    def answer(self, method: str, path: str, doc: Any) -> tuple[int, bytes, dict[str, str]]:
        if method == "GET" and path == "/healthz":
            return 200, orjson.dumps({"status": "ok", "model_version": 5}), {}
        if method != "POST" or path != "/v1/predict":
            return 404, orjson.dumps({"error": "no such path"}), {}
        if not isinstance(doc, dict) or set(doc) != {"images"}:
            return 422, orjson.dumps({"error": "fake: expected {'images': ...}"}), {}
        problem = valid_images(doc["images"])
        if problem:
            return 422, orjson.dumps({"error": f"fake: {problem}"}), {}
        probs = fake_probabilities(doc["images"])
        classes = np.argmax(probs, axis=1).tolist()
        return 200, orjson.dumps({"classes": classes, "probabilities": probs}), {}


class FakeTFServing(FakeUpstream):
    """Stands in for TF Serving's REST API, validating the documented predict request."""

    def answer(self, method: str, path: str, doc: Any) -> tuple[int, bytes, dict[str, str]]:
        if method == "GET" and path == TF_STATUS:
            status = {"version": "3", "state": "AVAILABLE", "status": {"error_code": "OK"}}
            return 200, orjson.dumps({"model_version_status": [status]}), {}
        if method != "POST" or path != TF_PREDICT:
            return 404, orjson.dumps({"error": f"Malformed request: {method} {path}"}), {}
        if not isinstance(doc, dict) or set(doc) != {"signature_name", "instances"}:
            return 400, orjson.dumps({"error": "fake TF Serving: expected row format"}), {}
        if doc["signature_name"] != "serving_default":
            return 400, orjson.dumps({"error": "fake TF Serving: unknown signature"}), {}
        problem = valid_images(doc["instances"])
        if problem:
            return 400, orjson.dumps({"error": f"fake TF Serving: {problem}"}), {}
        return 200, orjson.dumps({"predictions": fake_probabilities(doc["instances"])}), {}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real servers
    server: FakeUpstream

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            doc = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            doc = "<not json>"
        self.server.requests.append((self.command, self.path, doc))
        if self.server.gate is not None:
            self.server.gate.wait(5)
        if self.server.delay_s:
            time.sleep(self.server.delay_s)
        status, body, headers = self.server.override or self.server.answer(
            self.command, self.path, doc
        )
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        if self.server.close_after_each:  # close silently, without "Connection: close"
            self.close_connection = True

    do_GET = _serve
    do_POST = _serve


@pytest.fixture(scope="module", autouse=True)
def _django() -> None:
    """Django's settings are process-wide and set once: with the default limits, whichever
    test comes first (per-test limits are the backend's, checked by the view)."""
    configure(ServerSettings())


_UPSTREAMS: list[Upstream] = []


@pytest.fixture(autouse=True)
def _close_pools() -> Iterator[None]:
    yield
    while _UPSTREAMS:
        _UPSTREAMS.pop().close()


@pytest.fixture
def model_server() -> Iterator[FakeModelServer]:
    server = FakeModelServer()
    yield server
    server.stop()


@pytest.fixture
def tf_serving() -> Iterator[FakeTFServing]:
    server = FakeTFServing()
    yield server
    server.stop()


def forward_client(
    url: str, kind: str = "servecap", timeout_s: float = 5.0, **settings: int
) -> tuple[Client, ForwardService]:
    upstream = Upstream(url, kind, timeout_s=timeout_s, connect_timeout_s=1.0)  # type: ignore[arg-type]
    _UPSTREAMS.append(upstream)
    svc = ForwardService(upstream, ServerSettings(**settings))  # type: ignore[arg-type]
    create_app(svc)
    return Client(), svc


def post(c: Client, images: np.ndarray = IMAGES, encoding: str = "json") -> Any:
    body, ctype = encode_request(images, encoding)
    return c.post("/v1/predict", data=body, content_type=ctype)


# ------------------------------------------------------------------------------ unit: forward


@pytest.mark.parametrize("encoding", ["json", "base64", "jpeg"])
def test_forward_to_model_server_every_encoding(
    model_server: FakeModelServer, encoding: str
) -> None:
    c, _ = forward_client(model_server.url)
    images = IMAGES if encoding != "jpeg" else np.full((2, 32, 32, 3), 100, dtype=np.uint8)
    resp = post(c, images, encoding)
    assert resp.status_code == 200, resp.content
    doc = resp.json()
    if encoding != "jpeg":  # JPEG is lossy: the sums differ slightly
        assert doc["classes"] == EXPECTED
    assert len(doc["probabilities"]) == len(images)
    ((method, path, sent),) = model_server.requests
    assert (method, path) == ("POST", "/v1/predict")
    assert set(sent) == {"images"}
    assert isinstance(sent["images"][0][0][0][0], int)  # whole pixels go as JSON integers
    if encoding != "jpeg":
        assert sent["images"] == IMAGES.tolist()
    spans = timings(resp.headers["Server-Timing"])
    assert list(spans) == ["decode", "upstream", "app"]
    assert spans["app"] >= spans["upstream"] >= 0


def test_forward_sends_fractional_pixels_as_floats(model_server: FakeModelServer) -> None:
    c, _ = forward_client(model_server.url)
    pixels = np.full((1, 32, 32, 3), 1.5).tolist()
    resp = c.post(
        "/v1/predict", data=orjson.dumps({"images": pixels}), content_type="application/json"
    )
    assert resp.status_code == 200
    assert model_server.requests[0][2]["images"] == pixels


@pytest.mark.parametrize("encoding", ["json", "base64"])
def test_forward_to_tf_serving_rest(tf_serving: FakeTFServing, encoding: str) -> None:
    c, _ = forward_client(tf_serving.url, "tfserving-rest")
    resp = post(c, IMAGES, encoding)
    assert resp.status_code == 200, resp.content
    doc = resp.json()
    assert set(doc) == {"classes", "probabilities"}  # servecap's answer, not TF Serving's
    assert doc["classes"] == EXPECTED
    np.testing.assert_allclose(np.asarray(doc["probabilities"]).sum(axis=1), 1.0, rtol=1e-5)
    ((method, path, sent),) = tf_serving.requests
    assert (method, path) == ("POST", TF_PREDICT)
    assert sent["signature_name"] == "serving_default"
    assert sent["instances"] == IMAGES.tolist()
    health = c.get("/healthz")
    assert health.status_code == 200 and health.json()["model_version"] == 3
    assert health.json()["upstream"] == {"url": tf_serving.url, "protocol": "tfserving-rest"}


def test_tf_serving_error_passes_through_as_4xx(tf_serving: FakeTFServing) -> None:
    c, _ = forward_client(tf_serving.url, "tfserving-rest")
    tf_serving.override = (400, b'{"error": "Input to reshape is a tensor with 7 values"}', {})
    resp = post(c)
    assert resp.status_code == 400
    assert resp.json() == {"error": "Input to reshape is a tensor with 7 values"}


def test_tf_serving_answer_that_is_not_a_prediction_is_502(tf_serving: FakeTFServing) -> None:
    c, _ = forward_client(tf_serving.url, "tfserving-rest")
    tf_serving.override = (200, b'{"outputs": [1, 2]}', {})
    resp = post(c)
    assert resp.status_code == 502 and "not a prediction" in resp.json()["error"]


@pytest.mark.parametrize(
    ("body", "ctype", "status"),
    [
        (b"{", "application/json", 400),
        (b"", "application/json", 400),
        (b'{"images": [[1]]}', "application/json", 422),
        (b"hello", "text/plain", 415),
    ],
)
def test_malformed_requests_stop_at_the_django_tier(
    model_server: FakeModelServer, body: bytes, ctype: str, status: int
) -> None:
    c, _ = forward_client(model_server.url)
    resp = c.post("/v1/predict", data=body, content_type=ctype)
    assert resp.status_code == status and "error" in resp.json()
    assert model_server.requests == []


def test_oversized_body_is_413_and_not_forwarded(model_server: FakeModelServer) -> None:
    c, _ = forward_client(model_server.url, max_body_bytes=4096)
    resp = post(c)
    assert resp.status_code == 413 and resp.json() == {"error": "body exceeds 4096 bytes"}
    assert model_server.requests == []


def test_upstream_503_is_a_rejection_with_its_retry_after(model_server: FakeModelServer) -> None:
    c, _ = forward_client(model_server.url)
    busy = orjson.dumps({"error": "server busy: max_works reached, try again later"})
    model_server.override = (503, busy, {"Retry-After": "7"})
    resp = post(c)
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "7"
    assert resp.json() == orjson.loads(busy)


def test_upstream_503_without_retry_after_gets_ours(model_server: FakeModelServer) -> None:
    c, _ = forward_client(model_server.url, retry_after_s=2)
    model_server.override = (503, b"<html>busy</html>", {})
    resp = post(c)
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "2"
    assert "busy" in resp.json()["error"]


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_upstream_4xx_keeps_its_status(model_server: FakeModelServer, status: int) -> None:
    c, _ = forward_client(model_server.url)
    model_server.override = (status, b"<html>nope</html>", {})
    resp = post(c)
    assert resp.status_code == status and "error" in resp.json()  # always JSON


@pytest.mark.parametrize(("upstream", "client"), [(500, 502), (502, 502), (504, 504)])
def test_upstream_5xx_is_a_gateway_error(
    model_server: FakeModelServer, upstream: int, client: int
) -> None:
    c, _ = forward_client(model_server.url)
    model_server.override = (upstream, b"Internal Server Error", {})
    resp = post(c)
    assert resp.status_code == client
    assert str(upstream) in resp.json()["error"]


def test_upstream_unreachable_is_502() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    c, _ = forward_client(url)
    resp = post(c)
    assert resp.status_code == 502 and "unreachable" in resp.json()["error"]
    health = c.get("/healthz")
    assert health.status_code == 502 and "error" in health.json()


def test_upstream_timeout_is_504(model_server: FakeModelServer) -> None:
    c, svc = forward_client(model_server.url, timeout_s=0.3)
    model_server.delay_s = 1.0
    start = time.monotonic()
    resp = post(c)
    assert resp.status_code == 504 and "timed out" in resp.json()["error"]
    assert time.monotonic() - start < 0.9  # not retried
    assert svc.limiter.in_flight == 0


def test_connections_are_kept_alive_and_pooled(model_server: FakeModelServer) -> None:
    c, _ = forward_client(model_server.url)
    for _ in range(5):
        assert post(c, IMAGES[:1]).status_code == 200
    assert len(model_server.requests) == 5
    assert model_server.connections == 1


def test_connection_closed_by_the_server_is_reopened(model_server: FakeModelServer) -> None:
    c, _ = forward_client(model_server.url)
    model_server.close_after_each = True
    statuses = [post(c, IMAGES[:1]).status_code for _ in range(4)]
    assert statuses == [200] * 4
    assert len(model_server.requests) == 4


def test_django_side_max_works_applies_in_forward_mode(model_server: FakeModelServer) -> None:
    c, svc = forward_client(model_server.url, max_works=1)
    model_server.gate = threading.Event()
    first: dict[str, int] = {}

    def slow_request() -> None:
        first["status"] = post(Client(), IMAGES[:1]).status_code

    thread = threading.Thread(target=slow_request)
    thread.start()
    for _ in range(250):
        if svc.limiter.in_flight == 1:
            break
        time.sleep(0.02)
    busy = post(c, IMAGES[:1])
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    assert "max_works" in busy.json()["error"]
    model_server.gate.set()
    thread.join(5)
    assert first["status"] == 200
    assert len(model_server.requests) == 1  # the rejected request never went upstream
    assert c.get("/v1/info").json()["in_flight"] == 0


def test_health_and_info_in_forward_mode(model_server: FakeModelServer) -> None:
    c, _ = forward_client(model_server.url)
    health = c.get("/healthz").json()
    assert health["status"] == "ok" and health["mode"] == "forward"
    assert health["model_version"] == 5
    info = c.get("/v1/info").json()
    assert info["upstream_url"] == model_server.url and info["upstream_protocol"] == "servecap"


def test_upstream_url_is_checked() -> None:
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        Upstream("127.0.0.1:8000")
    with pytest.raises(ValueError, match="unknown upstream protocol"):
        Upstream("http://127.0.0.1:8000", "grpc")  # type: ignore[arg-type]
