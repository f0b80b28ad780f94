"""servecap's SavedModel as an Open Inference Protocol (v2) model: what the model classes of
frameworks that speak v2 themselves share (MLServer's ``MLModel``, KServe's ``kserve.Model``).

Each framework decodes its own request (JSON data, the binary extension, gRPC raw contents) into
a v2 input: a name, a datatype, a shape and the values. :class:`V2Model` checks that input
against the model's signature and runs the model on it:

* the tensors are named as Triton's are (``images`` in, ``probabilities`` out), whatever the
  signature calls them, so every v2 target takes the same requests;
* the datatype is the signature's (``FP32`` for a float input, ``UINT8`` for a uint8 one);
* the shape is ``[n, height, width, channels]`` with ``1 <= n <= max_images``;
* anything else is a :class:`BadTensor` whose message names what is wrong, which the frameworks'
  adapters turn into their 400 answer.

Imports only numpy at module level (TensorFlow when a model is loaded), so it runs in a
framework's own environment (``targets/<kind>/setup.sh``) as well as in servecap's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from targets.common.model_files import version_dir
from targets.common.signature import LoadedModel, ModelSignature, load_in_process
from targets.inputs import CNN_INPUT_NAME, CNN_OUTPUT_NAME

INPUT_NAME = CNN_INPUT_NAME
OUTPUT_NAME = CNN_OUTPUT_NAME
DATATYPES = {"float32": "FP32", "uint8": "UINT8"}
"""servecap dtype -> v2 datatype."""
NUMPY_DTYPES = {"FP32": np.float32, "UINT8": np.uint8}
DEFAULT_MAX_IMAGES = 256
"""The most images one request may carry (a model call per request without batching)."""
BATCH_METRIC = "servecap_batch_images"
"""Histogram the model classes keep per model call: images in the call (its ``_count`` is the
model calls, its ``_sum`` the images)."""
MODEL_TIME_METRIC = "servecap_model_seconds"
"""Histogram the model classes keep per model call: its seconds."""


class BadTensor(ValueError):
    """A request's tensor is not what the model takes; the message says what is."""


@dataclass(frozen=True)
class TensorSpec:
    """One v2 tensor as a model's metadata declares it (``-1``: any batch size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def input_spec(signature: ModelSignature) -> TensorSpec:
    return TensorSpec(INPUT_NAME, DATATYPES[signature.dtype], (-1, *signature.shape))


def output_spec(signature: ModelSignature) -> TensorSpec:
    return TensorSpec(OUTPUT_NAME, "FP32", (-1, signature.classes or -1))


def check_images(
    signature: ModelSignature,
    name: str,
    datatype: str,
    shape: Sequence[int],
    max_images: int = DEFAULT_MAX_IMAGES,
) -> tuple[int, ...]:
    """The shape of a valid input tensor ``name`` (``datatype``, ``shape``); BadTensor naming
    the problem otherwise. Checked before any value is read."""
    want = input_spec(signature)
    if name != want.name:
        raise BadTensor(f"unknown input '{name}': this model takes one input, '{want.name}'")
    if datatype != want.datatype:
        raise BadTensor(f"input '{name}' must be {want.datatype}, got {datatype}")
    dims = tuple(int(d) for d in shape)
    if len(dims) != 4 or dims[1:] != signature.shape or not 1 <= dims[0] <= max_images:
        image = ", ".join(str(d) for d in signature.shape)
        raise BadTensor(
            f"input '{name}' must have shape [n, {image}] with 1 <= n <= {max_images}, "
            f"got {list(dims)}"
        )
    return dims


def as_array(values: Any, datatype: str, shape: tuple[int, ...]) -> np.ndarray:
    """``values`` (a flat list, nested lists, bytes or an array) as an array of ``shape``;
    BadTensor when they do not fill it exactly or are not numbers."""
    dtype = NUMPY_DTYPES[datatype]
    count = int(np.prod(shape))
    try:
        if isinstance(values, bytes | bytearray | memoryview):
            array = np.frombuffer(values, dtype=np.dtype(dtype).newbyteorder("<"))
        else:
            array = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as err:
        raise BadTensor(f"input values are not {datatype} numbers: {err}") from None
    if array.size != count:
        raise BadTensor(f"input shape {list(shape)} needs {count} values, got {array.size}")
    return array.reshape(shape)


class V2Model:
    """The model at a path (a model base or one version folder), loaded with TensorFlow and
    warmed up; :meth:`predict` runs it on a checked batch."""

    def __init__(self, model_path: Path, max_images: int = DEFAULT_MAX_IMAGES) -> None:
        path = Path(model_path)
        self.path = path if path.suffix == ".keras" else version_dir(path)
        self.max_images = max_images
        self.loaded: LoadedModel = load_in_process(self.path)
        self.signature = self.loaded.signature
        self.inputs = [input_spec(self.signature)]
        self.outputs = [output_spec(self.signature)]
        self.predict(np.zeros((1, *self.signature.shape), NUMPY_DTYPES[self.inputs[0].datatype]))

    def check(self, name: str, datatype: str, shape: Sequence[int]) -> tuple[int, ...]:
        """The shape of a valid input (:func:`check_images`); BadTensor otherwise."""
        return check_images(self.signature, name, datatype, shape, self.max_images)

    def images(self, name: str, datatype: str, shape: Sequence[int], values: Any) -> np.ndarray:
        """A request's input as the batch the model runs; BadTensor when it is not one."""
        return as_array(values, datatype, self.check(name, datatype, shape))

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class scores, float32 ``[n, classes]``."""
        return np.ascontiguousarray(self.loaded.run(batch), dtype=np.float32)

    def timed_predict(self, batch: np.ndarray) -> tuple[np.ndarray, float]:
        """:meth:`predict` and the seconds it took."""
        start = time.perf_counter()
        scores = self.predict(batch)
        return scores, time.perf_counter() - start
