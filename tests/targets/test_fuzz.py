"""Schema-driven fuzzing of the targets' endpoints, live: real servers, real model.

Hypothesis generates request bodies around the servecap predict schema (tests/fuzz_bodies.py)
and sends them to a running target through its real stack: here uvicorn (FastAPI), the job
queue (uvicorn, Redis + RQ, its ``GET /v1/jobs/{id}`` too) and the serving frameworks' own HTTP
stacks; the gunicorn, nginx and Django stacks are fuzzed where test_chains.py starts them for
real. 100 inputs per stack, for the layers in front of the parser (the parser and the service
take 1,000 in process: test_fuzz_inprocess.py). Every answer must be 2xx or 4xx, never 5xx or
a dropped connection, and the target must keep serving afterwards. The number of inputs tried
per target is printed (``-s``).

The serving frameworks (Ray Serve, BentoML, LitServe) and the v2 servers (MLServer, KServe:
v2 tensors and broken binary-extension requests too) are fuzzed where their real-server tests
start them (test_frameworks.py, test_mlserver.py, test_kserve.py).

The in-process validation fuzzers (names, trace files, env entries) are in
``test_fuzz_validation.py``.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings

from targets.launchers.process import ProcessLauncher
from targets.protocols.jobs import JOBS_PATH
from targets.protocols.servecap import PREDICT_PATH
from targets.registry import get_kind, target_config
from tests.fuzz_bodies import (
    LIVE_EXAMPLES,
    MAX_BODY,
    assert_still_serving,
    fuzz_predict,
    job_ids,
    waits,
)
from tests.ports import free_port

live = pytest.mark.integration
"""The tests that start real servers."""
TARGETS = {"fastapi": PREDICT_PATH, "jobqueue": JOBS_PATH}


@pytest.fixture(scope="module", params=sorted(TARGETS))
def running(
    request: pytest.FixtureRequest, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int, str]]:
    name = request.param
    fields = {"kind": name, "port": free_port(4), "model_path": str(tiny_model),
              "max_body_bytes": MAX_BODY, "queue_workers": 1, "threads": 4}  # fmt: skip
    own = get_kind(name).config_model.model_fields
    config = target_config(**{k: v for k, v in fields.items() if k in own})
    logs = tmp_path_factory.mktemp(f"fuzz-{name}")
    with ProcessLauncher(stop_grace_s=5).launch(name, config, logs) as target:
        yield name, target.config.port, TARGETS[name]


@live
def test_no_input_gets_a_5xx_and_the_target_keeps_serving(
    running: tuple[str, int, str],
) -> None:
    name, port, path = running
    sent = fuzz_predict(port, path)
    print(f"\nfuzz: {name}: {sent} inputs sent")
    assert sent == LIVE_EXAMPLES
    assert_still_serving(port, path)


@live
@pytest.mark.parametrize("running", ["jobqueue"], indirect=True)
@settings(max_examples=LIVE_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow,
                                 HealthCheck.function_scoped_fixture])  # fmt: skip
@given(job_id=job_ids, wait=waits)
def test_job_status_never_gets_a_5xx(
    running: tuple[str, int, str], job_id: str, wait: str | None
) -> None:
    _, port, path = running
    query = "" if wait is None else f"?wait_s={quote(wait)}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", f"{path}/{quote(job_id, safe='')}{query}")
        status = conn.getresponse().status
    finally:
        conn.close()
    assert status < 500, f"GET {job_id!r} wait {wait!r}: HTTP {status}"
