"""Schema-driven fuzzing of every Python target's endpoints, live: real servers, real model.

Hypothesis generates request bodies around the servecap predict schema (wrong shapes, types,
sizes, encodings, truncated and oversized bodies, random bytes, odd content types, decompression
bombs and huge declared image dimensions, deeply nested JSON, millions of values, truncated
multipart forms) and sends them to each running target through its real stack (uvicorn,
gunicorn, nginx, Redis + RQ, the Django chains' forwarding). Every answer must be 2xx or 4xx,
never 5xx or a dropped connection, and the target must keep serving afterwards; the job queue's
``GET /v1/jobs/{id}`` is fuzzed too. The number of inputs tried per target is printed (``-s``).

The frameworks' own v2 servers (MLServer, KServe: their environments from ``make setup``) get
the same bodies plus v2 tensors of any name, datatype and shape and broken binary-extension
requests, on ``/v2/models/<model>/infer`` (:data:`V2_EXAMPLES` each: they start slowly).

The in-process validation fuzzers (names, trace files, env entries) are in
``test_fuzz_validation.py``.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from benchmarks.bodies import deep_json, jpeg_declaring, zeros_list
from targets.common.framework import framework_python
from targets.common.payload import encode_request, jpeg_bytes
from targets.launch_types import LaunchError
from targets.launchers.process import ProcessLauncher
from targets.registry import get_kind, target_config
from tests.ports import free_port

live = pytest.mark.integration
"""The tests that start real servers."""
MAX_BODY = 64 * 1024
EXAMPLES = 1000
TARGETS = {
    "fastapi": ("fastapi", "/v1/predict"),
    "flask": ("flask", "/v1/predict"),
    "django-embedded": ("django-embedded", "/v1/predict"),
    "django-to-fastapi": ("django-to-fastapi", "/v1/predict"),
    "django-to-flask": ("django-to-flask", "/v1/predict"),
    "jobqueue": ("jobqueue", "/v1/jobs"),
}
TRIED: Counter[str] = Counter()
V2_EXAMPLES = 100
V2_TARGETS = {"mlserver": {"max_batch_size": 4, "max_batch_time_s": 0.002}, "kserve": {}}
"""Kind -> knobs: MLServer with its adaptive batcher (its runtime's path and the batcher's)."""
V2_PATH = "/v2/models/cifar10_cnn/infer"

pixels = st.one_of(st.integers(-300, 600), st.floats(allow_nan=False), st.booleans(),
                   st.text(max_size=3), st.none())  # fmt: skip
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=20,
)


@st.composite
def nested_images(draw: st.DrawFn) -> bytes:
    """Arrays of a random shape (sometimes the right one) with random pixel values."""
    shape = draw(st.lists(st.integers(0, 4), min_size=0, max_size=4))
    if draw(st.booleans()):
        shape = [draw(st.integers(1, 2)), 32, 32, 3]
    value = draw(pixels)
    arr: object = value
    for dim in reversed(shape):
        arr = [arr] * dim
    return json.dumps({"images": arr}).encode()


@st.composite
def valid_then_broken(draw: st.DrawFn) -> bytes:
    """A valid body in any encoding, then truncated, padded or bit-flipped."""
    images = np.full((draw(st.integers(1, 3)), 32, 32, 3), draw(st.integers(0, 255)), np.uint8)
    body, _ = encode_request(images, draw(st.sampled_from(["json", "base64", "jpeg"])))
    how = draw(st.sampled_from(["truncate", "flip", "pad", "keep"]))
    if how == "truncate":
        return body[: draw(st.integers(0, len(body) - 1))]
    if how == "flip":
        i = draw(st.integers(0, len(body) - 1))
        return body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1 :]
    if how == "pad":
        return body + b" " * draw(st.integers(1, MAX_BODY))  # sometimes over the limit
    return body


@st.composite
def encoded_junk(draw: st.DrawFn) -> bytes:
    key = draw(st.sampled_from(["images_b64", "images_jpeg_b64"]))
    raw = draw(st.binary(max_size=4000))
    if key == "images_jpeg_b64" and draw(st.booleans()):  # a real JPEG of the wrong size
        out = io.BytesIO()
        Image.new("RGB", (draw(st.integers(1, 64)), draw(st.integers(1, 64)))).save(out, "JPEG")
        raw = out.getvalue()
    item = draw(st.sampled_from([base64.b64encode(raw).decode(), raw.hex(), "%%%"]))
    return json.dumps({key: [item] * draw(st.integers(0, 3))}).encode()


@st.composite
def hostile(draw: st.DrawFn) -> bytes:
    """Bodies made to hurt a decoder: bombs, deep nesting, many values, wrong tensor sizes."""
    how = draw(st.sampled_from(["bomb", "bomb-b64", "deep", "zeros", "raw-size", "multipart"]))
    if how == "bomb":  # raw upload (image/jpeg) of a header claiming a huge image
        return jpeg_declaring(draw(st.integers(33, 65535)), draw(st.integers(33, 65535)))
    if how == "bomb-b64":
        bomb = jpeg_declaring(draw(st.integers(1, 65535)), draw(st.integers(1, 65535)))
        return json.dumps({"images_jpeg_b64": [base64.b64encode(bomb).decode()]}).encode()
    if how == "deep":
        return deep_json(draw(st.integers(5, 20_000)))
    if how == "zeros":
        return zeros_list(draw(st.integers(100, MAX_BODY)))
    if how == "raw-size":  # raw pixels of the wrong length
        raw = bytes(draw(st.sampled_from([0, 1, 3071, 3073, 6144, 9000])))
        return json.dumps({"images_b64": [base64.b64encode(raw).decode()]}).encode()
    part = (b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n"
            b"Content-Type: image/jpeg\r\n\r\n" + jpeg_bytes(np.zeros((32, 32, 3), np.uint8))
            + b"\r\n--x--\r\n")  # fmt: skip
    return part[: draw(st.integers(0, len(part)))]


bodies = st.one_of(
    hostile(),
    st.binary(max_size=2000),
    json_values.map(lambda v: json.dumps(v).encode()),
    nested_images(),
    valid_then_broken(),
    encoded_junk(),
    st.integers(MAX_BODY + 1, 4 * MAX_BODY).map(lambda n: b"[" + b"1," * (n // 2) + b"1]"),
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "image/jpeg",
        "text/plain",
        "multipart/form-data; boundary=x",
        "",
        "application/x-www-form-urlencoded",
    ]
)


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


@live
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])  # fmt: skip
@given(body=bodies, ctype=content_types)
def test_no_input_gets_a_5xx(running: tuple[str, int, str], body: bytes, ctype: str) -> None:
    name, port, path = running
    TRIED[name] += 1
    status = post(port, path, body, ctype)
    assert status < 500, f"{name}: HTTP {status} for {ctype!r} body {body[:120]!r}"


FRAMEWORK_EXAMPLES = 100
FRAMEWORKS = {"ray-serve": "/v1/predict", "bentoml": "/v1/predict", "litserve": "/v1/predict"}
"""The serving-framework kinds, fuzzed through their own HTTP stacks (fewer examples: their
servers take longer to start and to answer); skipped where a framework is not installed."""


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
@settings(max_examples=FRAMEWORK_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])  # fmt: skip
@given(body=bodies, ctype=content_types)
def test_no_input_gets_a_5xx_from_a_framework(
    framework: tuple[str, int, str], body: bytes, ctype: str
) -> None:
    name, port, path = framework
    TRIED[name] += 1
    status = post(port, path, body, ctype)
    assert status < 500, f"{name}: HTTP {status} for {ctype!r} body {body[:120]!r}"


@live
def test_a_framework_still_serves_after_fuzzing(framework: tuple[str, int, str]) -> None:
    _, port, path = framework
    body, ctype = encode_request(np.zeros((1, 32, 32, 3), np.uint8), "json")
    assert post(port, path, body, ctype) == 200


@live
def test_still_serving_after_fuzzing(running: tuple[str, int, str]) -> None:
    _, port, path = running
    body, ctype = encode_request(np.zeros((1, 32, 32, 3), np.uint8), "json")
    assert post(port, path, body, ctype) in (200, 202)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200


job_ids = st.one_of(
    st.text(max_size=80), st.uuids().map(str), st.from_regex(r"[A-Za-z0-9_-]{1,64}")
)
waits = st.one_of(st.none(), st.sampled_from(["0", "-1", "nan", "inf", "1e309", "abc", "0.01"]))


@live
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
