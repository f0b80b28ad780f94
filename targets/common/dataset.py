"""Image loading for training the model and for feeding the load generators: CIFAR-10 by
default, or any folder of images with one subfolder per class.

Two sources, chosen by :func:`resolve_data_dir`:

1. An image-folder directory (the ``--data`` option, a scenario's ``load.dataset``, else the
   ``SERVECAP_CIFAR10_DIR`` environment variable) laid out as::

       <dir>/train/<class>/*.jpg|*.jpeg|*.png
       <dir>/test/<class>/*.jpg|*.jpeg|*.png

   or, for the test split, simply ``<dir>/<class>/*``. The classes are ``classes`` (label =
   position in it): by default the 10 names of :data:`CLASSES` (the official CIFAR-10 order,
   which is also their alphabetical order), exactly; ``classes=None`` takes the class folders
   found, in sorted order. Images are converted to the input's mode (RGB, or L for one
   channel: grayscale, palette and RGBA images are converted). An image of another size than
   the input is an error, or, with ``resize=True``, resized with the input's method
   (:attr:`targets.inputs.InputSpec.resize`, Pillow's filter of that name). Other files
   (``README``, ``.DS_Store``) are ignored.
2. Neither given: the official ``keras.datasets.cifar10`` download (cached by keras in
   ``~/.keras/datasets``; CIFAR's own input only).

Order and ``limit``: files are listed in a deterministic order, sorted by (class index,
file name); that list is then *always* shuffled with ``np.random.default_rng(seed)``
and the first ``limit`` items are kept (all of them when ``limit`` is None). The
same ``(split, data_dir, limit, seed)`` therefore always gives the same images in the
same order, a prefix of any length is a roughly class-balanced sample, and a smaller
``limit`` with the same seed gives a prefix of a larger one.

Decoding 50,000 JPEGs takes seconds, so a decoded directory split is cached as an
uncompressed ``.npz`` under ``${XDG_CACHE_HOME:-~/.cache}/servecap/``, keyed by the
absolute directory, the split, the number of image files and the newest modification
time of the class folders (adding, removing or renaming a file changes it; rewriting
a file in place does not: delete the cache or set ``SERVECAP_NO_CACHE=1``). The cache
always holds the whole split; ``limit`` selects from it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from targets.inputs import CIFAR_INPUT, InputSpec

__all__ = [
    "CACHE_ENV_VAR",
    "CLASSES",
    "ENV_VAR",
    "IMAGE_EXTENSIONS",
    "NO_CACHE_ENV_VAR",
    "SPLITS",
    "DatasetError",
    "Split",
    "cache_dir",
    "class_names",
    "load_jpeg_bytes",
    "load_split",
    "resolve_data_dir",
]

log = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
"""CIFAR-10 class names; the label of a class is its index here (official order)."""

ENV_VAR = "SERVECAP_CIFAR10_DIR"
"""Environment variable naming the image-folder directory when ``--data`` is not given."""

NO_CACHE_ENV_VAR = "SERVECAP_NO_CACHE"
"""Set to ``1`` to neither read nor write the decoded-array cache."""

CACHE_ENV_VAR = "XDG_CACHE_HOME"

SPLITS: tuple[str, ...] = ("train", "test")
IMAGE_SHAPE: tuple[int, int, int] = CIFAR_INPUT.shape
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png"})

_CACHE_FORMAT = 2
_FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}
_JPEG_QUALITY = 95
_CHUNK = 1000  # images per decode task


class DatasetError(ValueError):
    """The data set is missing or not in the expected form; the message says how to fix it."""


@dataclass(frozen=True)
class Split:
    """One split after selection (see the module docstring for the order)."""

    name: str
    """``"train"`` or ``"test"``."""
    images: np.ndarray
    """uint8 ``[n, height, width, channels]`` (``[n, 32, 32, 3]`` RGB for CIFAR-10)."""
    labels: np.ndarray
    """int64 ``[n]``, indices into the class names."""
    files: tuple[str, ...]
    """Source file of each image, relative to the data directory (e.g.
    ``"test/cat/0001.jpg"``); ``""`` for images from the keras download."""

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _layout_help() -> str:
    classes = ", ".join(CLASSES)
    return (
        "Expected an image-folder layout <dir>/{train,test}/<class>/*.jpg|*.jpeg|*.png "
        f"with the class folders {classes}. Pass the directory with --data or set "
        f"{ENV_VAR}; with neither, the official CIFAR-10 is downloaded through keras."
    )


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """Return the data directory to use: ``data_dir``, else ``$SERVECAP_CIFAR10_DIR``,
    else None (meaning: use the keras download). Empty strings count as unset.

    Existence is not checked here; :func:`load_split` reports a missing directory.
    """
    if data_dir is not None and os.fspath(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    return None


def cache_dir() -> Path:
    """Directory of the decoded-array cache: ``${XDG_CACHE_HOME:-~/.cache}/servecap``."""
    base = os.environ.get(CACHE_ENV_VAR, "")
    return (Path(base) if base else Path.home() / ".cache") / "servecap"


def _cache_enabled() -> bool:
    return os.environ.get(NO_CACHE_ENV_VAR, "").strip().lower() not in {"1", "true", "yes", "on"}


def _check_args(split: str, limit: int | None) -> None:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if limit is not None and (isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")


def _selection(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Indices into the sorted list: a seeded permutation, cut to ``limit``."""
    order = np.random.default_rng(seed).permutation(n)
    return order if limit is None else order[:limit]


