"""Tests for targets.common.model: the CNN, export layout and signature, Predictor."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from targets.common import model as m
from targets.common.dataset import CLASSES, Split

PAPER_PARAMS = 2_510_538


@pytest.fixture(scope="module")
def cnn() -> keras.Model:
    return m.build_cnn(seed=0)


@pytest.fixture(scope="module")
def exported(cnn: keras.Model, tmp_path_factory: pytest.TempPathFactory) -> m.ExportedModel:
    base = tmp_path_factory.mktemp("models") / m.MODEL_NAME
    return m.export(cnn, base, metadata={"test_accuracy": 0.5, "train_images": 7, "epochs": 1})


@pytest.fixture(scope="module")
def predictor(exported: m.ExportedModel) -> m.Predictor:
    p = m.Predictor(exported.version_dir.parent)
    p.warm_up((1, 4))
    return p


def _pixels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, 32, 32, 3)).astype(np.float32)


# ----------------------------------------------------------------------------- the CNN


def test_constants() -> None:
    assert m.MODEL_NAME == "cifar10_cnn"
    assert Path("artifacts/models/cifar10_cnn") == m.DEFAULT_MODEL_BASE
    assert (m.SIGNATURE, m.INPUT_NAME, m.OUTPUT_NAME) == (
        "serving_default",
        "images",
        "probabilities",
    )


def test_param_count_matches_paper(cnn: keras.Model) -> None:
    assert cnn.count_params() == PAPER_PARAMS


def test_layer_sequence(cnn: keras.Model) -> None:
    layers = [layer for layer in cnn.layers if not isinstance(layer, keras.layers.InputLayer)]
    kinds = [type(layer).__name__ for layer in layers]
    assert kinds == [
        "Rescaling",
        "Conv2D",
        "Dropout",
        "Conv2D",
        "Dropout",
        "MaxPooling2D",
        "Conv2D",
        "Dropout",
        "MaxPooling2D",
        "Conv2D",
        "Dropout",
        "MaxPooling2D",
        "Flatten",
        "Dense",
        "Dense",
    ]
    assert layers[0].scale == pytest.approx(1 / 255)
    assert layers[0].offset == 0.0
    convs = [layer for layer in layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [64, 64, 128, 256]
    assert all(c.kernel_size == (3, 3) and c.padding == "same" for c in convs)
    assert all(c.activation is keras.activations.relu for c in convs)
    drops = [layer for layer in layers if isinstance(layer, keras.layers.Dropout)]
    assert [d.rate for d in drops] == [0.5] * 4
    pools = [layer for layer in layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert all(p.pool_size == (2, 2) for p in pools)
    dense1, dense2 = layers[-2:]
    assert (dense1.units, dense1.activation) == (512, keras.activations.relu)
    assert (dense2.units, dense2.activation) == (10, keras.activations.softmax)
    # Table 1's output sizes
    shapes = [tuple(layer.output.shape[1:]) for layer in layers]
    assert shapes[5] == (16, 16, 64)
    assert shapes[8] == (8, 8, 128)
    assert shapes[11] == (4, 4, 256)
    assert shapes[12] == (4096,)
    assert cnn.input.shape[1:] == (32, 32, 3) and cnn.input.dtype == "float32"
    assert tuple(cnn.output.shape[1:]) == (10,)


def test_build_is_seeded() -> None:
    a, b, c = m.build_cnn(1), m.build_cnn(1), m.build_cnn(2)
    wa, wb, wc = a.get_weights(), b.get_weights(), c.get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb, strict=True))
    assert not np.array_equal(wa[0], wc[0])


# ----------------------------------------------------------------------------- export


def test_export_layout_and_metadata(exported: m.ExportedModel) -> None:
    base = exported.version_dir.parent
    assert exported.version == 1
    assert exported.version_dir == base / "1"
    assert (exported.version_dir / "saved_model.pb").is_file()
    assert (exported.version_dir / "variables").is_dir()
    assert exported.keras_path == base.with_suffix(".keras")
    assert exported.keras_path.is_file()
    assert not [p for p in base.iterdir() if p.name.startswith(".")]  # no temp dir left
    meta = json.loads((exported.version_dir / "assets.extra" / "servecap.json").read_text())
    assert meta == m.read_metadata(exported.version_dir)
    assert meta["test_accuracy"] == 0.5
    assert meta["train_images"] == 7
    assert meta["epochs"] == 1
    assert meta["tf_version"] == tf.__version__
    assert meta["created"]
    assert meta["params"] == PAPER_PARAMS


def test_signature(exported: m.ExportedModel) -> None:
    loaded = tf.saved_model.load(str(exported.version_dir))
    assert list(loaded.signatures.keys()) == ["serving_default"]
    fn = loaded.signatures["serving_default"]
    args, kwargs = fn.structured_input_signature
    assert args == ()
    assert list(kwargs) == ["images"]
    spec = kwargs["images"]
    assert spec.dtype == tf.float32
    assert spec.shape.as_list() == [None, 32, 32, 3]
    outputs = fn.structured_outputs
    assert list(outputs) == ["probabilities"]
    assert outputs["probabilities"].dtype == tf.float32
    assert outputs["probabilities"].shape.as_list() == [None, 10]


def test_keras_file_round_trips(cnn: keras.Model, exported: m.ExportedModel) -> None:
    reloaded = keras.models.load_model(exported.keras_path)
    x = _pixels(2)
    assert np.allclose(reloaded(x, training=False), cnn(x, training=False), atol=1e-6)


@pytest.mark.integration
def test_version_auto_increment_and_latest(cnn: keras.Model, tmp_path: Path) -> None:
    base = tmp_path / "cnn"
    with pytest.raises(m.ModelNotFoundError):
        m.latest_version_dir(base)
    assert m.export(cnn, base).version == 1
    assert m.export(cnn, base).version == 2
    assert m.latest_version_dir(base) == base / "2"
    (base / "7").mkdir()  # a numeric dir without a model: skipped, but never reused
    assert m.latest_version_dir(base) == base / "2"
    assert m.export(cnn, base).version == 8
    assert m.export(cnn, base, version=5).version == 5
    assert m.latest_version_dir(base) == base / "8"
    with pytest.raises(FileExistsError):
        m.export(cnn, base, version=5)
    assert m.Predictor(base).version == 8
    assert m.Predictor(base / "5").version == 5


def test_model_not_found_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for where in (tmp_path / "missing", tmp_path / "empty"):
        with pytest.raises(m.ModelNotFoundError) as err:
            m.Predictor(where)
        assert isinstance(err.value, FileNotFoundError)
        assert "servecap model train" in str(err.value)
        assert str(where) in str(err.value)


# ----------------------------------------------------------------------------- Predictor


def test_predictor_output(predictor: m.Predictor) -> None:
    assert predictor.version == 1
    assert predictor.load_duration_s > 0
    for n in (1, 5):
        out = predictor.predict(_pixels(n))
        assert out.shape == (n, 10)
        assert out.dtype == np.float32
        assert np.allclose(out.sum(axis=1), 1.0, atol=1e-5)
        assert (out >= 0).all()


def test_predictor_agrees_with_keras(predictor: m.Predictor, cnn: keras.Model) -> None:
    x = _pixels(16, seed=1)
    ours = predictor.predict(x)
    theirs = cnn.predict(x, verbose=0)
    assert np.allclose(ours, theirs, atol=1e-4)
    assert np.array_equal(ours.argmax(axis=1), theirs.argmax(axis=1))


def test_predictor_accepts_uint8_as_pixels(predictor: m.Predictor) -> None:
    x = np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    assert np.allclose(predictor.predict(x), predictor.predict(x.astype(np.float32)))


@pytest.mark.parametrize("shape", [(32, 32, 3), (0, 32, 32, 3), (1, 28, 28, 3), (2, 32, 32, 1)])
def test_predictor_rejects_wrong_shape(predictor: m.Predictor, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="32, 32, 3"):
        predictor.predict(np.zeros(shape, dtype=np.float32))


def test_predictor_thread_safe(predictor: m.Predictor) -> None:
    inputs = [_pixels(1 + i % 3, seed=i) for i in range(12)]
    expected = [predictor.predict(x) for x in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(predictor.predict, inputs))
    for got, want in zip(results, expected, strict=True):
        assert np.allclose(got, want, atol=1e-6)


# ----------------------------------------------------------------------------- training


def _random_split(name: str, n: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    return Split(
        name=name,
        images=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
        labels=(np.arange(n) % 10).astype(np.int64),
        files=("",) * n,
    )


@pytest.mark.integration
def test_train_returns_result() -> None:
    result = m.train(_random_split("train", 128, 0), _random_split("test", 64, 1), epochs=1)
    assert isinstance(result.model, keras.Model)
    assert result.train_images == 128
    assert result.epochs == 1
    assert 0.0 <= result.test_accuracy <= 1.0
    assert np.isfinite(result.test_loss) and result.test_loss > 0
    assert result.duration_s > 0
    with pytest.raises(ValueError):
        m.train(_random_split("train", 8, 0), _random_split("test", 8, 1), epochs=0)


@pytest.mark.integration
def test_train_and_export_from_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = tmp_path / "cifar"
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 6), ("test", 2)):
        for name in CLASSES:
            (data / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(data / split / name / f"{i}.png")
    base = tmp_path / "models" / m.MODEL_NAME
    result, exported = m.train_and_export(
        str(data),
        train_limit=40,
        test_limit=None,
        epochs=1,
        batch_size=16,
        model_base=base,
        seed=0,
    )
    assert result.train_images == 40
    assert exported.version == 1 and exported.version_dir == base / "1"
    meta = m.read_metadata(exported.version_dir)
    assert meta["train_images"] == 40
    assert meta["test_images"] == 20
    assert meta["epochs"] == 1
    assert meta["test_accuracy"] == pytest.approx(result.test_accuracy)
    out = m.Predictor(base).predict(np.zeros((2, 32, 32, 3), dtype=np.uint8))
    assert out.shape == (2, 10)
