"""The request and response schema every Python target speaks, with its encodings.

One module for both sides, so the client and the servers can never disagree:

* client side: :func:`encode_request` turns uint8 images into a request body;
* server side: :func:`decode_request` turns a body into a float32 batch or raises
  :class:`PayloadError` carrying the 4xx status to answer; :func:`encode_response`.

Request bodies (``POST /v1/predict``):

==========  ======================  ==================================================
encoding    content type            body
==========  ======================  ==================================================
json        application/json        ``{"images": [[[[r, g, b] x32] x32], ...]}`` (paper)
base64      application/json        ``{"images_b64": ["<base64 of 3072 raw uint8>", ...]}``
jpeg        application/json        ``{"images_jpeg_b64": ["<base64 of a JPEG file>", ...]}``
jpeg        image/jpeg              the JPEG file itself (one image)
==========  ======================  ==================================================

Pixel values are 0..255, RGB, height x width x channel. Response:
``{"classes": [int, ...], "probabilities": [[10 floats], ...]}``.

**Bounded decoding.** A JSON parser turns every number into a Python object (~32 bytes for a
2-byte ``0,``), so a body of a million values would cost tens of MB before any shape check, and
the request, not the server, would decide how many. So a JSON body's structure is read first,
in C (``bytes.count`` / ``bytes.translate``), from its brackets and commas alone
(:func:`screen`):

* the paper's nested array: its skeleton (the body without numbers and whitespace) must be
  exactly that of ``n <= max_batch`` images; NumPy's text reader then parses the numbers
  straight into one float64 array (8 bytes a value, at most 4x the body, as a value takes at
  least 2 bytes), no Python object per value;
* lists of encoded images (one bracket): at most ``max_batch`` items, counted by their commas,
  go to the JSON parser (strings cost about their own size);
* anything else larger than :data:`SMALL_BODY_BYTES` is refused unparsed (413 when it holds
  more values than ``max_batch`` images could, else 422); smaller bodies are parsed for a
  precise error message (a bounded cost).

An image file must start as a JPEG does and declare 32x32 before a pixel is decoded (a
"decompression bomb" declaring 30000x30000 is a 422, not a 500). :class:`Decoder` also bounds
how many bodies a process decodes at once.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import threading
import warnings
from functools import lru_cache
from typing import Any

import numpy as np
import orjson
from PIL import Image, UnidentifiedImageError

from targets.inputs import CIFAR_INPUT, Encoding

Shape = tuple[int, int, int]
IMAGE_SHAPE: Shape = CIFAR_INPUT.shape
"""The paper's CNN: 32x32 RGB (height, width, channels). A server of another model passes its
model's shape to the decoder."""
IMAGE_BYTES = int(np.prod(IMAGE_SHAPE))
JSON = "application/json"
JPEG = "image/jpeg"
BODY_KEYS: dict[Encoding, str] = {
    "json": "images",
    "base64": "images_b64",
    "jpeg": "images_jpeg_b64",
}
"""The key of a JSON body, by the encoding of the images it holds (the table above)."""
_KEYS = tuple(BODY_KEYS.values())
JPEG_MAGIC = b"\xff\xd8\xff"
SMALL_BODY_BYTES = 64 * 1024
"""JSON bodies up to this size are parsed whatever their structure (for precise errors)."""
LIST_SLACK = 8
"""Commas allowed beyond ``max_batch - 1`` in a one-list body (other keys: refused later)."""
_NUMBER_CHARS = b"0123456789+-.eE \t\r\n"
_PREFIX = re.compile(rb'\A\s*\{\s*"images"\s*:\s*')
_SUFFIX = re.compile(rb"\s*\}\s*\Z")


