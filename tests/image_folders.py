"""Small image-folder data sets written by tests: solid colours, so a pixel names its file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from targets.common.dataset import CLASSES


def color(label: int, index: int) -> tuple[int, int, int]:
    """A colour unique to (label, index), so a pixel identifies its source file."""
    return (label * 20, index * 10, 255 - label * 20)


def write_image(path: Path, pixels: np.ndarray | Image.Image, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    image.save(path, format=fmt)


def make_tree(root: Path, per_class: int = 3, splits: tuple[str, ...] = ("train", "test")) -> Path:
    """A fake image-folder CIFAR-10: lossless PNGs of one solid colour each."""
    for split in splits:
        for label, name in enumerate(CLASSES):
            for i in range(per_class):
                pixels = np.empty((32, 32, 3), dtype=np.uint8)
                pixels[...] = color(label, i)
                write_image(root / split / name / f"{i:04d}.png", pixels)
    return root


def class_folders(root: Path, names: tuple[str, ...], size: tuple[int, int], fmt: str) -> Path:
    """``root/<class>/*``: two images per class, of ``size`` (w, h), solid colours."""
    for label, name in enumerate(names):
        for i in range(2):
            pixels = np.empty((size[1], size[0], 3), dtype=np.uint8)
            pixels[...] = color(label, i)
            write_image(root / name / f"{i}.{fmt.lower()}", pixels, fmt)
    return root


def fake_keras(calls: list[str]) -> Callable[[str], tuple[np.ndarray, np.ndarray]]:
    """Stands in for the keras CIFAR-10 download (records the splits asked for)."""

    def fake(split: str) -> tuple[np.ndarray, np.ndarray]:
        calls.append(split)
        n = 50 if split == "train" else 20
        rng = np.random.default_rng(len(split))
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        return images, (np.arange(n) % 10).astype(np.int64)

    return fake
