"""Tests for targets.common.dataset: layout checks, decoding, order, cache, fallbacks."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loadtests.image_files import load_jpeg_bytes
from targets.common import dataset
from targets.common.dataset import (
    CLASSES,
    ENV_VAR,
    DatasetError,
    Split,
    cache,
    download,
    load_split,
    resolve_data_dir,
)
from tests.image_folders import class_folders, color, fake_keras, make_tree, write_image

SHARED_CIFAR10 = Path(__file__).resolve().parents[2].parent / "shared/datasets/cifar10-jpeg"


pytestmark = pytest.mark.usefixtures("dataset_env")


# ----------------------------------------------------------------------------- resolve


def test_classes_are_the_official_order() -> None:
    assert CLASSES == (
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
    assert ENV_VAR == "SERVECAP_CIFAR10_DIR"
    assert issubclass(DatasetError, ValueError)


def test_resolve_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_data_dir(None) is None
    assert resolve_data_dir("") is None
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"  # the argument wins
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    monkeypatch.setenv(ENV_VAR, "")
    assert resolve_data_dir(None) is None


def test_env_var_is_used_by_load_split(image_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(image_tree))
    split = load_split("test")
    assert len(split) == 30
    assert split.files[0].startswith("test/")


# ----------------------------------------------------------------------------- layout errors


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        load_split("test", tmp_path / "nope")
    message = str(err.value)
    assert "does not exist" in message
    assert str(tmp_path / "nope") in message
    assert "--data" in message and ENV_VAR in message
    assert "<class>" in message


def test_missing_split_folder(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "cifar", per_class=1, splits=("train",))
    with pytest.raises(DatasetError, match="no 'test' folder"):
        load_split("test", root)


def test_missing_class_folder(image_tree: Path) -> None:
    for f in (image_tree / "test" / "frog").iterdir():
        f.unlink()
    (image_tree / "test" / "frog").rmdir()
    with pytest.raises(DatasetError) as err:
        load_split("test", image_tree)
    message = str(err.value)
    assert "missing class folder" in message
    assert str(image_tree.resolve() / "test" / "frog") in message
    assert ", ".join(CLASSES) in message


def test_unknown_class_folder(image_tree: Path) -> None:
    (image_tree / "test" / "unicorn").mkdir()
    with pytest.raises(DatasetError) as err:
        load_split("test", image_tree)
    message = str(err.value)
    assert "unknown class folder" in message and "unicorn" in message
    assert ", ".join(CLASSES) in message


def test_empty_class_folder(image_tree: Path) -> None:
    for f in (image_tree / "test" / "cat").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match="holds no images"):
        load_split("test", image_tree)


def test_wrong_size_names_the_file(image_tree: Path) -> None:
    bad = image_tree / "test" / "dog" / "big.png"
    write_image(bad, np.zeros((64, 48, 3), dtype=np.uint8))
    with pytest.raises(DatasetError) as err:
        load_split("test", image_tree)
    assert str(bad.resolve()) in str(err.value)
    assert "32x32" in str(err.value) and "48x64" in str(err.value)


@pytest.mark.parametrize("content", [b"not an image at all", b"\xff\xd8\xff\xe0" + b"\0" * 40])
def test_corrupt_file_names_the_file(image_tree: Path, content: bytes) -> None:
    bad = image_tree / "test" / "ship" / "0099.jpg"
    bad.write_bytes(content)
    with pytest.raises(DatasetError) as err:
        load_split("test", image_tree)
    assert str(bad.resolve()) in str(err.value)
    with pytest.raises(DatasetError, match="0099.jpg"):
        load_jpeg_bytes("test", image_tree)


def test_truncated_jpeg_is_an_error(image_tree: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 7, dtype=np.uint8)).save(buf, format="JPEG")
    bad = image_tree / "test" / "cat" / "cut.jpg"
    bad.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(DatasetError, match="cut.jpg"):
        load_split("test", image_tree)


def test_bad_arguments(image_tree: Path) -> None:
    with pytest.raises(DatasetError, match="unknown split"):
        load_split("validation", image_tree)
    for limit in (0, -3):
        with pytest.raises(ValueError, match="limit"):
            load_split("test", image_tree, limit=limit)


# ----------------------------------------------------------------------------- decoding


def test_labels_files_and_pixels_match(image_tree: Path) -> None:
    split = load_split("test", image_tree)
    assert isinstance(split, Split)
    assert split.name == "test"
    assert split.images.shape == (30, 32, 32, 3) and split.images.dtype == np.uint8
    assert split.labels.shape == (30,) and split.labels.dtype == np.int64
    assert len(split.files) == 30 and len(set(split.files)) == 30
    assert np.bincount(split.labels, minlength=10).tolist() == [3] * 10
    for image, label, file in zip(split.images, split.labels, split.files, strict=True):
        _, class_name, name = file.split("/")
        assert CLASSES.index(class_name) == label
        expected = color(int(label), int(name[:4]))
        assert (image == np.array(expected, dtype=np.uint8)).all()


def test_formats_and_modes_converted_to_rgb(image_tree: Path) -> None:
    cat = image_tree / "test" / "cat"
    write_image(cat / "gray.png", Image.new("L", (32, 32), 100))
    write_image(cat / "rgba.png", Image.new("RGBA", (32, 32), (10, 20, 30, 40)))
    palette = Image.new("P", (32, 32), 1)
    palette.putpalette([0, 0, 0, 200, 0, 0])
    write_image(cat / "pal.png", palette)
    write_image(cat / "photo.JPEG", Image.new("RGB", (32, 32), (0, 128, 255)), fmt="JPEG")
    (cat / "README.txt").write_text("ignored")
    (cat / ".DS_Store").write_bytes(b"\0")
    split = load_split("test", image_tree)
    assert len(split) == 34
    by_file = dict(zip(split.files, split.images, strict=True))
    assert (by_file["test/cat/gray.png"] == 100).all()
    assert (by_file["test/cat/rgba.png"] == np.array([10, 20, 30], dtype=np.uint8)).all()
    assert (by_file["test/cat/pal.png"] == np.array([200, 0, 0], dtype=np.uint8)).all()
    jpeg = by_file["test/cat/photo.JPEG"].astype(int)
    assert np.abs(jpeg - np.array([0, 128, 255])).max() <= 3


# ----------------------------------------------------------------------------- order / limit


def test_order_is_deterministic_shuffled_and_limit_is_a_prefix(image_tree: Path) -> None:
    full = load_split("test", image_tree, seed=0)
    again = load_split("test", image_tree, seed=0)
    assert full.files == again.files
    assert np.array_equal(full.images, again.images)
    sorted_order = tuple(f"test/{c}/{i:04d}.png" for c in CLASSES for i in range(3))
    assert sorted(full.files) == list(sorted_order)
    assert full.files != sorted_order  # always shuffled, even without limit
    expected = np.random.default_rng(0).permutation(30)
    assert full.files == tuple(sorted_order[i] for i in expected)

    part = load_split("test", image_tree, limit=7, seed=0)
    assert part.files == full.files[:7]
    assert np.array_equal(part.images, full.images[:7])
    assert np.array_equal(part.labels, full.labels[:7])

    other = load_split("test", image_tree, seed=1)
    assert other.files != full.files
    assert sorted(other.files) == sorted(full.files)

    assert len(load_split("test", image_tree, limit=1000)) == 30  # limit above n: everything


# ----------------------------------------------------------------------------- cache


def _cache_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "xdg-cache" / "servecap").glob("*.npz"))


def test_cache_hit_gives_identical_arrays(
    image_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cold = load_split("test", image_tree, limit=12, seed=3)
    assert len(_cache_files(tmp_path)) == 1

    def no_decoding(*args: object) -> np.ndarray:
        raise AssertionError("decoded although the cache should have been used")

    monkeypatch.setattr(cache, "decode_files", no_decoding)
    warm = load_split("test", image_tree, limit=12, seed=3)
    assert np.array_equal(cold.images, warm.images)
    assert np.array_equal(cold.labels, warm.labels)
    assert cold.files == warm.files
    full = load_split("test", image_tree)  # the cache holds the whole split
    assert len(full) == 30


def test_cache_invalidated_when_files_change(image_tree: Path, tmp_path: Path) -> None:
    load_split("test", image_tree)
    first = _cache_files(tmp_path)
    write_image(image_tree / "test" / "bird" / "0100.png", np.full((32, 32, 3), 9, dtype=np.uint8))
    os.utime(image_tree / "test" / "bird", ns=(time.time_ns() + 10**9,) * 2)
    split = load_split("test", image_tree)
    assert len(split) == 31
    assert "test/bird/0100.png" in split.files
    second = _cache_files(tmp_path)
    assert len(second) == 1 and second != first  # the stale entry was replaced


def test_train_and_test_cached_separately(image_tree: Path, tmp_path: Path) -> None:
    load_split("test", image_tree)
    load_split("train", image_tree)
    assert len(_cache_files(tmp_path)) == 2


def test_no_cache_env(image_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dataset.NO_CACHE_ENV_VAR, "1")
    a = load_split("test", image_tree, limit=5)
    assert _cache_files(tmp_path) == []
    monkeypatch.delenv(dataset.NO_CACHE_ENV_VAR)
    b = load_split("test", image_tree, limit=5)
    assert np.array_equal(a.images, b.images) and a.files == b.files


def test_damaged_cache_is_rebuilt(image_tree: Path, tmp_path: Path) -> None:
    expected = load_split("test", image_tree)
    (cache,) = _cache_files(tmp_path)
    cache.write_bytes(b"garbage")
    again = load_split("test", image_tree)
    assert np.array_equal(expected.images, again.images)


# ----------------------------------------------------------------------------- keras fallback


def test_keras_fallback_when_no_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(download, "load_keras_split", fake_keras(calls))
    images, labels = fake_keras([])("test")
    split = load_split("test", limit=8, seed=2)
    assert calls == ["test"]
    assert split.files == ("",) * 8
    order = np.random.default_rng(2).permutation(20)[:8]
    assert np.array_equal(split.images, images[order])
    assert np.array_equal(split.labels, labels[order])
    assert len(load_split("train")) == 50


def test_keras_fallback_not_used_when_directory_given(
    image_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(download, "load_keras_split", fake_keras(calls))
    load_split("test", image_tree)
    assert calls == []


# ----------------------------------------------------------------------------- real data


@pytest.mark.skipif(not SHARED_CIFAR10.is_dir(), reason=f"{SHARED_CIFAR10} not present")
def test_real_cifar10_test_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dataset.NO_CACHE_ENV_VAR, "1")
    split = load_split("test", SHARED_CIFAR10)
    assert split.images.shape == (10_000, 32, 32, 3)
    assert split.images.dtype == np.uint8
    assert np.bincount(split.labels, minlength=10).tolist() == [1000] * 10
    assert 60 < split.images.mean() < 180
    first = split.labels[:100]
    assert len(set(first.tolist())) == 10  # the shuffled prefix mixes the classes


def test_failed_download_says_how_to_work_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(split: str) -> None:
        raise Exception("URL fetch failure: Name or service not known")

    monkeypatch.delenv("SERVECAP_CIFAR10_DIR", raising=False)
    monkeypatch.setattr(download, "load_keras_split", offline)
    with pytest.raises(DatasetError, match="official download failed .*SERVECAP_CIFAR10_DIR"):
        load_split("test", None, limit=3)


# ---------------------------------------------------------------- your own images and model


def test_a_folder_of_classes_is_a_test_split_labelled_in_sorted_order(tmp_path: Path) -> None:
    from targets.common.dataset import class_names
    from targets.inputs import InputSpec

    root = class_folders(tmp_path / "flat", ("zebra", "apple", "mango"), (48, 40), "PNG")
    spec = InputSpec(shape=(24, 24, 1), dtype="uint8")
    test = load_split("test", root, spec=spec, classes=None, resize=True)
    assert class_names(root, classes=None) == ("apple", "mango", "zebra")
    assert test.images.shape == (6, 24, 24, 1) and test.images.dtype == np.uint8
    for image, label, name in zip(test.images, test.labels, test.files, strict=True):
        assert name.split("/")[0] == ("apple", "mango", "zebra")[label]
        assert np.ptp(image) == 0  # a solid colour stays solid when resized and made grey
    # a given classes list decides the labels, and must match the folders
    given = load_split("test", root, spec=spec, classes=("zebra", "mango", "apple"), resize=True)
    assert [f.split("/")[0] for f in given.files if given.labels[given.files.index(f)] == 0] == [
        "zebra",
        "zebra",
    ]
    with pytest.raises(DatasetError, match="must be exactly"):
        load_split("test", root, spec=spec, classes=("apple", "mango"), resize=True)
    # without resize, a wrong size names the file and the size wanted
    with pytest.raises(DatasetError, match="24"):
        load_split("test", root, spec=spec, classes=None)


def test_the_keras_download_refuses_another_model_input() -> None:
    from targets.inputs import InputSpec

    with pytest.raises(DatasetError, match="folder"):
        load_split("test", None, spec=InputSpec(shape=(64, 64, 1), dtype="uint8"))
