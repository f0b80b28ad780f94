"""Schema-driven fuzzing of the targets' endpoints, live: real servers, real model.

Hypothesis generates request bodies around the servecap predict schema (tests/fuzz_bodies.py)
and sends them to a running target through its real stack: here uvicorn (FastAPI), the job
queue (uvicorn, Redis + RQ, its ``GET /v1/jobs/{id}`` too) and the serving frameworks' own HTTP
stacks; the gunicorn, nginx and Django stacks are fuzzed where test_chains.py starts them for
real. 100 inputs per stack, for the layers in front of the parser (the parser and the service
take 1,000 in process: test_fuzz_inprocess.py). Every answer must be 2xx or 4xx, never 5xx or
a dropped connection, and the target must keep serving afterwards. The number of inputs tried
per target is printed (``-s``).

The frameworks' own v2 servers (MLServer, KServe: their environments from ``make setup``) get
the same bodies plus v2 tensors of any name, datatype and shape and broken binary-extension
requests, on ``/v2/models/<model>/infer`` (:data:`V2_EXAMPLES` each: they start slowly).

The in-process validation fuzzers (names, trace files, env entries) are in
``test_fuzz_validation.py``.
"""

from __future__ import annotations

import http.client
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from targets.common.framework import framework_python
from targets.common.payload import encode_request
from targets.launch_types import LaunchError
from targets.launchers.process import ProcessLauncher
from targets.protocols.jobs import JOBS_PATH
from targets.protocols.servecap import PREDICT_PATH
from targets.registry import get_kind, target_config
from tests.fuzz_bodies import (
    LIVE_EXAMPLES,
    MAX_BODY,
    assert_still_serving,
    bodies,
    content_types,
    fuzz_predict,
    job_ids,
    json_values,
    pixels,
    post,
    waits,
)
from tests.ports import free_port

live = pytest.mark.integration
"""The tests that start real servers."""
TRIED: Counter[str] = Counter()
TARGETS = {"fastapi": PREDICT_PATH, "jobqueue": JOBS_PATH}
V2_EXAMPLES = LIVE_EXAMPLES
V2_TARGETS = {"mlserver": {"max_batch_size": 4, "max_batch_time_s": 0.002}, "kserve": {}}
"""Kind -> knobs: MLServer with its adaptive batcher (its runtime's path and the batcher's)."""
V2_PATH = "/v2/models/cifar10_cnn/infer"


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


FRAMEWORKS = {"ray-serve": "/v1/predict", "bentoml": "/v1/predict", "litserve": "/v1/predict"}
"""The serving-framework kinds, fuzzed through their own HTTP stacks; skipped where a
framework is not installed."""


@pytest.fixture(scope="module", params=sorted(FRAMEWORKS))
def framework(
    request: pytest.FixtureRequest, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int, str]]:
    name = request.param
    fields = {"kind": name, "port": free_port(4), "model_path": str(tiny_model),
              "max_body_bytes": MAX_BODY, "ready_timeout_s": 180}  # fmt: skip
    config = target_config(**fields)
    try:
        get_kind(name).process_plan(name, config)
    except LaunchError as err:
        pytest.skip(str(err))  # its own environment is missing
    missing = [p for p in get_kind(name).problems(name, config) if "make setup" in p]
    if missing:
        pytest.skip(missing[0])
    with ProcessLauncher(stop_grace_s=10).launch(name, config, tmp_path_factory.mktemp(name)):
        yield name, config.port, FRAMEWORKS[name]
    print(f"\nfuzz: {name}: {TRIED[name]} inputs sent")


@live
def test_no_input_gets_a_5xx_from_a_framework_and_it_still_serves(
    framework: tuple[str, int, str],
) -> None:
    name, port, path = framework
    TRIED[name] += fuzz_predict(port, path)
    body, ctype = encode_request(np.zeros((1, 32, 32, 3), np.uint8), "json")
    assert post(port, path, body, ctype) == 200


