"""Hostile request bodies: the memory benchmark measures what they cost a target; the codec
tests and the live fuzzing send them too."""

from __future__ import annotations

import io

from PIL import Image


def jpeg_declaring(width: int, height: int) -> bytes:
    """A ~600-byte JPEG whose header (SOF0) claims ``width`` x ``height`` pixels: a
    "decompression bomb" for decoders that trust the header."""
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (120, 30, 200)).save(out, format="JPEG", quality=90)
    data = bytearray(out.getvalue())
    sof = data.find(b"\xff\xc0")
    assert sof > 0, "no SOF0 marker"
    data[sof + 5 : sof + 7] = height.to_bytes(2, "big")
    data[sof + 7 : sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


def zeros_list(body_bytes: int) -> bytes:
    """``{"images": [0,0,...]}`` of about ``body_bytes`` bytes: many values, wrong shape."""
    count = max(1, (body_bytes - 14) // 2)
    return b'{"images": [' + b"0," * (count - 1) + b"0]}"


def deep_json(depth: int) -> bytes:
    """``{"images": [[[[...]]]]}`` nested ``depth`` lists deep."""
    return b'{"images": ' + b"[" * depth + b"]" * depth + b"}"
