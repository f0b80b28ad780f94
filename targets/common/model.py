"""The paper's CIFAR-10 CNN: build, train, export for TF Serving, and run inference.

The network is Table 1 of Lee et al. (see ``shared/reference/seed-notes.md``)::

    input 32x32x3
    conv 3x3x64 relu, dropout 0.5
    conv 3x3x64 relu, dropout 0.5, maxpool 2x2
    conv 3x3x128 relu, dropout 0.5, maxpool 2x2
    conv 3x3x256 relu, dropout 0.5, maxpool 2x2
    flatten, dense 512 relu, dense 10 softmax            (2,510,538 parameters)

Convolutions use ``padding="same"`` (the table's output sizes require it).

Input convention, relied on by every serving target and load generator: the model
takes **float32 pixel values in [0, 255]**, shape ``[batch, 32, 32, 3]``, RGB. A
``Rescaling(1/255)`` layer right after the input is the in-graph pre-processing (it
has no weights and is not one of the paper's layers), so clients send raw pixels.

Export layout is TF Serving's ``<model_base>/<version>/saved_model.pb`` (+
``variables/``), with one signature ``serving_default`` taking ``images`` (float32
``[None, 32, 32, 3]``) and returning ``{"probabilities": float32 [None, 10]}``.
:class:`Predictor` runs that same artifact in-process.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from targets.common.dataset import CLASSES, Split, load_split, resolve_data_dir
from targets.common.model_files import ModelNotFoundError, latest_version_dir
from targets.common.model_files import version_dir as resolve_version_dir
from targets.common.settings import DEFAULT_MODEL_PATH
from targets.common.signature import METADATA_FILE, SIGNATURE, load_in_process
from targets.inputs import CNN_INPUT_NAME, CNN_MODEL_NAME, CNN_OUTPUT_NAME, InputSpec

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_EPOCHS",
    "DEFAULT_MODEL_BASE",
    "DEFAULT_TRAIN_LIMIT",
    "INPUT_NAME",
    "INPUT_SHAPE",
    "METADATA_FILE",
    "MODEL_NAME",
    "NUM_CLASSES",
    "OUTPUT_NAME",
    "SIGNATURE",
    "ExportedModel",
    "ModelNotFoundError",
    "Predictor",
    "TrainResult",
    "build_cnn",
    "export",
    "latest_version_dir",
    "read_metadata",
    "train",
    "train_and_export",
]

MODEL_NAME = CNN_MODEL_NAME
DEFAULT_MODEL_BASE = DEFAULT_MODEL_PATH
"""TF Serving's ``model_base_path`` (relative to the working directory)."""
INPUT_NAME = CNN_INPUT_NAME
OUTPUT_NAME = CNN_OUTPUT_NAME
INPUT_SHAPE: tuple[int, int, int] = (32, 32, 3)
NUM_CLASSES = len(CLASSES)

# Quick defaults, measured on 2 shared CPU cores: train_and_export takes about 2-3 min
# (data 6-9 s cold, <1 s cached; 20k images x 2 epochs + evaluation on all 10k test images
# 2-2.6 min) and reaches 48.3% test accuracy (10k x 2: ~1.6 min, 34.7%). Pass
# train_limit=None and more epochs for a real run.
DEFAULT_TRAIN_LIMIT: int | None = 20_000
DEFAULT_EPOCHS = 2
DEFAULT_BATCH_SIZE = 64


def build_cnn(seed: int = 0) -> keras.Model:
    """The paper's CNN (Table 1), uncompiled, with seeded initialisers and dropout.

    Input: float32 ``[batch, 32, 32, 3]`` pixel values in [0, 255]; output: softmax
    probabilities ``[batch, 10]``. The same seed gives the same initial weights.
    """
    layers = keras.layers
    seeds = iter(range(seed * 100, seed * 100 + 100))

    def conv(filters: int, name: str) -> keras.layers.Layer:
        return layers.Conv2D(
            filters,
            3,
            padding="same",
            activation="relu",
            kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)),
            name=name,
        )

    def dropout(name: str) -> keras.layers.Layer:
        return layers.Dropout(0.5, seed=next(seeds), name=name)

    def dense(units: int, activation: str, name: str) -> keras.layers.Layer:
        return layers.Dense(
            units,
            activation=activation,
            kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)),
            name=name,
        )

    inputs = keras.Input(shape=INPUT_SHAPE, dtype="float32", name=INPUT_NAME)
    # In-graph pre-processing, not one of the paper's layers: [0, 255] -> [0, 1].
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = conv(64, "conv1")(x)
    x = dropout("dropout1")(x)
    x = conv(64, "conv2")(x)
    x = dropout("dropout2")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = conv(128, "conv3")(x)
    x = dropout("dropout3")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = conv(256, "conv4")(x)
    x = dropout("dropout4")(x)
    x = layers.MaxPooling2D(2, name="pool3")(x)
    x = layers.Flatten(name="flatten")(x)
    x = dense(512, "relu", "dense1")(x)
    outputs = dense(NUM_CLASSES, "softmax", OUTPUT_NAME)(x)
    return keras.Model(inputs, outputs, name=MODEL_NAME)