class PayloadError(ValueError):
    """A request the server must refuse; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------- client side


def encode_request(
    images: np.ndarray, encoding: str = "json", jpeg_files: list[bytes] | None = None
) -> tuple[bytes, str]:
    """Encode ``images`` (uint8 ``[n,h,w,c]``, c 1 or 3; ``[n,32,32,3]`` for the paper's CNN)
    as a request body; returns (body, content type).

    For ``jpeg`` the original JPEG file bytes are sent when given (as a client would upload
    them), otherwise the images are JPEG-encoded here. ``json`` also takes float pixel values
    (0..255): a forwarded request that had them (:mod:`targets.common.forward`).
    """
    images = np.asarray(images)
    pixels_ok = images.dtype == np.uint8 or (encoding == "json" and images.dtype.kind == "f")
    if images.ndim != 4 or images.shape[3] not in (1, 3) or not pixels_ok:
        raise ValueError(f"expected uint8 images [n,h,w,1|3], got {images.dtype} {images.shape}")
    if encoding == "json":
        return orjson.dumps({BODY_KEYS["json"]: images.tolist()}), JSON
    if encoding == "base64":
        items = [base64.b64encode(img.tobytes()).decode("ascii") for img in images]
        return orjson.dumps({BODY_KEYS["base64"]: items}), JSON
    if encoding == "jpeg":
        files = jpeg_files if jpeg_files is not None else [jpeg_bytes(img) for img in images]
        if len(files) != len(images):
            raise ValueError("jpeg_files must hold one file per image")
        items = [base64.b64encode(f).decode("ascii") for f in files]
        return orjson.dumps({BODY_KEYS["jpeg"]: items}), JSON
    raise ValueError(f"unknown encoding {encoding!r}; use {', '.join(BODY_KEYS)}")


def as_jpeg_files(files: list[bytes]) -> list[bytes]:
    """Image files as JPEG files: JPEG ones unchanged, others (PNG...) transcoded at quality
    95 in their own mode (grayscale stays grayscale), as a client that uploads JPEG would."""
    out = []
    for data in files:
        if data[:3] != JPEG_MAGIC:
            with Image.open(io.BytesIO(data)) as img:
                mode = "L" if img.mode in ("L", "LA", "I", "I;16", "1") else "RGB"
                data = jpeg_bytes(np.asarray(img.convert(mode), dtype=np.uint8))
        out.append(data)
    return out


def jpeg_bytes(img: np.ndarray) -> bytes:
    """One uint8 ``[h,w,3]`` (or ``[h,w,1]`` / ``[h,w]`` grayscale) image as a JPEG file
    (quality 95), as clients upload images."""
    pixels = np.asarray(img, dtype=np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    out = io.BytesIO()
    Image.fromarray(pixels, "L" if pixels.ndim == 2 else "RGB").save(out, format="JPEG",
                                                                     quality=95)  # fmt: skip
    return out.getvalue()


# --------------------------------------------------------------------------- server side


def decode_request(
    body: bytes, content_type: str | None, max_batch: int = 256, shape: Shape = IMAGE_SHAPE
) -> np.ndarray:
    """Validate and decode a request body into float32 ``[n, *shape]`` pixel values in 0..255
    (``shape``: the model's height, width, channels)."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media == JPEG:
        return _stack([_decode_jpeg(body, 0, shape)])
    if media not in (JSON, ""):
        raise PayloadError(415, f"unsupported content type {media!r}; send {JSON} or {JPEG}")
    if not body:
        raise PayloadError(400, "empty body; send a JSON object with 'images'")
    screened = screen(body, max_batch, shape)
    if screened is not None:
        return _checked_pixels(screened)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise PayloadError(400, f"body is not valid JSON: {err}") from None
    return decode_document(doc, max_batch, shape)


def decode_document(doc: Any, max_batch: int = 256, shape: Shape = IMAGE_SHAPE) -> np.ndarray:
    """A request body already parsed from JSON (by a framework's own parser) as float32
    ``[n, *shape]`` pixel values; PayloadError (4xx) when it is not one."""
    if not isinstance(doc, dict):
        raise PayloadError(422, "body must be a JSON object with one of: " + ", ".join(_KEYS))
    present = [k for k in _KEYS if k in doc]
    extra = sorted(set(doc) - set(_KEYS))
    if len(present) != 1 or extra:
        raise PayloadError(
            422, "body must have exactly one key of: " + ", ".join(_KEYS) + f" (got {sorted(doc)})"
        )
    key = present[0]
    items = doc[key]
    if not isinstance(items, list) or not items:
        raise PayloadError(422, f"'{key}' must be a non-empty list of images")
    if len(items) > max_batch:
        raise PayloadError(413, f"batch of {len(items)} images exceeds the limit of {max_batch}")
    if key == BODY_KEYS["json"]:
        return _decode_nested(items, shape)
    if key == BODY_KEYS["base64"]:
        return _stack([_decode_raw_b64(item, i, shape) for i, item in enumerate(items)])
    return _stack([_decode_jpeg(_b64(item, i), i, shape) for i, item in enumerate(items)])


@lru_cache(maxsize=8)
def _image_skeleton(shape: Shape) -> bytes:
    height, width, channels = shape
    pixel = b"[" + b"," * (channels - 1) + b"]"
    row = b"[" + b",".join([pixel] * width) + b"]"
    return b"[" + b",".join([row] * height) + b"]"


def skeleton_of(n: int, shape: Shape = IMAGE_SHAPE) -> bytes:
    """The brackets and commas of a valid ``[n, *shape]`` array."""
    return b"[" + b",".join([_image_skeleton(shape)] * n) + b"]"


def _label(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def screen(body: bytes, max_batch: int, shape: Shape = IMAGE_SHAPE) -> np.ndarray | None:
    """A JSON body's structure, checked before parsing: the images of a nested-array body
    (float64 ``[n, *shape]``, values not range-checked yet), or None when the body may go to
    the JSON parser; PayloadError when it is refused unparsed."""
    brackets, commas = body.count(b"["), body.count(b",")
    if brackets <= 1:  # a list of encoded images (or no list at all)
        if commas > max_batch - 1 + LIST_SLACK:
            raise PayloadError(413, f"body lists more than {max_batch} images (the batch limit)")
        return None
    values = shape[0] * shape[1] * shape[2]
    n, rest = divmod(brackets - 1, _image_skeleton(shape).count(b"["))
    if n >= 1 and not rest and commas == n * values - 1:
        if n > max_batch:
            raise PayloadError(413, f"batch of {n} images exceeds the limit of {max_batch}")
        images = _parse_nested(body, n, shape)
        if images is not None:
            return images
    if len(body) <= SMALL_BODY_BYTES:
        return None
    if commas + 1 > max_batch * values:
        raise PayloadError(
            413, f"body holds more values than {max_batch} images of {_label(shape)} (the batch "
            "limit)",
        )  # fmt: skip
    raise PayloadError(
        422, f'body is neither {{"images": [n,{",".join(map(str, shape))}] array of numbers}} '
        "nor a list of encoded images (checked from its brackets and commas, before parsing)",
    )  # fmt: skip


def _parse_nested(body: bytes, n: int, shape: Shape = IMAGE_SHAPE) -> np.ndarray | None:
    """Parse an exact ``{"images": [n, *shape]}`` body with NumPy; None if it is not one."""
    start, end = _PREFIX.match(body), _SUFFIX.search(body)
    if start is None or end is None or start.end() >= end.start():
        return None
    array = body[start.end() : end.start()]
    if array.translate(None, _NUMBER_CHARS) != skeleton_of(n, shape):
        return None  # strings, booleans, nulls, objects, or brackets in other places
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "could not be read to its end"
        try:
            values = np.fromstring(array.translate(None, b"[]"), dtype=np.float64, sep=",")
        except ValueError:  # NumPy >= 2.3: a token that is not a number
            values = np.empty(0)
    if values.size != n * shape[0] * shape[1] * shape[2]:
        raise PayloadError(422, "pixel values must be numbers (a token is not a JSON number)")
    return values.reshape(n, *shape)


def _decode_nested(items: list[Any], shape: Shape = IMAGE_SHAPE) -> np.ndarray:
    dims = ",".join(map(str, shape))
    try:
        arr = np.asarray(items)
    except (ValueError, TypeError):
        raise PayloadError(422, f"'images' must be a rectangular [n,{dims}] array") from None
    if arr.dtype.kind not in "iuf":
        raise PayloadError(422, f"pixel values must be numbers, got {arr.dtype.kind!r} data")
    if arr.ndim != 4 or arr.shape[1:] != shape:
        raise PayloadError(422, f"'images' must have shape [n,{dims}], got {list(arr.shape)}")
    return _checked_pixels(arr)


def _checked_pixels(arr: np.ndarray) -> np.ndarray:
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 255:
        raise PayloadError(422, "pixel values must be finite and within 0..255")
    return arr.astype(np.float32)


def _b64(item: Any, index: int) -> bytes:
    if not isinstance(item, str):
        raise PayloadError(422, f"image {index}: expected a base64 string")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError(422, f"image {index}: invalid base64") from None


def _decode_raw_b64(item: Any, index: int, shape: Shape = IMAGE_SHAPE) -> np.ndarray:
    raw = _b64(item, index)
    size = shape[0] * shape[1] * shape[2]
    if len(raw) != size:
        raise PayloadError(422, f"image {index}: expected {size} raw uint8 bytes, got {len(raw)}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape)


def _decode_jpeg(data: bytes, index: int, shape: Shape = IMAGE_SHAPE) -> np.ndarray:
    if not data:
        raise PayloadError(400, f"image {index}: empty JPEG")
    if data[:3] != JPEG_MAGIC:
        raise PayloadError(
            422, f"image {index}: not a decodable JPEG (a JPEG file starts with FF D8 FF)"
        )
    try:
        # Only the JPEG decoder, and only the header is read before the size check: pixels are
        # decoded (convert) for images of the model's size alone.
        with Image.open(io.BytesIO(data), formats=("JPEG",)) as img:
            if img.size != (shape[1], shape[0]):
                raise PayloadError(
                    422, f"image {index}: expected {shape[1]}x{shape[0]}, got {img.size}"
                )
            mode = "L" if shape[2] == 1 else "RGB"
            return np.asarray(img.convert(mode), dtype=np.uint8).reshape(shape)
    except PayloadError:
        raise
    except Image.DecompressionBombError:
        raise PayloadError(422, f"image {index}: declared dimensions are far too large") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise PayloadError(422, f"image {index}: not a decodable JPEG") from None


class Decoder:
    """:func:`decode_request` with at most ``slots`` bodies decoded at once in this process.

    Decoding is CPU work under the GIL: more at once is no faster, only more memory. Further
    requests wait for a slot (they are already admitted by ``max_works``)."""

    def __init__(self, max_batch: int, slots: int, shape: Shape = IMAGE_SHAPE) -> None:
        self.max_batch = max_batch
        self.shape = shape
        self._slots = threading.BoundedSemaphore(slots)

    def __call__(self, body: bytes, content_type: str | None) -> np.ndarray:
        with self._slots:
            return decode_request(body, content_type, self.max_batch, self.shape)


def _stack(images: list[np.ndarray]) -> np.ndarray:
    return np.stack(images).astype(np.float32)


def response_document(probabilities: np.ndarray) -> dict[str, Any]:
    """The answer: ``{"classes": [...], "probabilities": [...]}``."""
    probs = np.asarray(probabilities, dtype=np.float32)
    return {"classes": probs.argmax(axis=1).tolist(), "probabilities": probs.tolist()}


def encode_response(probabilities: np.ndarray) -> bytes:
    return orjson.dumps(response_document(probabilities))


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})