# --------------------------------------------------------------------------- directory


@dataclass(frozen=True)
class _Listing:
    root: Path  # absolute
    split: str
    files: tuple[str, ...]  # relative to root, posix, sorted by (label, name)
    labels: np.ndarray  # int64
    newest_mtime_ns: int
    classes: tuple[str, ...]


def _split_dir(root: Path, split: str) -> Path:
    """``<root>/<split>``, or ``<root>`` itself for a test split laid out as class folders."""
    if not root.exists():
        raise DatasetError(f"data directory {root} does not exist. {_layout_help()}")
    if not root.is_dir():
        raise DatasetError(f"data path {root} is not a directory. {_layout_help()}")
    root = root.resolve()
    split_dir = root / split
    if split_dir.is_dir():
        return split_dir
    if split == "test" and not (root / "train").is_dir() and _folders(root):
        return root  # <dir>/<class>/*: a folder of classes to test with
    raise DatasetError(f"{root} has no '{split}' folder ({split_dir}). {_layout_help()}")


def _folders(path: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def class_names(
    data_dir: str | os.PathLike[str] | None, split: str = "test",
    classes: Sequence[str] | None = CLASSES,
) -> tuple[str, ...]:  # fmt: skip
    """The class names labels index: ``classes``, or the sorted class folders when None."""
    if classes is not None:
        return tuple(classes)
    root = resolve_data_dir(data_dir)
    if root is None:
        return CLASSES
    return tuple(_folders(_split_dir(root, split)))


def _listing(root: Path, split: str, classes: Sequence[str] | None = CLASSES) -> _Listing:
    split_dir = _split_dir(root, split)
    root = root.resolve()
    found = _folders(split_dir)
    names = tuple(classes) if classes is not None else tuple(found)
    if not names:
        raise DatasetError(f"{split_dir} holds no class folders. {_layout_help()}")
    expected = ", ".join(names)
    unknown = [name for name in found if name not in names]
    if unknown:
        raise DatasetError(
            f"unknown class folder {split_dir / unknown[0]}; the class folders of "
            f"{split_dir} must be exactly: {expected}"
        )
    missing = [name for name in names if name not in found]
    if missing:
        raise DatasetError(
            f"missing class folder {split_dir / missing[0]}; the class folders of "
            f"{split_dir} must be exactly: {expected}"
        )
    prefix = split_dir.relative_to(root).as_posix()
    files: list[str] = []
    labels: list[int] = []
    newest = 0
    for label, name in enumerate(names):
        class_dir = split_dir / name
        newest = max(newest, class_dir.stat().st_mtime_ns)
        images = sorted(
            e.name
            for e in os.scandir(class_dir)
            if not e.name.startswith(".")
            and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
            and e.is_file()
        )
        if not images:
            raise DatasetError(
                f"class folder {class_dir} holds no images (*.jpg, *.jpeg, *.png). {_layout_help()}"
            )
        stem = f"{prefix}/{name}" if prefix != "." else name
        files.extend(f"{stem}/{n}" for n in images)
        labels.extend([label] * len(images))
    labels_array = np.asarray(labels, dtype=np.int64)
    return _Listing(root, split, tuple(files), labels_array, newest, names)


def _decode(
    data: bytes, name: str, spec: InputSpec = CIFAR_INPUT, resize: bool = False
) -> np.ndarray:
    """Decode one encoded image to uint8 ``[h, w, c]`` of ``spec``, or raise DatasetError."""
    size = (spec.width, spec.height)
    try:
        with Image.open(io.BytesIO(data)) as im:
            found = im.size
            if found != size and not resize:
                array = None
            else:
                converted = im.convert(spec.pil_mode)
                if found != size:
                    converted = converted.resize(size, _FILTERS[spec.resize])
                array = np.asarray(converted, dtype=np.uint8).reshape(spec.shape)
    except Exception as exc:  # PIL raises many types on corrupt input
        raise DatasetError(f"cannot decode image {name}: {exc}. Replace or remove it.") from exc
    if array is None:
        raise DatasetError(
            f"image {name} is {found[0]}x{found[1]}; the input takes {size[0]}x{size[1]}. "
            "Resize or remove it (the load generator resizes a dataset given with "
            "load.dataset)."
        )
    return array


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from exc


def _parallel(n: int, work: Callable[[range], None]) -> None:
    """Run ``work`` over chunks of range(n) on a few threads (PIL releases the GIL)."""
    chunks = [range(s, min(s + _CHUNK, n)) for s in range(0, n, _CHUNK)]
    workers = min(len(chunks), os.cpu_count() or 1, 8)
    if workers <= 1:
        for chunk in chunks:
            work(chunk)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cifar10-decode") as pool:
        for _ in pool.map(work, chunks):
            pass


def _decode_files(
    root: Path, files: Sequence[str], spec: InputSpec = CIFAR_INPUT, resize: bool = False
) -> np.ndarray:
    out = np.empty((len(files), *spec.shape), dtype=np.uint8)

    def work(chunk: range) -> None:
        for i in chunk:
            path = root / files[i]
            out[i] = _decode(_read(path), str(path), spec, resize)

    _parallel(len(files), work)
    return out


# --------------------------------------------------------------------------- cache


def _cache_paths(
    listing: _Listing, spec: InputSpec = CIFAR_INPUT, resize: bool = False
) -> tuple[Path, str]:
    """(cache file for this listing, file-name prefix shared by older keys of same dir/split
    and the same input)."""
    how = json.dumps([str(listing.root), listing.split, list(spec.shape), spec.resize, resize,
                      list(listing.classes)])  # fmt: skip
    where = hashlib.sha256(how.encode()).hexdigest()[:12]
    key = json.dumps(
        [
            _CACHE_FORMAT,
            how,
            len(listing.files),
            listing.newest_mtime_ns,
        ]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    prefix = f"cifar10-{listing.split}-{where}-"
    return cache_dir() / f"{prefix}{digest}.npz", prefix


def _cache_load(
    listing: _Listing, spec: InputSpec = CIFAR_INPUT, resize: bool = False
) -> np.ndarray | None:
    path, _ = _cache_paths(listing, spec, resize)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            images = npz["images"]
            labels = npz["labels"]
            files = tuple(str(f) for f in npz["files"])
    except Exception as exc:  # a damaged cache is only a miss
        log.debug("ignoring unreadable cache %s: %s", path, exc)
        return None
    n = len(listing.files)
    if (
        images.shape != (n, *spec.shape)
        or images.dtype != np.uint8
        or files != listing.files
        or not np.array_equal(labels, listing.labels)
    ):
        log.debug("ignoring stale cache %s", path)
        return None
    return images


def _cache_store(
    listing: _Listing, images: np.ndarray, spec: InputSpec = CIFAR_INPUT, resize: bool = False
) -> None:
    path, prefix = _cache_paths(listing, spec, resize)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=".tmp-", suffix=".npz", delete=False
        ) as tmp:
            np.savez(tmp, images=images, labels=listing.labels, files=np.asarray(listing.files))
        os.replace(tmp.name, path)
        for old in path.parent.glob(f"{prefix}*.npz"):
            if old != path:
                old.unlink(missing_ok=True)
        stale = time.time() - 3600  # leftovers of interrupted writes
        for tmp_file in path.parent.glob(".tmp-*.npz"):
            if tmp_file.stat().st_mtime < stale:
                tmp_file.unlink(missing_ok=True)
    except OSError as exc:  # caching is an optimisation; never fail the load for it
        log.debug("could not write cache %s: %s", path, exc)


def _directory_images(
    listing: _Listing, index: np.ndarray, spec: InputSpec = CIFAR_INPUT, resize: bool = False
) -> np.ndarray:
    if not _cache_enabled():
        return _decode_files(listing.root, [listing.files[i] for i in index], spec, resize)
    images = _cache_load(listing, spec, resize)
    if images is None:
        images = _decode_files(listing.root, listing.files, spec, resize)
        _cache_store(listing, images, spec, resize)
    return images[index]


# --------------------------------------------------------------------------- keras


def _load_keras_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The official CIFAR-10 split from ``keras.datasets.cifar10`` (downloads on first use).

    Returns uint8 ``[n, 32, 32, 3]`` images and int64 ``[n]`` labels in keras' order.
    """
    from keras.datasets import cifar10  # imported lazily: pulls in TensorFlow

    (x_train, y_train), (x_test, y_test) = cifar10.load_data()
    images, labels = (x_train, y_train) if split == "train" else (x_test, y_test)
    return np.asarray(images, dtype=np.uint8), np.asarray(labels, dtype=np.int64).reshape(-1)


def _keras_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        images, labels = _load_keras_split(split)
    except Exception as err:  # keras raises a bare Exception when the download fails
        raise DatasetError(
            f"no CIFAR-10 folder was given and the official download failed ({err}). "
            f"Offline, point --data or {ENV_VAR} at an image folder. {_layout_help()}"
        ) from None
    if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE or len(labels) != len(images):
        raise DatasetError(
            f"keras CIFAR-10 {split} split has unexpected shape {images.shape}; "
            f"delete ~/.keras/datasets/cifar-10-batches-py* and retry. {_layout_help()}"
        )
    return images, labels


def _encode_jpeg(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    pixels = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    pixels.save(buf, format="JPEG", quality=_JPEG_QUALITY, subsampling=0)
    return buf.getvalue()


# --------------------------------------------------------------------------- public


def load_split(
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    spec: InputSpec = CIFAR_INPUT,
    classes: Sequence[str] | None = CLASSES,
    resize: bool = False,
) -> Split:
    """Load the decoded ``split`` ("train" or "test") as ``spec`` takes images.

    ``data_dir`` is resolved by :func:`resolve_data_dir`. Images come back in the seeded
    order described in the module docstring, cut to ``limit`` images. Raises
    :class:`DatasetError` for a missing directory, a bad layout, or an image that is
    unreadable or (without ``resize``) not of the input's size; ``ValueError`` for a bad
    ``limit``.
    """
    _check_args(split, limit)
    root = resolve_data_dir(data_dir)
    if root is None:
        _keras_fits(spec, classes)
        images, labels = _keras_split(split)
        index = _selection(len(labels), limit, seed)
        return Split(split, images[index], labels[index], ("",) * len(index))
    listing = _listing(root, split, classes)
    index = _selection(len(listing.files), limit, seed)
    return Split(
        name=split,
        images=_directory_images(listing, index, spec, resize),
        labels=listing.labels[index],
        files=tuple(listing.files[i] for i in index),
    )


def _keras_fits(spec: InputSpec, classes: Sequence[str] | None) -> None:
    if spec.shape != CIFAR_INPUT.shape or (classes is not None and tuple(classes) != CLASSES):
        raise DatasetError(
            "the CIFAR-10 download serves the paper's CNN only (32x32x3, its 10 classes); "
            "give this model's images as a folder (load.dataset or --data)"
        )


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
    _check_args(split, limit)
    root = resolve_data_dir(data_dir)
    if root is None:
        _keras_fits(spec, classes)
        images, labels = _keras_split(split)
        index = _selection(len(labels), limit, seed)
        return [_encode_jpeg(images[i]) for i in index], labels[index]
    listing = _listing(root, split, classes)
    index = _selection(len(listing.files), limit, seed)
    paths = [listing.root / listing.files[i] for i in index]
    blobs: list[bytes] = [b""] * len(paths)

    def work(chunk: range) -> None:
        for i in chunk:
            blobs[i] = _read(paths[i])
            if resize:
                blobs[i] = _fitted_file(blobs[i], str(paths[i]), spec)
            elif verify:
                _decode(blobs[i], str(paths[i]), spec)

    _parallel(len(paths), work)
    return blobs, listing.labels[index]


def _fitted_file(data: bytes, name: str, spec: InputSpec) -> bytes:
    """The file as it is when it already has the input's size and mode, else the resized
    image in the file's own format."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.size == (spec.width, spec.height) and im.mode == spec.pil_mode:
                return data
            kind = im.format or "PNG"
    except Exception as exc:
        raise DatasetError(f"cannot decode image {name}: {exc}. Replace or remove it.") from exc
    pixels = _decode(data, name, spec, resize=True)
    image = Image.fromarray(pixels.reshape(spec.height, spec.width, -1).squeeze(-1)
                            if spec.channels == 1 else pixels, spec.pil_mode)  # fmt: skip
    out = io.BytesIO()
    if kind == "JPEG":
        image.save(out, format="JPEG", quality=_JPEG_QUALITY)
    else:
        image.save(out, format="PNG")
    return out.getvalue()
