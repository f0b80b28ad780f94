"""What a data set is for servecap: its splits and classes, where its folder is, the error
that says how to fix one, and the seeded selection every loader applies (see
:mod:`targets.common.dataset`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from targets.inputs import CIFAR_INPUT

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

SPLITS: tuple[str, ...] = ("train", "test")
IMAGE_SHAPE: tuple[int, int, int] = CIFAR_INPUT.shape


class DatasetError(ValueError):
    """The data set is missing or not in the expected form; the message says how to fix it."""


@dataclass(frozen=True)
class Split:
    """One split after selection (see :mod:`targets.common.dataset` for the order)."""

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


def layout_help() -> str:
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


def check_args(split: str, limit: int | None) -> None:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if limit is not None and (isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")


def selection(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Indices into the sorted list: a seeded permutation, cut to ``limit``."""
    order = np.random.default_rng(seed).permutation(n)
    return order if limit is None else order[:limit]