datatypes = st.sampled_from(["FP32", "UINT8", "BYTES", "INT64", "FP16", "BOOL", "nope", ""])
shapes = st.one_of(
    st.lists(st.integers(-2, 40), max_size=5),
    st.sampled_from([[1, 32, 32, 3], [], [0, 32, 32, 3]]),
    st.lists(st.integers(0, 2**40), min_size=4, max_size=4),
)


@st.composite
def v2_tensors(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """A v2 JSON request around the model's input: wrong names, datatypes, shapes, values."""
    shape = draw(shapes)
    count = draw(st.integers(0, 4000))
    data: object = draw(st.one_of(st.just([draw(pixels)] * count), json_values))
    tensor = {"name": draw(st.sampled_from(["images", "x", ""])), "shape": shape,
              "datatype": draw(datatypes), "data": data}  # fmt: skip
    doc: dict[str, object] = {"inputs": [tensor] * draw(st.integers(0, 2))}
    if draw(st.booleans()):
        doc["outputs"] = [{"name": draw(st.sampled_from(["probabilities", "y"]))}]
    return json.dumps(doc).encode(), {"Content-Type": "application/json"}


@st.composite
def v2_binary(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """The binary tensor extension with sizes and header lengths that do not add up."""
    raw = draw(st.sampled_from([b"", b"\x00" * 3, b"\xff\xfe\x80\x81", b"\x00" * 12289,
                                np.full(3072, 200.5, "<f4").tobytes()]))  # fmt: skip
    size = draw(st.one_of(st.just(len(raw)), st.integers(-5, 20000)))
    tensor = {"name": "images", "shape": draw(shapes), "datatype": draw(datatypes),
              "parameters": {"binary_data_size": size}}  # fmt: skip
    header = json.dumps({"inputs": [tensor]}).encode()
    length = draw(st.one_of(st.just(len(header)), st.integers(-3, len(header) + 50),
                            st.text("abc -+.", max_size=4)))  # fmt: skip
    headers = {"Content-Type": "application/octet-stream",
               "Inference-Header-Content-Length": str(length)}  # fmt: skip
    return header + raw, headers


v2_requests = st.one_of(
    st.tuples(bodies, content_types.map(lambda c: {"Content-Type": c} if c else {})),
    v2_tensors(),
    v2_binary(),
)


@pytest.fixture(scope="module", params=sorted(V2_TARGETS))
def running_v2(
    request: pytest.FixtureRequest, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int]]:
    kind = request.param
    if not framework_python(kind).exists():
        pytest.skip(f"{kind}'s environment is missing (make setup: targets/{kind}/setup.sh)")
    config = target_config(kind=kind, port=free_port(), model_path=str(tiny_model),
                           max_body_bytes=MAX_BODY, **V2_TARGETS[kind])  # fmt: skip
    logs = tmp_path_factory.mktemp(f"fuzz-{kind}")
    with ProcessLauncher(stop_grace_s=5).launch(kind, config, logs) as target:
        yield kind, target.config.port
    print(f"\nfuzz: {kind}: {TRIED[kind]} inputs sent")


@live
@settings(max_examples=V2_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])  # fmt: skip
@given(sent=v2_requests)
def test_no_v2_input_gets_a_5xx(running_v2: tuple[str, int], sent: tuple[bytes, dict]) -> None:
    name, port = running_v2
    body, headers = sent
    TRIED[name] += 1
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", V2_PATH, body=body, headers=headers)
        status = conn.getresponse().status
    finally:
        conn.close()
    assert status < 500, f"{name}: HTTP {status} for {headers} body {body[:160]!r}"


@live
def test_v2_still_serving_after_fuzzing(running_v2: tuple[str, int]) -> None:
    _, port = running_v2
    image = {"name": "images", "shape": [1, 32, 32, 3], "datatype": "FP32", "data": [0] * 3072}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", V2_PATH, body=json.dumps({"inputs": [image]}),
                 headers={"Content-Type": "application/json"})  # fmt: skip
    assert conn.getresponse().status == 200
