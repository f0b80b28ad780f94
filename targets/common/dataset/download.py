"""The official CIFAR-10 download (``keras.datasets.cifar10``), used when no image folder is
given: the paper's CNN input only."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from targets.common.dataset.layout import CLASSES, ENV_VAR, IMAGE_SHAPE, DatasetError, layout_help
from targets.inputs import CIFAR_INPUT, InputSpec


def load_keras_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The official CIFAR-10 split from ``keras.datasets.cifar10`` (downloads on first use).

    Returns uint8 ``[n, 32, 32, 3]`` images and int64 ``[n]`` labels in keras' order.
    """
    from keras.datasets import cifar10  # imported lazily: pulls in TensorFlow

    (x_train, y_train), (x_test, y_test) = cifar10.load_data()
    images, labels = (x_train, y_train) if split == "train" else (x_test, y_test)
    return np.asarray(images, dtype=np.uint8), np.asarray(labels, dtype=np.int64).reshape(-1)


def keras_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        images, labels = load_keras_split(split)
    except Exception as err:  # keras raises a bare Exception when the download fails
        raise DatasetError(
            f"no CIFAR-10 folder was given and the official download failed ({err}). "
            f"Offline, point --data or {ENV_VAR} at an image folder. {layout_help()}"
        ) from None
    if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE or len(labels) != len(images):
        raise DatasetError(
            f"keras CIFAR-10 {split} split has unexpected shape {images.shape}; "
            f"delete ~/.keras/datasets/cifar-10-batches-py* and retry. {layout_help()}"
        )
    return images, labels


def keras_fits(spec: InputSpec, classes: Sequence[str] | None) -> None:
    if spec.shape != CIFAR_INPUT.shape or (classes is not None and tuple(classes) != CLASSES):
        raise DatasetError(
            "the CIFAR-10 download serves the paper's CNN only (32x32x3, its 10 classes); "
            "give this model's images as a folder (load.dataset or --data)"
        )