@dataclass
class TrainResult:
    model: keras.Model
    test_accuracy: float
    test_loss: float
    train_images: int
    epochs: int
    duration_s: float
    """Wall time of fitting plus the test evaluation (data loading excluded)."""


def train(
    train: Split,
    test: Split,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    verbose: int = 0,
) -> TrainResult:
    """Train :func:`build_cnn` on ``train`` (Adam, sparse categorical cross-entropy) and
    evaluate it on ``test``.

    Seeds keras' global RNGs with ``seed`` (``keras.utils.set_random_seed``), so a run
    is repeatable on the same machine and thread settings.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    if len(train.labels) == 0 or len(test.labels) == 0:
        raise ValueError("train and test splits must not be empty")
    keras.utils.set_random_seed(seed)
    model = build_cnn(seed)
    model.compile(
        optimizer=keras.optimizers.Adam(),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    x_train = train.images.astype(np.float32)
    x_test = test.images.astype(np.float32)
    start = time.perf_counter()
    model.fit(
        x_train, train.labels, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=verbose
    )
    loss, accuracy = model.evaluate(x_test, test.labels, batch_size=256, verbose=verbose)
    duration = time.perf_counter() - start
    return TrainResult(
        model=model,
        test_accuracy=float(accuracy),
        test_loss=float(loss),
        train_images=len(train.labels),
        epochs=epochs,
        duration_s=duration,
    )


@dataclass
class ExportedModel:
    version_dir: Path
    keras_path: Path
    version: int


def export(
    model: keras.Model,
    model_base: Path = DEFAULT_MODEL_BASE,
    version: int | None = None,
    metadata: dict[str, Any] | None = None,
) -> ExportedModel:
    """Write ``model`` as a SavedModel in TF Serving's versioned layout.

    Writes ``<model_base>/<version>/`` (saved_model.pb, variables/, and
    ``assets.extra/servecap.json`` with ``metadata`` plus ``created``, ``tf_version``
    ...) and the Keras file ``<model_base>.keras`` (overwritten: always the latest).
    ``version`` defaults to 1 + the highest existing numeric subdirectory. The version
    directory is assembled under a hidden temporary name and renamed into place, so a
    running TF Serving never sees a half-written version. Raises ``FileExistsError``
    if the version directory already exists.
    """
    model_base = Path(model_base)
    if version is None:
        existing = (
            [int(p.name) for p in model_base.iterdir() if p.name.isdigit()]
            if model_base.is_dir()
            else []
        )
        version = max(existing, default=0) + 1
    if version < 1:
        raise ValueError(f"version must be >= 1, got {version}")
    version_dir = model_base / str(version)
    if version_dir.exists():
        raise FileExistsError(f"model version directory {version_dir} already exists")
    model_base.mkdir(parents=True, exist_ok=True)

    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: model(images, training=False)}

    archive.add_endpoint(
        name=SIGNATURE,
        fn=serve,
        input_signature=[tf.TensorSpec([None, *INPUT_SHAPE], tf.float32, name=INPUT_NAME)],
    )

    info: dict[str, Any] = {
        "model_name": MODEL_NAME,
        "version": version,
        "test_accuracy": None,
        "train_images": None,
        "epochs": None,
        **(metadata or {}),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "tf_version": tf.__version__,
        "keras_version": keras.__version__,
        "params": int(model.count_params()),
        "signature": SIGNATURE,
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": [None, *INPUT_SHAPE]},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": [None, NUM_CLASSES]},
    }

    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_base))
    try:
        with _quiet():
            archive.write_out(str(tmp), verbose=False)
        meta_path = tmp / METADATA_FILE
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps(info, indent=2, default=str) + "\n")
        tmp.chmod(0o755)
        tmp.rename(version_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    keras_path = model_base.with_suffix(".keras")
    model.save(keras_path)
    return ExportedModel(version_dir=version_dir, keras_path=keras_path, version=version)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence absl/TF Python logging (SavedModel writing logs at INFO/WARNING)."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def read_metadata(version_dir: Path) -> dict[str, Any]:
    """The ``assets.extra/servecap.json`` of a version directory ({} if absent)."""
    path = Path(version_dir) / METADATA_FILE
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


class Predictor:
    """Loads a model's serving signature (the same artifact TF Serving serves: a SavedModel;
    or a ``.keras`` file) and runs it on pixel values.

    Calls go straight to the loaded concrete function, with none of ``keras.Model.predict``'s
    per-call overhead. TensorFlow concrete functions are thread-safe, so one Predictor
    may serve concurrent calls from several threads (TF's intra-op pool is shared).

    The input (shape, dtype) comes from the signature (:mod:`targets.common.signature`);
    ``input_range`` is what pixel values 0 and 255 become for a float input (the paper's CNN
    takes them as they are: [0, 255]).
    """

    def __init__(self, model_path: Path, input_range: tuple[float, float] = (0.0, 255.0)) -> None:
        """``model_path``: a version directory (holding saved_model.pb), a model base
        (its latest version is used), or a ``.keras`` file."""
        path = Path(model_path)
        version_dir = path if path.suffix == ".keras" else resolve_version_dir(path)
        self.version_dir = version_dir
        self.version = int(version_dir.name) if version_dir.name.isdigit() else 0
        start = time.perf_counter()
        self._model = load_in_process(version_dir)
        self.signature = self._model.signature
        sig = self.signature
        self.input = InputSpec(
            shape=sig.shape,
            dtype=sig.dtype,  # type: ignore[arg-type]
            range=input_range if sig.dtype == "float32" else (0.0, 255.0),
        )
        self.load_duration_s = time.perf_counter() - start

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class scores float32 ``[n, classes]`` for pixel values in [0, 255] of shape
        ``[n, *input shape]`` (float32, uint8 or any numeric array). Raises ValueError for any
        other shape or n == 0."""
        array = np.asarray(images)
        if array.ndim != 4 or array.shape[1:] != self.input.shape or array.shape[0] < 1:
            expected = ", ".join(str(d) for d in self.input.shape)
            raise ValueError(
                f"expected images of shape [n>=1, {expected}], got {list(array.shape)}"
            )
        result: np.ndarray = self._model.run(self.input.tensor(array))
        return result

    def warm_up(self, batch_sizes: tuple[int, ...] = (1,)) -> None:
        """Run one zero batch of each size so the first real call pays no set-up cost."""
        for n in batch_sizes:
            self.predict(np.zeros((n, *self.input.shape), dtype=np.float32))


def train_and_export(
    data_dir: str | None,
    train_limit: int | None = DEFAULT_TRAIN_LIMIT,
    test_limit: int | None = None,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    model_base: Path = DEFAULT_MODEL_BASE,
    seed: int = 0,
) -> tuple[TrainResult, ExportedModel]:
    """Load CIFAR-10 (see :mod:`targets.common.dataset`), train, evaluate and export."""
    root = resolve_data_dir(data_dir)
    start = time.perf_counter()
    train_split = load_split("train", data_dir, limit=train_limit, seed=seed)
    test_split = load_split("test", data_dir, limit=test_limit, seed=seed)
    load_s = time.perf_counter() - start
    result = train(train_split, test_split, epochs=epochs, batch_size=batch_size, seed=seed)
    exported = export(
        result.model,
        model_base,
        metadata={
            "test_accuracy": result.test_accuracy,
            "test_loss": result.test_loss,
            "train_images": result.train_images,
            "test_images": len(test_split.labels),
            "epochs": epochs,
            "batch_size": batch_size,
            "seed": seed,
            "data": str(root) if root is not None else "keras.datasets.cifar10",
            "data_load_s": round(load_s, 3),
            "train_s": round(result.duration_s, 3),
        },
    )
    return result, exported
