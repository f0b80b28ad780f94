"""The chains' process plans, and every gunicorn/nginx target run for real.

Integration part (``-m integration``): flask, django-embedded, django-to-flask and
django-to-fastapi started by the real process launcher with the session's tiny real model,
real CIFAR-10 images through nginx, fuzzed (tests/fuzz_bodies.py: 100 inputs, never a 5xx),
and nothing of ours left running afterwards.
"""

from __future__ import annotations

import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil
import pytest

from targets.common.nginx import run_dir as nginx_run_dir
from targets.common.payload import encode_request
from targets.launch_types import LaunchError
from targets.registry import get_kind, target_config
from tests.answers import timings
from tests.fuzz_bodies import LIVE_EXAMPLES, MAX_BODY, assert_still_serving, fuzz_predict
from tests.ports import free_port

# ------------------------------------------------------------------------------ plans


@pytest.mark.parametrize(("kind", "model"), [("django-to-flask", "flask"),
                                             ("django-to-fastapi", "fastapi")])  # fmt: skip
def test_chain_plan_starts_back_to_front(kind: str, model: str) -> None:
    port = free_port()
    config = target_config(kind=kind, port=port, internal_port=free_port(),  # type: ignore[arg-type]
                          upstream_port=free_port(), workers=2, threads=3)  # fmt: skip
    specs = get_kind(kind).process_plan("c", config)
    assert [s.name for s in specs] == [f"c-{model}", "c-django", "c-nginx"]
    server, django, nginx = specs
    argv = " ".join(server.argv)
    prebound = (server.env.get("SERVECAP_LISTEN_HOST"), server.env.get("SERVECAP_LISTEN_PORT"))
    port_args = (
        f"--bind 127.0.0.1:{config.model_port}",
        f"--host 127.0.0.1 --port {config.model_port}",
    )
    # the model tier listens on loopback only (uvicorn workers get a pre-bound socket)
    assert any(a in argv for a in port_args) or prebound == ("127.0.0.1", str(config.model_port))
    assert server.argv[server.argv.index("--workers") + 1] == "2"
    assert server.ready_url == f"http://127.0.0.1:{config.model_port}/healthz"
    assert django.env["SERVECAP_UPSTREAM_URL"] == f"http://127.0.0.1:{config.model_port}"
    assert django.env["SERVECAP_UPSTREAM_PROTOCOL"] == "servecap"
    assert django.env["SERVECAP_UPSTREAM_POOL_SIZE"] == "3"
    assert "--preload" not in django.argv and "--preload" not in server.argv
    assert nginx.ready_url == f"http://127.0.0.1:{port}/healthz"
    assert nginx.argv[nginx.argv.index("--prefix") + 1] == str(nginx_run_dir("c", port))
    assert [s.role for s in specs] == [model, "django-forward", "nginx"]


def test_django_to_tfserving_needs_the_docker_launcher() -> None:
    config = target_config(kind="django-to-tfserving", port=free_port())
    with pytest.raises(LaunchError, match="--launcher docker"):
        get_kind("django-to-tfserving").process_plan("d", config)


# ------------------------------------------------------------------------------ integration

OUR_MARKERS = ("targets.flask.app", "targets.django_embedded.wsgi", "targets.fastapi.app")


