"""The data set's images as the files the load sends (JPEG or PNG, as they are or resized),
in the same seeded selection as the decoded images (:func:`targets.common.dataset.load_split`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from targets.common.dataset import CLASSES, DatasetError, select
from targets.common.dataset.folder import decode, parallel, read
from targets.inputs import CIFAR_INPUT, InputSpec

JPEG_QUALITY = 95


def encode_jpeg(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    pixels = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    pixels.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buf.getvalue()


def load_jpeg_bytes(
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    verify: bool = True,
    spec: InputSpec = CIFAR_INPUT,
    classes: Sequence[str] | None = CLASSES,
    resize: bool = False,
) -> tuple[list[bytes], np.ndarray]:
    """The encoded images of ``split`` as raw bytes, plus their int64 labels.

    Same selection and order as :func:`load_split` with the same arguments. From a
    directory, the bytes are the files' contents unchanged (JPEG or PNG) when they already
    have the input's size and mode; with ``resize``, others are resized and encoded again in
    their own format (JPEG at quality 95). With ``verify`` (default) each selected file is
    also decoded once so that a corrupt or wrongly sized file raises :class:`DatasetError`
    here rather than at a server. With no directory, the keras arrays are encoded to JPEG by
    Pillow at quality 95 without chroma subsampling (so the pixels a server decodes differ
    slightly from the arrays).
    """
    chosen = select(split, data_dir, limit, seed, spec, classes)
    index = chosen.index
    if chosen.listing is None:
        images, labels = chosen.download
        return [encode_jpeg(images[i]) for i in index], labels[index]
    listing = chosen.listing
    paths = [listing.root / listing.files[i] for i in index]
    blobs: list[bytes] = [b""] * len(paths)

    def work(chunk: range) -> None:
        for i in chunk:
            blobs[i] = read(paths[i])
            if resize:
                blobs[i] = fitted_file(blobs[i], str(paths[i]), spec)
            elif verify:
                decode(blobs[i], str(paths[i]), spec)

    parallel(len(paths), work)
    return blobs, listing.labels[index]


def fitted_file(data: bytes, name: str, spec: InputSpec) -> bytes:
    """The file as it is when it already has the input's size and mode, else the resized
    image in the file's own format."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.size == (spec.width, spec.height) and im.mode == spec.pil_mode:
                return data
            kind = im.format or "PNG"
    except Exception as exc:
        raise DatasetError(f"cannot decode image {name}: {exc}. Replace or remove it.") from exc
    pixels = decode(data, name, spec, resize=True)
    image = Image.fromarray(pixels.reshape(spec.height, spec.width, -1).squeeze(-1)
                            if spec.channels == 1 else pixels, spec.pil_mode)  # fmt: skip
    out = io.BytesIO()
    if kind == "JPEG":
        image.save(out, format="JPEG", quality=JPEG_QUALITY)
    else:
        image.save(out, format="PNG")
    return out.getvalue()
