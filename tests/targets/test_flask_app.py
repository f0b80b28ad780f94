"""Flask target: schema, health, JSON errors for every bad request, body limit, max_works 503.

The web layer is tested alone with ``FakeModel`` (a stand-in for the TensorFlow predictor) via
Flask's test client; the gunicorn launch plan is checked as data. The real model behind real
gunicorn is tested in ``test_chains.py`` (integration).
"""

from __future__ import annotations

import base64
import io
import threading

import numpy as np
import orjson
import pytest

from targets.common.gunicorn import effective_threads
from targets.common.payload import encode_request
from targets.common.service import InferenceService
from targets.common.settings import ServerSettings
from targets.flask.app import create_app
from targets.launch_types import CONTAINER
from targets.registry import get_kind, target_config
from tests.fakes import FakeModel

IMAGES = np.random.default_rng(1).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)


def make(**settings: int) -> tuple[InferenceService, FakeModel]:
    model = FakeModel()
    return InferenceService(model, ServerSettings(**settings)), model  # type: ignore[arg-type]


def post(svc: InferenceService, body: bytes, ctype: str | None) -> tuple[int, dict, dict]:
    headers = {"content-type": ctype} if ctype else {}
    resp = create_app(svc).test_client().post("/v1/predict", data=body, headers=headers)
    return resp.status_code, orjson.loads(resp.data), dict(resp.headers)


def test_health_and_info() -> None:
    svc, _ = make()
    c = create_app(svc).test_client()
    resp = c.get("/healthz")
    assert resp.status_code == 200 and resp.json == {"status": "ok", "model_version": 7}
    assert resp.headers["content-type"] == "application/json"
    info = c.get("/v1/info").json
    assert info is not None and info["max_works"] == 0 and info["in_flight"] == 0


@pytest.mark.parametrize("encoding", ["json", "base64", "jpeg"])
def test_predict_every_encoding(encoding: str) -> None:
    svc, model = make()
    status, doc, headers = post(svc, *encode_request(IMAGES, encoding))
    assert status == 200
    assert doc["classes"] == [0, 1]
    assert len(doc["probabilities"]) == 2 and len(doc["probabilities"][0]) == 10
    assert model.calls == 1
    assert headers["Server-Timing"].startswith("app;dur=")


def test_predict_raw_jpeg_body() -> None:
    svc, _ = make()
    body, _ = encode_request(IMAGES[:1], "jpeg")
    jpeg = base64.b64decode(orjson.loads(body)["images_jpeg_b64"][0])
    status, doc, _ = post(svc, jpeg, "image/jpeg")
    assert status == 200 and doc["classes"] == [0]


@pytest.mark.parametrize(
    ("body", "ctype", "status"),
    [
        (b"{", "application/json", 400),  # not JSON
        (b"", "application/json", 400),  # empty
        (b"", None, 400),  # empty, no content type
        (b'{"images": [[1]]}', "application/json", 422),  # wrong shape
        (b"[1, 2]", "application/json", 422),  # not an object
        (b'{"images_b64": ["@@@"]}', "application/json", 422),  # bad base64
        (b'{"images": [], "x": 1}', "application/json", 422),  # unknown key
        (b"hello", "text/plain", 415),  # wrong content type
        (b"not a jpeg", "image/jpeg", 422),
    ],
)
def test_bad_input_is_4xx_json_and_model_untouched(
    body: bytes, ctype: str | None, status: int
) -> None:
    svc, model = make()
    got, doc, headers = post(svc, body, ctype)
    assert got == status
    assert isinstance(doc["error"], str) and doc["error"]
    assert headers["Content-Type"] == "application/json"
    assert model.calls == 0


def test_batch_over_max_batch_is_413() -> None:
    svc, model = make(max_batch=1)
    status, doc, _ = post(svc, *encode_request(IMAGES, "base64"))
    assert status == 413 and "exceeds the limit of 1" in doc["error"]
    assert model.calls == 0


def test_body_size_limit_is_413_json() -> None:
    svc, model = make(max_body_bytes=4096)
    status, doc, headers = post(svc, *encode_request(IMAGES, "json"))  # about 20 kB
    assert status == 413 and doc == {"error": "body exceeds 4096 bytes"}
    assert headers["Content-Type"] == "application/json"
    assert model.calls == 0


