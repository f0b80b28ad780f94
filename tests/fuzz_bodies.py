"""Request bodies and content types for fuzzing servecap's predict API (Hypothesis strategies):
wrong shapes, types, sizes, encodings, truncated and oversized bodies, random bytes, odd
content types, decompression bombs and huge declared image dimensions, deeply nested JSON,
millions of values, truncated multipart forms; job ids and long-poll waits for the job
queue; KServe v2 tensors of any name, datatype and shape and broken binary-extension
requests. Used in process (tests/targets/test_fuzz_inprocess.py) and against every real stack
where a test starts it (:func:`fuzz_predict`, :func:`fuzz_v2`: test_fuzz.py, test_chains.py,
test_frameworks.py, test_mlserver.py, test_kserve.py)."""

from __future__ import annotations

import base64
import http.client
import io
import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from benchmarks.bodies import deep_json, jpeg_declaring, zeros_list
from targets.common.payload import encode_request, jpeg_bytes

MAX_BODY = 64 * 1024
"""Bodies go up to four times this size (a fuzzed target's ``max_body_bytes`` is this or
twice this: some bodies are over it)."""
LIVE_EXAMPLES = 100
"""Inputs sent to each real stack (the parser and the service take 1,000 in process)."""

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


job_ids = st.one_of(
    st.text(max_size=80), st.uuids().map(str), st.from_regex(r"[A-Za-z0-9_-]{1,64}")
)
waits = st.one_of(st.none(), st.sampled_from(["0", "-1", "nan", "inf", "1e309", "abc", "0.01"]))


def post(port: int, path: str, body: bytes, ctype: str) -> int:
    """The status a target on 127.0.0.1:``port`` answers a POST of ``body`` to ``path``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": ctype} if ctype else {}
        conn.request("POST", path, body=body, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def fuzz_predict(port: int, path: str, examples: int = LIVE_EXAMPLES) -> int:
    """Send ``examples`` fuzzed bodies to a running target's ``path``: AssertionError at the
    first 5xx or dropped connection; how many were sent."""
    sent = 0

    @settings(max_examples=examples, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
    @given(body=bodies, ctype=content_types)
    def one(body: bytes, ctype: str) -> None:
        nonlocal sent
        sent += 1
        status = post(port, path, body, ctype)
        assert status < 500, f"port {port}: HTTP {status} for {ctype!r} body {body[:120]!r}"

    one()
    return sent


def assert_still_serving(port: int, path: str) -> None:
    """A valid request is answered (200, or 202 for a job) and the health check is 200."""
    body, ctype = encode_request(np.zeros((1, 32, 32, 3), np.uint8), "json")
    assert post(port, path, body, ctype) in (200, 202)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200


# --------------------------------------------------------------------------- KServe v2

V2_PATH = "/v2/models/cifar10_cnn/infer"

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


def post_v2(port: int, body: bytes, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", V2_PATH, body=body, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def fuzz_v2(port: int, examples: int = LIVE_EXAMPLES) -> int:
    """Send ``examples`` fuzzed v2 requests (the predict bodies too) to a v2 server's infer
    path: AssertionError at the first 5xx; how many were sent."""
    sent = 0

    @settings(max_examples=examples, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
    @given(request=v2_requests)
    def one(request: tuple[bytes, dict[str, str]]) -> None:
        nonlocal sent
        sent += 1
        body, headers = request
        status = post_v2(port, body, headers)
        assert status < 500, f"port {port}: HTTP {status} for {headers} body {body[:160]!r}"

    one()
    return sent


def assert_v2_still_serving(port: int) -> None:
    image = {"name": "images", "shape": [1, 32, 32, 3], "datatype": "FP32", "data": [0] * 3072}
    status = post_v2(port, json.dumps({"inputs": [image]}).encode(),
                     {"Content-Type": "application/json"})  # fmt: skip
    assert status == 200
