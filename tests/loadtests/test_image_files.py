"""The data set's images as the files the load sends (loadtests.image_files): the same
selection as the decoded split, the files' bytes unchanged, resized ones in their own format,
JPEG from the keras download."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loadtests.image_files import load_jpeg_bytes
from targets.common.dataset import download, load_split
from targets.inputs import InputSpec
from tests.image_folders import class_folders, fake_keras, write_image

pytestmark = pytest.mark.usefixtures("dataset_env")
SHARED_CIFAR10 = Path(__file__).resolve().parents[2].parent / "shared/datasets/cifar10-jpeg"


def test_load_jpeg_bytes_matches_load_split(image_tree: Path) -> None:
    (image_tree / "test" / "cat" / "0000.png").unlink()
    write_image(
        image_tree / "test" / "cat" / "0000.jpg", Image.new("RGB", (32, 32), (1, 2, 3)), "JPEG"
    )
    split = load_split("test", image_tree, limit=20, seed=5)
    blobs, labels = load_jpeg_bytes("test", image_tree, limit=20, seed=5)
    assert labels.dtype == np.int64
    assert np.array_equal(labels, split.labels)
    assert len(blobs) == 20
    root = image_tree.resolve()
    for blob, file, image in zip(blobs, split.files, split.images, strict=True):
        assert blob == (root / file).read_bytes()
        decoded = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))
        assert np.array_equal(decoded, image)


def test_load_jpeg_bytes_without_verify_skips_decoding(image_tree: Path) -> None:
    (image_tree / "test" / "cat" / "0000.png").write_bytes(b"junk")
    blobs, _ = load_jpeg_bytes("test", image_tree, verify=False)
    assert b"junk" in blobs


def test_keras_fallback_jpeg_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(download, "load_keras_split", fake_keras(calls))
    split = load_split("test", limit=6)
    blobs, labels = load_jpeg_bytes("test", limit=6)
    assert np.array_equal(labels, split.labels)
    for blob, image in zip(blobs, split.images, strict=True):
        assert blob[:3] == b"\xff\xd8\xff"  # JPEG
        decoded = np.asarray(Image.open(io.BytesIO(blob)))
        assert decoded.shape == (32, 32, 3)
        # quality 95, no chroma subsampling: close on average even for noise
        assert np.abs(decoded.astype(int) - image.astype(int)).mean() < 8


def test_resized_files_keep_their_format_and_match_the_decoded_split(tmp_path: Path) -> None:
    root = class_folders(tmp_path / "flat", ("a", "b"), (64, 64), "PNG")
    spec = InputSpec(shape=(32, 32, 3), dtype="float32", range=(0.0, 1.0))
    files, labels = load_jpeg_bytes("test", root, spec=spec, classes=None, resize=True)
    split = load_split("test", root, spec=spec, classes=None, resize=True)
    assert list(labels) == list(split.labels)
    for data, pixels in zip(files, split.images, strict=True):
        assert data.startswith(b"\x89PNG")  # PNG stays PNG (lossless: same pixels)
        with Image.open(io.BytesIO(data)) as im:
            assert im.size == (32, 32)
            assert np.array_equal(np.asarray(im.convert("RGB")), pixels)


@pytest.mark.skipif(not SHARED_CIFAR10.is_dir(), reason=f"{SHARED_CIFAR10} not present")
def test_real_cifar10_files_are_the_split_in_its_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVECAP_NO_CACHE", "1")
    first = load_split("test", SHARED_CIFAR10, limit=100).labels
    blobs, labels = load_jpeg_bytes("test", SHARED_CIFAR10, limit=100, verify=False)
    assert np.array_equal(labels, first)
    assert all(b[:3] == b"\xff\xd8\xff" for b in blobs)