def test_body_size_limit_without_declared_length() -> None:
    """A streamed (chunked) body, as gunicorn passes it on, is cut off by Werkzeug's limit too."""
    svc, model = make(max_body_bytes=4096)
    body, ctype = encode_request(IMAGES, "json")
    resp = (
        create_app(svc)
        .test_client()
        .post(
            "/v1/predict",
            input_stream=io.BytesIO(body),
            headers={"content-type": ctype},
            environ_overrides={"wsgi.input_terminated": True},
        )
    )
    assert resp.status_code == 413 and resp.json == {"error": "body exceeds 4096 bytes"}
    assert model.calls == 0


def test_wrong_method_and_unknown_path_are_json() -> None:
    svc, _ = make()
    c = create_app(svc).test_client()
    resp = c.get("/v1/predict")
    assert resp.status_code == 405 and "POST" in resp.headers["Allow"]
    assert "not allowed" in resp.json["error"]  # type: ignore[index]
    resp = c.post("/nope")
    assert resp.status_code == 404 and resp.json == {"error": "no such path: /nope"}
    resp = c.delete("/healthz")
    assert resp.status_code == 405 and resp.headers["content-type"] == "application/json"


def test_unexpected_error_is_500_json_not_html() -> None:
    svc, model = make()
    model.fail = True
    status, doc, _ = post(svc, *encode_request(IMAGES, "base64"))
    assert status == 500 and doc == {"error": "internal server error"}
    assert svc.limiter.in_flight == 0  # the slot was released


def test_max_works_rejects_at_once_with_retry_after() -> None:
    svc, model = make(max_works=1)
    model.gate = threading.Event()
    app = create_app(svc)
    body, ctype = encode_request(IMAGES[:1], "base64")
    first: dict[str, int] = {}

    def slow_request() -> None:
        r = app.test_client().post("/v1/predict", data=body, headers={"content-type": ctype})
        first["status"] = r.status_code

    thread = threading.Thread(target=slow_request)
    thread.start()
    c = app.test_client()
    for _ in range(250):  # wait until the first request holds the only slot
        if c.get("/v1/info").json["in_flight"] == 1:  # type: ignore[index]
            break
        threading.Event().wait(0.02)
    busy = c.post("/v1/predict", data=body, headers={"content-type": ctype})
    assert busy.status_code == 503
    assert busy.headers["Retry-After"] == "1"
    assert "max_works" in busy.json["error"]  # type: ignore[index]
    model.gate.set()
    thread.join(5)
    assert first["status"] == 200
    assert c.get("/v1/info").json["in_flight"] == 0  # type: ignore[index]
    assert c.post("/v1/predict", data=body, headers={"content-type": ctype}).status_code == 200


def test_launch_plan_is_gunicorn_gthread_without_preload() -> None:
    config = target_config(kind="flask", port=18201, workers=3, threads=2)
    (spec,) = get_kind("flask").process_plan("f", config)
    argv = list(spec.argv)
    assert argv[1:3] == ["-m", "gunicorn"]
    assert argv[argv.index("--worker-class") + 1] == "gthread"
    assert argv[argv.index("--workers") + 1] == "3"
    assert argv[argv.index("--threads") + 1] == "2"
    assert argv[argv.index("--bind") + 1] == "127.0.0.1:18201"
    assert argv[-1] == "targets.flask.app:create_app()"
    assert "--preload" not in argv
    assert spec.ready_url == "http://127.0.0.1:18201/healthz"
    assert spec.env["SERVECAP_MAX_WORKS"] == "0"
    assert "--reuse-port" not in argv


def test_the_container_runs_the_same_command_with_a_shared_port() -> None:
    config = target_config(kind="flask", port=18201, workers=3, threads=2)
    (host,) = get_kind("flask").process_plan("f", config)
    (container,) = get_kind("flask").process_plan("f", config, CONTAINER)
    assert container.role == "flask"
    assert [a for a in container.argv if a != "--reuse-port"] == list(host.argv)
    assert "--reuse-port" in container.argv


@pytest.mark.parametrize(
    ("threads", "max_works", "expected"), [(1, 0, 1), (4, 0, 4), (1, 2, 3), (8, 2, 8), (3, 3, 4)]
)
def test_threads_exceed_max_works_so_the_limit_can_trigger(
    threads: int, max_works: int, expected: int
) -> None:
    config = target_config(kind="flask", threads=threads, max_works=max_works)
    assert effective_threads(config) == expected
