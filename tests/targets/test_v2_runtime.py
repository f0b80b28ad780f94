"""The v2 model the MLServer runtime and the KServe model share: input checks and answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from targets.common.model import Predictor
from targets.common.signature import ModelSignature
from targets.common.v2_runtime import BadTensor, V2Model, as_array, check_images

CNN = ModelSignature("x", (32, 32, 3), "float32", "scores", 10)


def test_a_valid_input_passes_with_its_shape() -> None:
    assert check_images(CNN, "images", "FP32", [2, 32, 32, 3]) == (2, 32, 32, 3)


@pytest.mark.parametrize(
    ("name", "datatype", "shape", "says"),
    [
        ("x", "FP32", [1, 32, 32, 3], "unknown input 'x': this model takes one input, 'images'"),
        ("images", "UINT8", [1, 32, 32, 3], "must be FP32, got UINT8"),
        ("images", "FP32", [32, 32, 3], "shape [n, 32, 32, 3] with 1 <= n <= 4, got [32, 32, 3]"),
        ("images", "FP32", [0, 32, 32, 3], "got [0, 32, 32, 3]"),
        ("images", "FP32", [5, 32, 32, 3], "1 <= n <= 4"),
        ("images", "FP32", [1, 28, 28, 1], "got [1, 28, 28, 1]"),
    ],
)
def test_a_wrong_input_is_refused_naming_what_is_wrong(
    name: str, datatype: str, shape: list[int], says: str
) -> None:
    with pytest.raises(BadTensor) as err:
        check_images(CNN, name, datatype, shape, max_images=4)
    assert says in str(err.value)


def test_values_must_fill_the_shape_with_numbers() -> None:
    assert as_array(list(range(6)), "FP32", (1, 2, 3)).shape == (1, 2, 3)
    raw = np.arange(6, dtype="<f4").tobytes()
    assert as_array(raw, "FP32", (2, 3)).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert as_array(bytes(range(4)), "UINT8", (1, 4)).dtype == np.uint8
    with pytest.raises(BadTensor, match="needs 6 values, got 5"):
        as_array([1] * 5, "FP32", (1, 2, 3))
    with pytest.raises(BadTensor, match="not FP32 numbers"):
        as_array(["a"] * 6, "FP32", (1, 2, 3))
    with pytest.raises(BadTensor, match="not FP32 numbers"):  # not whole 4-byte values
        as_array(b"\x00" * 7, "FP32", (1, 3))
    with pytest.raises(BadTensor, match="needs 3 values, got 2"):
        as_array(b"\x00" * 8, "FP32", (1, 3))


def test_the_model_answers_as_the_in_process_predictor(tiny_model: Path) -> None:
    model = V2Model(tiny_model, max_images=8)
    spec = model.inputs[0].to_dict()
    assert spec == {"name": "images", "datatype": "FP32", "shape": [-1, 32, 32, 3]}
    assert model.outputs[0].to_dict() == {"name": "probabilities", "datatype": "FP32",
                                          "shape": [-1, 10]}  # fmt: skip
    images = np.random.default_rng(3).integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    batch = model.images("images", "FP32", [4, 32, 32, 3], images.astype(np.float32).ravel())
    scores, seconds = model.timed_predict(batch)
    assert scores.dtype == np.float32 and scores.shape == (4, 10) and seconds > 0
    expected = Predictor(tiny_model).predict(images)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
