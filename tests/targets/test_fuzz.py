"""Schema-driven fuzzing of every Python target's endpoints, live: real servers, real model.

Hypothesis generates request bodies around the servecap predict schema (tests/fuzz_bodies.py)
and sends them to each running target through its real stack (uvicorn, gunicorn, nginx,
Redis + RQ, the Django chains' forwarding): 100 per stack, for the layers in front of the
parser (the parser and the service take 1,000 in process: test_fuzz_inprocess.py). Every
answer must be 2xx or 4xx, never 5xx or a dropped connection, and the target must keep serving
afterwards; the job queue's ``GET /v1/jobs/{id}`` is fuzzed too. The number of inputs tried
per target is printed (``-s``).
"""

from __future__ import annotations

import http.client
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from targets.common.payload import encode_request
from targets.launchers.process import ProcessLauncher
from targets.registry import get_kind, target_config
from tests.fuzz_bodies import MAX_BODY, bodies, content_types, job_ids, waits
from tests.ports import free_port

pytestmark = pytest.mark.integration
EXAMPLES = 100
"""Per real stack: the parser and the service take the full fuzzing in process
(tests/targets/test_fuzz_inprocess.py); here each stack's own layers are fuzzed."""
TARGETS = {
    "fastapi": ("fastapi", "/v1/predict"),
    "flask": ("flask", "/v1/predict"),
    "django-embedded": ("django-embedded", "/v1/predict"),
    "django-to-fastapi": ("django-to-fastapi", "/v1/predict"),
    "django-to-flask": ("django-to-flask", "/v1/predict"),
    "jobqueue": ("jobqueue", "/v1/jobs"),
}
TRIED: Counter[str] = Counter()


def post(port: int, path: str, body: bytes, ctype: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": ctype} if ctype else {}
        conn.request("POST", path, body=body, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.fixture(scope="module", params=sorted(TARGETS))
def running(
    request: pytest.FixtureRequest, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int, str]]:
    name = request.param
    kind, path = TARGETS[name]
    fields = {"kind": kind, "port": free_port(4), "model_path": str(tiny_model),
              "max_body_bytes": MAX_BODY, "queue_workers": 1, "threads": 4}  # fmt: skip
    own = get_kind(kind).config_model.model_fields
    config = target_config(**{k: v for k, v in fields.items() if k in own})
    logs = tmp_path_factory.mktemp(f"fuzz-{name}")
    with ProcessLauncher(stop_grace_s=5).launch(name, config, logs) as target:
        yield name, target.config.port, path
    extra = f", {TRIED[name + ' GET']} job-status requests" if name == "jobqueue" else ""
    print(f"\nfuzz: {name}: {TRIED[name]} inputs sent{extra}")


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])  # fmt: skip
@given(body=bodies, ctype=content_types)
def test_no_input_gets_a_5xx(running: tuple[str, int, str], body: bytes, ctype: str) -> None:
    name, port, path = running
    TRIED[name] += 1
    status = post(port, path, body, ctype)
    assert status < 500, f"{name}: HTTP {status} for {ctype!r} body {body[:120]!r}"


def test_still_serving_after_fuzzing(running: tuple[str, int, str]) -> None:
    _, port, path = running
    body, ctype = encode_request(np.zeros((1, 32, 32, 3), np.uint8), "json")
    assert post(port, path, body, ctype) in (200, 202)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow,
                                 HealthCheck.function_scoped_fixture])  # fmt: skip
@given(job_id=job_ids, wait=waits)
def test_job_status_never_gets_a_5xx(
    running: tuple[str, int, str], job_id: str, wait: str | None
) -> None:
    name, port, path = running
    if name != "jobqueue":
        pytest.skip("GET /v1/jobs/{id} is the job queue's")
    TRIED[f"{name} GET"] += 1
    query = "" if wait is None else f"?wait_s={quote(wait)}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", f"{path}/{quote(job_id, safe='')}{query}")
        status = conn.getresponse().status
    finally:
        conn.close()
    assert status < 500, f"GET {job_id!r} wait {wait!r}: HTTP {status}"
