"""Tests for targets.inputs and targets.common.signature: a model's input, from its signature
and the target's ``input:``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from targets.inputs import CIFAR_INPUT, InputConfig, InputSpec
from tests.models import gray_classifier


def test_input_config_fills_in_and_checks_what_the_model_says() -> None:
    known = InputSpec(shape=(64, 64, 1), dtype="uint8")
    assert InputConfig().spec(known).shape == (64, 64, 1)
    assert InputConfig().spec() == CIFAR_INPUT  # nothing known: the paper's CNN
    ranged = InputConfig(range=(0.0, 1.0)).spec(InputSpec(shape=(224, 224, 3), dtype="float32"))
    assert ranged.range == (0.0, 1.0)
    with pytest.raises(ValueError, match=r"input.shape is \(32, 32, 3\) but the model"):
        InputConfig(shape=(32, 32, 3)).spec(known)
    with pytest.raises(ValueError, match="input.dtype"):
        InputConfig(dtype="float32").spec(known)
    # uint8 inputs take pixels as they are, whatever range was asked for
    assert InputConfig(range=(0.0, 1.0)).spec(known).range == (0.0, 255.0)


def test_tensor_scales_float_inputs_to_their_range_and_keeps_uint8() -> None:
    pixels = np.array([[[[0], [255]]]], dtype=np.uint8)
    unit = InputSpec(shape=(1, 2, 1), dtype="float32", range=(0.0, 1.0)).tensor(pixels)
    assert unit.dtype == np.float32 and unit.ravel().tolist() == [0.0, 1.0]
    signed = InputSpec(shape=(1, 2, 1), dtype="float32", range=(-1.0, 1.0)).tensor(pixels)
    assert signed.ravel().tolist() == [-1.0, 1.0]
    raw = InputSpec(shape=(1, 2, 1), dtype="uint8").tensor(pixels)
    assert raw.dtype == np.uint8 and raw.ravel().tolist() == [0, 255]


@pytest.fixture(scope="module")
def gray_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gray_classifier(tmp_path_factory.mktemp("model"))


@pytest.mark.integration
def test_signature_of_a_model_servecap_did_not_export(gray_model: Path) -> None:
    from targets.common.model import Predictor
    from targets.common.signature import read_signature

    signature = read_signature(gray_model)
    assert signature.shape == (64, 64, 1) and signature.dtype == "uint8"
    assert signature.input_name == "pixels" and signature.output_name == "scores"
    assert signature.classes == 5
    predictor = Predictor(gray_model)
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 1)).astype(np.uint8)
    scores = predictor.predict(images)
    assert scores.shape == (3, 5) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.integration
def test_a_model_that_is_not_an_image_classifier_is_refused(tmp_path: Path) -> None:
    import keras
    import tensorflow as tf

    from targets.common.signature import SignatureError, read_signature

    inputs = keras.Input(shape=(7,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=lambda features: {"out": model(features)},
        input_signature=[tf.TensorSpec([None, 7], tf.float32, name="features")],
    )
    archive.write_out(str(tmp_path / "m"))
    with pytest.raises(SignatureError, match="height, width, 1 or 3"):
        read_signature(tmp_path / "m")
