"""FastAPI target: schema, health, 4xx on bad input, body limit, max_works 503 + Retry-After.

Most tests use ``FakeModel`` (a stand-in for the TensorFlow predictor, so the web layer is
tested alone); ``test_real_model`` serves the real exported CNN.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from targets.common.payload import encode_request
from targets.common.service import InferenceService
from targets.common.settings import ServerSettings
from targets.fastapi.app import create_app
from tests.fakes import FakeModel

IMAGES = np.random.default_rng(1).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)


def client(**settings: int) -> tuple[TestClient, FakeModel]:
    model = FakeModel()
    svc = InferenceService(model, ServerSettings(**settings))  # type: ignore[arg-type]
    return TestClient(create_app(svc)), model


def test_health_and_info() -> None:
    c, _ = client()
    assert c.get("/healthz").json() == {"status": "ok", "model_version": 7}
    info = c.get("/v1/info").json()
    assert info["max_works"] == 0 and info["in_flight"] == 0


@pytest.mark.parametrize("encoding", ["json", "base64", "jpeg"])
def test_predict_every_encoding(encoding: str) -> None:
    c, model = client()
    body, ctype = encode_request(IMAGES, encoding)
    resp = c.post("/v1/predict", content=body, headers={"content-type": ctype})
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["classes"] == [0, 1]
    assert len(doc["probabilities"]) == 2 and len(doc["probabilities"][0]) == 10
    assert model.calls == 1


@pytest.mark.parametrize(
    ("body", "ctype", "status"),
    [
        (b"{", "application/json", 400),
        (b'{"images": [[1]]}', "application/json", 422),
        (b"hello", "text/plain", 415),
        (b"", "application/json", 400),
    ],
)
def test_bad_input_is_4xx_and_model_untouched(body: bytes, ctype: str, status: int) -> None:
    c, model = client()
    resp = c.post("/v1/predict", content=body, headers={"content-type": ctype})
    assert resp.status_code == status
    assert "error" in resp.json()
    assert model.calls == 0
    assert c.get("/healthz").status_code == 200


def test_body_size_limit() -> None:
    c, model = client(max_body_bytes=4096)
    body, ctype = encode_request(IMAGES, "json")  # about 20 kB
    resp = c.post("/v1/predict", content=body, headers={"content-type": ctype})
    assert resp.status_code == 413
    assert model.calls == 0


def test_wrong_method_and_path() -> None:
    c, _ = client()
    assert c.get("/v1/predict").status_code == 405
    assert c.post("/nope").status_code == 404


def test_max_works_rejects_at_once_with_retry_after() -> None:
    c, model = client(max_works=1)
    model.gate = threading.Event()
    body, ctype = encode_request(IMAGES[:1], "base64")
    first: dict[str, int] = {}

    def slow_request() -> None:
        r = c.post("/v1/predict", content=body, headers={"content-type": ctype})
        first["status"] = r.status_code

    thread = threading.Thread(target=slow_request)
    thread.start()
    for _ in range(100):  # wait until the first request holds the only slot
        if c.get("/v1/info").json()["in_flight"] == 1:
            break
        threading.Event().wait(0.02)
    busy = c.post("/v1/predict", content=body, headers={"content-type": ctype})
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "1"
    assert "max_works" in busy.json()["error"]
    model.gate.set()
    thread.join(5)
    assert first["status"] == 200
    assert c.get("/v1/info").json()["in_flight"] == 0
    assert c.post("/v1/predict", content=body, headers={"content-type": ctype}).status_code == 200


def test_real_model(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVECAP_MODEL_PATH", str(tiny_model))
    c = TestClient(create_app())
    body, ctype = encode_request(IMAGES, "json")
    doc = orjson.loads(c.post("/v1/predict", content=body, headers={"content-type": ctype}).content)
    probs = np.asarray(doc["probabilities"])
    assert probs.shape == (2, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)
    assert doc["classes"] == probs.argmax(axis=1).tolist()


def test_metrics_count_requests_batches_and_in_flight() -> None:
    from loadtests.collectors.prometheus import parse

    c, _ = client()
    before = parse(c.get("/metrics").text)
    body, ctype = encode_request(IMAGES, "json")
    assert c.post("/v1/predict", content=body, headers={"content-type": ctype}).status_code == 200
    after = parse(c.get("/metrics").text)
    grew = {k: after[k] - before.get(k, 0.0) for k in after}
    assert grew["servecap_inference_requests_total"] == 1
    assert grew["servecap_inference_images_total"] == 2  # both images, one model call
    assert grew["servecap_inference_batches_total"] == 1
    assert after["servecap_requests_in_flight"] == 0


def test_batching_serves_concurrent_requests_in_shared_model_calls() -> None:
    model = FakeModel()
    svc = InferenceService(model, ServerSettings(batch_max=8, batch_timeout_ms=200))
    c = TestClient(create_app(svc))
    body, ctype = encode_request(IMAGES[:1], "json")
    model.gate = threading.Event()
    results: list[int] = []

    def one() -> None:
        r = c.post("/v1/predict", content=body, headers={"content-type": ctype})
        results.append(r.status_code)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    threading.Event().wait(0.3)  # the first call holds the gate; the rest queue up
    model.gate.set()
    for t in threads:
        t.join(10)
    assert results == [200] * 6
    assert model.calls < 6  # fewer model calls than requests
