"""The shared request codec: every encoding round-trips; every malformed body maps to a 4xx."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson
import pytest

from benchmarks.bodies import deep_json, jpeg_declaring, zeros_list
from targets.common.payload import PayloadError, decode_request, encode_request, encode_response

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["json", "base64"])
def test_lossless_encodings_round_trip(encoding: str) -> None:
    body, ctype = encode_request(IMAGES, encoding)
    out = decode_request(body, ctype)
    assert out.dtype == np.float32 and out.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(out, IMAGES.astype(np.float32))


def test_jpeg_round_trip_is_close() -> None:
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (32, 1, 3))[None]
    body, ctype = encode_request(smooth, "jpeg")
    out = decode_request(body, ctype)
    assert out.shape == (1, 32, 32, 3)
    assert np.abs(out - smooth).mean() < 3


def test_raw_jpeg_upload_and_original_files_are_used() -> None:
    body, _ = encode_request(IMAGES[:1], "jpeg")
    jpeg = base64.b64decode(orjson.loads(body)["images_jpeg_b64"][0])
    assert decode_request(jpeg, "image/jpeg").shape == (1, 32, 32, 3)
    body2, _ = encode_request(IMAGES[:1], "jpeg", jpeg_files=[jpeg])
    assert body2 == body


@pytest.mark.parametrize(
    ("body", "ctype", "status", "fragment"),
    [
        (b"", "application/json", 400, "empty body"),
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"[1,2]", "application/json", 422, "JSON object"),
        (b'{"imgs": []}', "application/json", 422, "exactly one key"),
        (b'{"images": [], "images_b64": []}', "application/json", 422, "exactly one key"),
        (b'{"images": []}', "application/json", 422, "non-empty list"),
        (b'{"images": [[1,2],[3]]}', "application/json", 422, "rectangular"),
        (b'{"images": [[[["a","b","c"]]]]}', "application/json", 422, "must be numbers"),
        (b'{"images": [[[[1,2,3]]]]}', "application/json", 422, "shape [n,32,32,3]"),
        (b'{"images_b64": [5]}', "application/json", 422, "base64 string"),
        (b'{"images_b64": ["!!!"]}', "application/json", 422, "invalid base64"),
        (b'{"images_b64": ["AAAA"]}', "application/json", 422, "3072 raw uint8 bytes"),
        (b'{"images_jpeg_b64": ["AAAA"]}', "application/json", 422, "decodable JPEG"),
        (b"\x89PNG....", "image/jpeg", 422, "decodable JPEG"),
        (b"x", "text/plain", 415, "unsupported content type"),
    ],
)
def test_malformed_bodies_are_4xx(body: bytes, ctype: str, status: int, fragment: str) -> None:
    with pytest.raises(PayloadError) as info:
        decode_request(body, ctype)
    assert info.value.status == status
    assert fragment in info.value.message


def test_out_of_range_and_non_finite_pixels() -> None:
    for bad in (-1, 256, 1e39):  # 1e39 overflows float32 to inf
        arr = IMAGES[:1].astype(float)
        arr[0, 0, 0, 0] = bad
        body = orjson.dumps({"images": arr.tolist()})
        with pytest.raises(PayloadError, match="within 0..255"):
            decode_request(body, "application/json")
    nan_body = orjson.dumps({"images": IMAGES[:1].tolist()}).replace(b"[[[", b"[[[NaN,", 1)
    with pytest.raises(PayloadError) as info:
        decode_request(nan_body, "application/json")
    assert info.value.status == 400  # NaN is not JSON


def test_booleans_are_not_pixels() -> None:
    body = orjson.dumps({"images": np.ones((1, 32, 32, 3), dtype=bool).tolist()})
    with pytest.raises(PayloadError, match="must be numbers"):
        decode_request(body, "application/json")


def test_batch_limit() -> None:
    body, ctype = encode_request(IMAGES, "base64")
    with pytest.raises(PayloadError) as info:
        decode_request(body, ctype, max_batch=2)
    assert info.value.status == 413


def test_response_has_classes_and_probabilities() -> None:
    probs = np.array([[0.1, 0.9] + [0.0] * 8, [0.7, 0.3] + [0.0] * 8], dtype=np.float32)
    doc = orjson.loads(encode_response(probs))
    assert doc["classes"] == [1, 0]
    assert np.allclose(doc["probabilities"], probs)


def test_client_refuses_wrong_arrays() -> None:
    for encoding in ("base64", "jpeg"):  # raw bytes and image files are uint8 pixels only
        with pytest.raises(ValueError, match="uint8"):
            encode_request(IMAGES.astype(np.float32), encoding)
    with pytest.raises(ValueError, match="uint8"):
        encode_request(IMAGES[0])  # not a batch
    # json carries numbers: float pixel values (a request the Django tier forwards) stay floats
    floats = IMAGES[:1].astype(np.float32) * 0.5 + 0.25
    body, _ = encode_request(floats)
    assert np.array_equal(decode_request(body, "application/json"), floats)
    with pytest.raises(ValueError, match="unknown encoding"):
        encode_request(IMAGES, "xml")


@pytest.mark.parametrize(("width", "height"), [(30000, 30000), (65535, 65535), (33, 32), (1, 1)])
def test_declared_dimensions_are_checked_before_decoding(width: int, height: int) -> None:
    bomb = jpeg_declaring(width, height)
    assert len(bomb) < 1000
    for body, ctype in [
        (bomb, "image/jpeg"),
        (orjson.dumps({"images_jpeg_b64": [base64.b64encode(bomb).decode()]}), "application/json"),
    ]:
        with pytest.raises(PayloadError) as info:
            decode_request(body, ctype)
        assert info.value.status == 422, info.value.message


def test_only_jpeg_files_are_decoded() -> None:
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (32, 32)).save(png, format="PNG")
    with pytest.raises(PayloadError, match="FF D8 FF") as info:
        decode_request(png.getvalue(), "image/jpeg")
    assert info.value.status == 422


def test_too_many_values_are_refused_before_parsing() -> None:
    body = zeros_list(1024 * 1024)  # half a million zeros in one list
    with pytest.raises(PayloadError, match="more than 256 images") as info:
        decode_request(body, "application/json", max_batch=256)
    assert info.value.status == 413
    # The limit follows max_batch, and a full batch of valid images is still accepted.
    full, ctype = encode_request(np.zeros((4, 32, 32, 3), np.uint8), "json")
    assert decode_request(full, ctype, max_batch=4).shape == (4, 32, 32, 3)
    with pytest.raises(PayloadError, match="batch of 4 images exceeds the limit of 3"):
        decode_request(full, ctype, max_batch=3)


def test_nested_arrays_are_parsed_without_a_python_object_per_value() -> None:
    import tracemalloc

    images = RNG.integers(0, 256, size=(64, 32, 32, 3), dtype=np.uint8)
    body, ctype = encode_request(images, "json")
    tracemalloc.start()
    try:
        out = decode_request(body, ctype)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(out, images.astype(np.float32))
    assert peak <= 4 * len(body), f"{peak / len(body):.1f}x the body"
    # Whitespace and number spellings JSON allows parse the same way.
    pretty = orjson.dumps({"images": (images[:2].astype(float) / 1).tolist()},
                          option=orjson.OPT_INDENT_2)  # fmt: skip
    np.testing.assert_array_equal(decode_request(pretty, ctype), images[:2].astype(np.float32))


@pytest.mark.parametrize(
    "token", [b'"7"', b"true", b"null", b"1e999", b"--1", b"[1]", b"{}"], ids=repr
)
def test_a_bad_value_in_a_large_nested_body_is_a_4xx(token: bytes) -> None:
    body, ctype = encode_request(np.zeros((8, 32, 32, 3), np.uint8), "json")
    assert len(body) > 64 * 1024  # past the size parsed for precise messages
    bad = body.replace(b"0", token, 1)
    with pytest.raises(PayloadError) as info:
        decode_request(bad, ctype)
    assert info.value.status in (413, 422)


def test_deep_json_is_a_4xx() -> None:
    for depth in (5, 2000, 100_000):
        with pytest.raises(PayloadError) as info:
            decode_request(deep_json(depth), "application/json")
        assert 400 <= info.value.status < 500


def test_decoder_bounds_concurrent_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    from targets.common import payload

    decoder = payload.Decoder(max_batch=4, slots=2)
    active, peak = 0, 0
    lock = threading.Lock()
    original = payload.decode_request

    def slow_decode(body: bytes, ctype: str | None, *args: Any) -> np.ndarray:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with lock:
            active -= 1
        return original(body, ctype, *args)

    body, ctype = encode_request(IMAGES[:1], "base64")
    monkeypatch.setattr(payload, "decode_request", slow_decode)
    threads = [threading.Thread(target=decoder, args=(body, ctype)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 2
