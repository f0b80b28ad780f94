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

The parts: :mod:`~targets.common.dataset.layout` (splits, classes, the seeded selection),
:mod:`~targets.common.dataset.folder` (an image folder listed and decoded),
:mod:`~targets.common.dataset.cache` (the decoded-array cache),
:mod:`~targets.common.dataset.download` (the keras download). The same images as the files
the load sends: :mod:`loadtests.image_files`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from targets.common.dataset.cache import (
    CACHE_ENV_VAR,
    NO_CACHE_ENV_VAR,
    cache_dir,
    directory_images,
)
from targets.common.dataset.download import keras_fits, keras_split
from targets.common.dataset.folder import IMAGE_EXTENSIONS, Listing, class_names, list_split
from targets.common.dataset.layout import (
    CLASSES,
    ENV_VAR,
    SPLITS,
    DatasetError,
    Split,
    check_args,
    resolve_data_dir,
    selection,
)
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
    "load_split",
    "resolve_data_dir",
]


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
    chosen = select(split, data_dir, limit, seed, spec, classes)
    if chosen.listing is None:
        images, labels = chosen.download
        return Split(split, images[chosen.index], labels[chosen.index], ("",) * len(chosen.index))
    listing, index = chosen.listing, chosen.index
    return Split(
        name=split,
        images=directory_images(listing, index, spec, resize),
        labels=listing.labels[index],
        files=tuple(listing.files[i] for i in index),
    )


@dataclass(frozen=True)
class Selection:
    """The images a loader returns: ``index`` into the folder's files (``listing``) or, with
    no folder, into the keras download's arrays (``download``: images, labels)."""

    index: np.ndarray
    listing: Listing | None
    download: tuple[np.ndarray, np.ndarray] = (np.empty(0), np.empty(0))


def select(
    split: str, data_dir: str | os.PathLike[str] | None, limit: int | None, seed: int,
    spec: InputSpec, classes: Sequence[str] | None,
) -> Selection:  # fmt: skip
    """The seeded selection of ``split`` (see the module docstring), checked."""
    check_args(split, limit)
    root = resolve_data_dir(data_dir)
    if root is None:
        keras_fits(spec, classes)
        images, labels = keras_split(split)
        return Selection(selection(len(labels), limit, seed), None, (images, labels))
    listing = list_split(root, split, classes)
    return Selection(selection(len(listing.files), limit, seed), listing)
