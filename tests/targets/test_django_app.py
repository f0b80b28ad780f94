"""Django target (embedded mode): schema, health, JSON errors for every bad request, body limit,
max_works 503, CSRF not in the way, Server-Timing; and its launch plan.

The web layer is tested alone with ``FakeModel`` (a stand-in for the TensorFlow predictor)
through Django's test client. Django's settings are process-wide, so they are configured once
(:func:`targets.django_embedded.conf.configure`); each test installs its own backend. The real
model behind gunicorn and nginx is tested in ``test_chains.py`` (integration).
"""

from __future__ import annotations

import base64
import socket
import threading
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from django.test import Client, override_settings

from targets.common.payload import encode_request
from targets.common.service import InferenceService
from targets.common.settings import ServerSettings
from targets.django_embedded.conf import configure, django_settings
from targets.django_embedded.wsgi import create_app
from targets.launch_types import LaunchError
from targets.registry import get_kind, target_config
from tests.fakes import FakeModel
from tests.ports import free_port

IMAGES = np.random.default_rng(1).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module", autouse=True)
def _django() -> None:
    """Django's settings are process-wide and set once: with the default limits, whichever
    test comes first (per-test limits are the backend's, checked by the view)."""
    configure(ServerSettings())


def make(**settings: int) -> tuple[Client, InferenceService, FakeModel]:
    """Install an embedded backend with a FakeModel; return a test client for it."""
    model = FakeModel()
    svc = InferenceService(model, ServerSettings(**settings))  # type: ignore[arg-type]
    create_app(svc)  # configures Django once per process, installs the backend
    return Client(raise_request_exception=False), svc, model


def post(c: Client, body: bytes, ctype: str) -> tuple[int, Any, Any]:
    resp = c.post("/v1/predict", data=body, content_type=ctype)
    return resp.status_code, orjson.loads(resp.content), resp.headers


def test_settings_are_minimal() -> None:
    conf = django_settings(ServerSettings(max_body_bytes=5000))
    assert conf["DEBUG"] is False
    assert conf["DATA_UPLOAD_MAX_MEMORY_SIZE"] == 5000
    assert conf["DATABASES"] == {} and conf["INSTALLED_APPS"] == []
    assert not any("csrf" in m.lower() for m in conf["MIDDLEWARE"])
    assert set(conf["ALLOWED_HOSTS"]) <= {"127.0.0.1", "localhost", "[::1]"}


def test_health_and_info() -> None:
    c, _, _ = make()
    resp = c.get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok", "model_version": 7}
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["Server-Timing"].startswith("app;dur=")
    info = c.get("/v1/info").json()
    assert info["max_works"] == 0 and info["in_flight"] == 0


@pytest.mark.parametrize("encoding", ["json", "base64", "jpeg"])
def test_predict_every_encoding(encoding: str) -> None:
    c, _, model = make()
    status, doc, headers = post(c, *encode_request(IMAGES, encoding))
    assert status == 200
    assert doc["classes"] == [0, 1]
    assert len(doc["probabilities"]) == 2 and len(doc["probabilities"][0]) == 10
    assert model.calls == 1
    dur = headers["Server-Timing"].removeprefix("app;dur=")
    assert float(dur) >= 0


def test_predict_raw_jpeg_body() -> None:
    c, _, _ = make()
    body, _ = encode_request(IMAGES[:1], "jpeg")
    jpeg = base64.b64decode(orjson.loads(body)["images_jpeg_b64"][0])
    status, doc, _ = post(c, jpeg, "image/jpeg")
    assert status == 200 and doc["classes"] == [0]


def test_csrf_does_not_block_the_api() -> None:
    _, _, _ = make()
    c = Client(enforce_csrf_checks=True)
    body, ctype = encode_request(IMAGES, "base64")
    assert c.post("/v1/predict", data=body, content_type=ctype).status_code == 200


@pytest.mark.parametrize(
    ("body", "ctype", "status"),
    [
        (b"{", "application/json", 400),  # not JSON
        (b"", "application/json", 400),  # empty
        (b'{"images": [[1]]}', "application/json", 422),  # wrong shape
        (b"[1, 2]", "application/json", 422),  # not an object
        (b'{"images_b64": ["@@@"]}', "application/json", 422),  # bad base64
        (b'{"images": [], "x": 1}', "application/json", 422),  # unknown key
        (b"hello", "text/plain", 415),  # wrong content type
        (b"a=1&b=2", "application/x-www-form-urlencoded", 415),  # a form
        (b"not a jpeg", "image/jpeg", 422),
    ],
)
def test_bad_input_is_4xx_json_and_model_untouched(body: bytes, ctype: str, status: int) -> None:
    c, _, model = make()
    got, doc, headers = post(c, body, ctype)
    assert got == status
    assert isinstance(doc["error"], str) and doc["error"]
    assert headers["Content-Type"] == "application/json"
    assert model.calls == 0


