"""``image-upload``: the image file itself is the request, as many model servers take it.

``POST <predict_path>`` (default ``/v1/predict``) with the image file as the body
(``Content-Type: image/jpeg`` or ``image/png``), or, with ``upload_field``, as that field of a
``multipart/form-data`` form (encoded by urllib3). One image per request. Encodings: ``file``
(the dataset's files as they are, resized ones encoded again in their format), ``jpeg`` (JPEG
files, others transcoded at quality 95), ``png`` (PNG files from the pixels).

The answer is JSON; ``output_name`` names the field that holds the scores (probabilities or
logits: a list, or a list of lists) or the class id (``output_kind: class_id``). A dotted
name reaches into objects (``result.scores``). servecap's own servers accept a raw JPEG body at
``/v1/predict`` and answer ``probabilities``.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import orjson
from PIL import Image
from urllib3 import encode_multipart_formdata

from targets.common.payload import JPEG_MAGIC, as_jpeg_files
from targets.inputs import CNN_OUTPUT_NAME
from targets.protocols.base import Endpoint, Headers, Protocol
from targets.protocols.servecap import PREDICT_PATH

DEFAULT_PATH = PREDICT_PATH
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def media_type(data: bytes) -> str:
    if data.startswith(JPEG_MAGIC):
        return "image/jpeg"
    if data.startswith(PNG_MAGIC):
        return "image/png"
    return "application/octet-stream"


def png_bytes(image: np.ndarray) -> bytes:
    pixels = np.asarray(image, dtype=np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    out = io.BytesIO()
    Image.fromarray(pixels, "L" if pixels.ndim == 2 else "RGB").save(out, format="PNG")
    return out.getvalue()


def field(doc: Any, name: str) -> Any:
    """``doc[name]``, following dots into nested objects."""
    for part in name.split("."):
        if not isinstance(doc, dict) or part not in doc:
            raise ValueError(f"answer has no '{name}': {str(doc)[:200]}")
        doc = doc[part]
    return doc


class ImageUpload(Protocol):
    name = "image-upload"
    encodings = ("file", "jpeg", "png")
    uploads_files = True
    max_images_per_request = 1

    def predict_path(self, endpoint: Endpoint) -> str:
        return endpoint.predict_path or DEFAULT_PATH

    def encode(
        self,
        images: np.ndarray,
        encoding: str = "file",
        files: list[bytes] | None = None,
        endpoint: Endpoint | None = None,
    ) -> tuple[bytes, Headers]:
        self.check_encoding(encoding)
        if len(images) != 1:
            raise ValueError("image-upload sends one image per request (images_per_request: 1)")
        if encoding == "png":
            data = png_bytes(images[0])
        elif files is not None:
            data = as_jpeg_files(files[:1])[0] if encoding == "jpeg" else files[0]
        else:
            data = as_jpeg_files([png_bytes(images[0])])[0] if encoding == "jpeg" else \
                png_bytes(images[0])  # fmt: skip
        upload = endpoint.upload_field if endpoint is not None else None
        if upload is None:
            return data, {"Content-Type": media_type(data)}
        suffix = ".jpg" if data.startswith(JPEG_MAGIC) else ".png"
        body, content_type = encode_multipart_formdata(
            {upload: (f"image{suffix}", data, media_type(data))}
        )
        return body, {"Content-Type": content_type}

    def probabilities(self, answer: bytes, endpoint: Endpoint | None = None) -> np.ndarray:
        """The named output: scores ``[n, classes]``, or class ids ``[n]`` (``class_id``)."""
        try:
            doc: Any = orjson.loads(answer)
        except orjson.JSONDecodeError as err:
            raise ValueError(f"answer is not JSON: {answer[:200]!r}") from err
        name = endpoint.output_name if endpoint is not None else CNN_OUTPUT_NAME
        values = np.asarray(field(doc, name), dtype=np.float32)
        if endpoint is not None and endpoint.output_kind == "class_id":
            return values.reshape(-1)
        if values.ndim == 1:
            values = values[None, :]  # the scores of the one image
        if values.ndim != 2:
            raise ValueError(f"'{name}' must be scores per class, got {list(values.shape)}")
        return values