def our_processes(ports: list[int]) -> list[psutil.Process]:
    """Servers of this test still running: gunicorn/uvicorn/nginx naming one of its ports."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        mine = any(str(p) in cmd for p in ports)
        if mine and (any(m in cmd for m in OUR_MARKERS) or "nginx" in cmd):
            found.append(proc)
    return found


def call(url: str, body: bytes | None = None, ctype: str = "application/json") -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, headers={"content-type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, (orjson.loads(resp.read()), dict(resp.headers))
    except urllib.error.HTTPError as err:
        return err.code, (orjson.loads(err.read()), dict(err.headers))


@pytest.fixture(scope="module")
def cifar_batch(cifar_dir: Path) -> tuple[np.ndarray, list[bytes]]:
    from loadtests.image_files import load_jpeg_bytes
    from targets.common.dataset import load_split

    split = load_split("test", cifar_dir, limit=32)
    files, _ = load_jpeg_bytes("test", cifar_dir, limit=32)
    return split.images, files


@pytest.fixture(scope="module")
def expected_probs(tiny_model: Path, cifar_batch: tuple[np.ndarray, list[bytes]]) -> np.ndarray:
    from targets.common.model import Predictor

    return Predictor(tiny_model).predict(cifar_batch[0])


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["flask", "django-embedded", "django-to-flask",
                                  "django-to-fastapi"])  # fmt: skip
def test_target_serves_the_real_model(
    kind: str,
    tiny_model: Path,
    cifar_batch: tuple[np.ndarray, list[bytes]],
    expected_probs: np.ndarray,
    tmp_path: Path,
) -> None:
    from targets.launchers.process import ProcessLauncher

    images, files = cifar_batch
    extra = {"internal_port": free_port(), "upstream_port": free_port()}
    own = get_kind(kind).config_model.model_fields
    config = target_config(kind=kind, port=free_port(), model_path=str(tiny_model), workers=1,
                           threads=2, ready_timeout_s=90, max_body_bytes=2 * MAX_BODY,
                           **{k: v for k, v in extra.items() if k in own})  # fmt: skip
    ports = [port for _, port in get_kind(kind).ports(config).values()]
    with ProcessLauncher().launch(kind, config, tmp_path / "logs") as running:
        tree = [psutil.Process(pid) for pid in running.pids]
        tree += [c for p in list(tree) for c in p.children(recursive=True)]
        base = running.base_url
        got: list[np.ndarray] = []
        for i, encoding in enumerate(["json", "base64", "jpeg", "json"]):
            batch = slice(8 * i, 8 * i + 8)
            jpeg = files[batch] if encoding == "jpeg" else None
            body, ctype = encode_request(images[batch], encoding, jpeg)
            status, (doc, headers) = call(f"{base}/v1/predict", body, ctype)
            assert status == 200, doc
            probs = np.asarray(doc["probabilities"], dtype=np.float32)
            assert doc["classes"] == probs.argmax(axis=1).tolist()
            got.append(probs)
            if kind.startswith("django"):
                names = list(timings(headers["Server-Timing"]))
                assert names[-1] == "app" and ("upstream" in names) == ("-to-" in kind)
        probs = np.concatenate(got)
        np.testing.assert_allclose(probs, expected_probs, atol=1e-4)
        # Same classes as the model run in-process. The tiny model's probabilities are close
        # together, and float rounding may differ with batch size and thread count, so a row
        # is compared only when its top-2 margin exceeds twice the largest difference seen (its
        # argmax then cannot have moved). Usually the difference is 0 and every row counts.
        top2 = np.sort(expected_probs, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > 2 * np.abs(probs - expected_probs).max()
        assert clear.sum() >= 24
        classes = probs.argmax(axis=1)
        assert (classes[clear] == expected_probs.argmax(axis=1)[clear]).all()

        raw_jpeg = call(f"{base}/v1/predict", files[0], "image/jpeg")
        assert raw_jpeg[0] == 200
        for body, ctype, status in [(b"{", "application/json", 400),
                                    (b'{"images": [[1]]}', "application/json", 422),
                                    (b"x", "text/plain", 415)]:  # fmt: skip
            got_status, (doc, headers) = call(f"{base}/v1/predict", body, ctype)
            assert got_status == status and "error" in doc
            assert headers["Content-Type"] == "application/json"
        assert call(f"{base}/nope")[0] == 404
        status, (doc, _) = call(f"{base}/healthz")
        assert status == 200 and doc["status"] == "ok" and doc["model_version"] == 1
        # fuzzed through this stack (nginx, gunicorn, Django, forwarding): never a 5xx
        assert fuzz_predict(config.port, "/v1/predict") == LIVE_EXAMPLES
        assert_still_serving(config.port, "/v1/predict")
    assert not psutil.wait_procs(tree, timeout=5)[1]
    assert not our_processes(ports)
    shutil.rmtree(nginx_run_dir(kind, config.port), ignore_errors=True)


@pytest.mark.integration
def test_limits_through_nginx_and_gunicorn(
    tiny_model: Path, cifar_batch: tuple[np.ndarray, list[bytes]], tmp_path: Path
) -> None:
    """Oversized bodies stop at nginx (413 JSON); max_works=1 under gunicorn gthread refuses
    concurrent requests at once with 503 + Retry-After instead of queueing them."""
    from targets.launchers.process import ProcessLauncher

    limit = 1024 * 1024
    config = target_config(kind="django-embedded", port=free_port(), internal_port=free_port(),
                          model_path=str(tiny_model), max_body_bytes=limit,
                          max_works=1, threads=1, ready_timeout_s=90)  # fmt: skip
    images = np.concatenate([cifar_batch[0]] * 4)  # 128 images: a slow enough inference
    body, ctype = encode_request(images, "base64")
    assert len(body) < limit
    with ProcessLauncher().launch("limits", config, tmp_path / "logs") as running:
        url = f"{running.base_url}/v1/predict"
        status, (doc, headers) = call(url, b"x" * (limit + 1), ctype)
        assert status == 413 and doc == {"error": f"body exceeds {limit} bytes"}
        assert headers["Content-Type"] == "application/json"

        results: list[tuple[int, Any]] = []
        barrier = threading.Barrier(6)

        def one() -> None:
            barrier.wait(10)
            results.append(call(url, body, ctype))

        threads = [threading.Thread(target=one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        statuses = sorted(status for status, _ in results)
        assert len(statuses) == 6 and set(statuses) <= {200, 503}, statuses
        assert statuses.count(200) >= 1 and statuses.count(503) >= 1, statuses
        for status, (doc, headers) in results:
            if status == 503:
                assert headers["Retry-After"] == "1" and "max_works" in doc["error"]
        info = call(f"http://127.0.0.1:{config.app_port}/v1/info")[1][0]
        assert info["max_works"] == 1 and info["in_flight"] == 0
    shutil.rmtree(nginx_run_dir("limits", config.port), ignore_errors=True)