def test_multipart_form_is_415() -> None:
    c, _, model = make()
    resp = c.post("/v1/predict", data={"images": "x"})  # Django encodes it as multipart
    assert resp.status_code == 415 and "error" in resp.json()
    assert model.calls == 0


def test_body_size_limit_is_413_json() -> None:
    c, _, model = make(max_body_bytes=4096)
    status, doc, headers = post(c, *encode_request(IMAGES, "json"))  # about 20 kB
    assert status == 413 and doc == {"error": "body exceeds 4096 bytes"}
    assert headers["Content-Type"] == "application/json"
    assert model.calls == 0


def test_django_upload_limit_is_413_not_400_or_500() -> None:
    """Django's own DATA_UPLOAD_MAX_MEMORY_SIZE (RequestDataTooBig) is answered 413 JSON."""
    c, _, model = make()
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=2048):
        status, doc, _ = post(c, *encode_request(IMAGES, "base64"))
    assert status == 413 and "body exceeds" in doc["error"]
    assert model.calls == 0


def test_wrong_method_and_unknown_path_are_json() -> None:
    c, _, _ = make()
    resp = c.get("/v1/predict")
    assert resp.status_code == 405 and resp.headers["Allow"] == "POST"
    assert "not allowed" in resp.json()["error"]
    resp = c.put("/v1/predict", data=b"{}", content_type="application/json")
    assert resp.status_code == 405
    resp = c.post("/healthz")
    assert resp.status_code == 405 and resp.headers["Content-Type"] == "application/json"
    for path in ("/nope", "/v1/predict/", "/"):
        resp = c.get(path)
        assert resp.status_code == 404 and resp.json() == {"error": f"no such path: {path}"}


def test_unexpected_error_is_500_json_not_html() -> None:
    c, svc, model = make()
    model.fail = True
    status, doc, headers = post(c, *encode_request(IMAGES, "base64"))
    assert status == 500 and doc == {"error": "internal server error"}
    assert headers["Content-Type"] == "application/json"
    assert svc.limiter.in_flight == 0


def test_max_works_rejects_at_once_with_retry_after() -> None:
    c, svc, model = make(max_works=1)
    model.gate = threading.Event()
    body, ctype = encode_request(IMAGES[:1], "base64")
    first: dict[str, int] = {}

    def slow_request() -> None:
        r = Client().post("/v1/predict", data=body, content_type=ctype)
        first["status"] = r.status_code

    thread = threading.Thread(target=slow_request)
    thread.start()
    for _ in range(250):  # wait until the first request holds the only slot
        if svc.limiter.in_flight == 1:
            break
        threading.Event().wait(0.02)
    busy = c.post("/v1/predict", data=body, content_type=ctype)
    assert busy.status_code == 503
    assert busy.headers["Retry-After"] == "1"
    assert "max_works" in busy.json()["error"]
    model.gate.set()
    thread.join(5)
    assert first["status"] == 200
    assert c.get("/v1/info").json()["in_flight"] == 0
    assert c.post("/v1/predict", data=body, content_type=ctype).status_code == 200


def test_launch_plan_django_behind_nginx() -> None:
    config = target_config(kind="django-embedded", port=18301, workers=2, threads=3, max_works=4)
    django, nginx = get_kind("django-embedded").process_plan("d", config)
    argv = list(django.argv)
    assert argv[1:3] == ["-m", "gunicorn"] and "--preload" not in argv
    assert argv[-1] == "targets.django_embedded.wsgi:create_app()"
    assert argv[argv.index("--bind") + 1] == "127.0.0.1:18302"  # app_port, loopback
    assert argv[argv.index("--workers") + 1] == "2"
    assert argv[argv.index("--threads") + 1] == "5"  # above max_works, see common.gunicorn
    assert "SERVECAP_UPSTREAM_URL" not in django.env  # embedded mode
    assert django.ready_url == "http://127.0.0.1:18302/healthz"
    assert nginx.argv[1:3] == ("-m", "targets.common.nginx")  # writes its conf, execs nginx
    assert nginx.ready_url == "http://127.0.0.1:18301/healthz"
    assert [django.role, nginx.role] == ["django", "nginx"]


def test_launch_refuses_busy_internal_port(tiny_model: Path) -> None:
    from targets.launchers.process import check_can_start

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        config = target_config(kind="django-embedded", port=free_port(), internal_port=busy,
                               model_path=str(tiny_model))  # fmt: skip
        with pytest.raises(LaunchError, match=rf"internal_port {busy} on 127.0.0.1 is already"):
            check_can_start("d", config)
