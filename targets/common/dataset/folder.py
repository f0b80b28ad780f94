"""An image-folder data set: its class folders found and checked, its files listed in a
fixed order, and images decoded to the model's input (resized with its method when asked)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from targets.common.dataset.layout import CLASSES, DatasetError, layout_help, resolve_data_dir
from targets.inputs import CIFAR_INPUT, InputSpec

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png"})
FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}
CHUNK = 1000  # images per decode task


@dataclass(frozen=True)
class Listing:
    root: Path  # absolute
    split: str
    files: tuple[str, ...]  # relative to root, posix, sorted by (label, name)
    labels: np.ndarray  # int64
    newest_mtime_ns: int
    classes: tuple[str, ...]


def split_folder(root: Path, split: str) -> Path:
    """``<root>/<split>``, or ``<root>`` itself for a test split laid out as class folders."""
    if not root.exists():
        raise DatasetError(f"data directory {root} does not exist. {layout_help()}")
    if not root.is_dir():
        raise DatasetError(f"data path {root} is not a directory. {layout_help()}")
    root = root.resolve()
    split_dir = root / split
    if split_dir.is_dir():
        return split_dir
    if split == "test" and not (root / "train").is_dir() and folders(root):
        return root  # <dir>/<class>/*: a folder of classes to test with
    raise DatasetError(f"{root} has no '{split}' folder ({split_dir}). {layout_help()}")


def folders(path: Path) -> list[str]:
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
    return tuple(folders(split_folder(root, split)))


def list_split(root: Path, split: str, classes: Sequence[str] | None = CLASSES) -> Listing:
    split_dir = split_folder(root, split)
    root = root.resolve()
    found = folders(split_dir)
    names = tuple(classes) if classes is not None else tuple(found)
    if not names:
        raise DatasetError(f"{split_dir} holds no class folders. {layout_help()}")
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
                f"class folder {class_dir} holds no images (*.jpg, *.jpeg, *.png). {layout_help()}"
            )
        stem = f"{prefix}/{name}" if prefix != "." else name
        files.extend(f"{stem}/{n}" for n in images)
        labels.extend([label] * len(images))
    labels_array = np.asarray(labels, dtype=np.int64)
    return Listing(root, split, tuple(files), labels_array, newest, names)


def decode(
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
                    converted = converted.resize(size, FILTERS[spec.resize])
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


def read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from exc


def parallel(n: int, work: Callable[[range], None]) -> None:
    """Run ``work`` over chunks of range(n) on a few threads (PIL releases the GIL)."""
    chunks = [range(s, min(s + CHUNK, n)) for s in range(0, n, CHUNK)]
    workers = min(len(chunks), os.cpu_count() or 1, 8)
    if workers <= 1:
        for chunk in chunks:
            work(chunk)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cifar10-decode") as pool:
        for _ in pool.map(work, chunks):
            pass


def decode_files(
    root: Path, files: Sequence[str], spec: InputSpec = CIFAR_INPUT, resize: bool = False
) -> np.ndarray:
    out = np.empty((len(files), *spec.shape), dtype=np.uint8)

    def work(chunk: range) -> None:
        for i in chunk:
            path = root / files[i]
            out[i] = decode(read(path), str(path), spec, resize)

    parallel(len(files), work)
    return out
