"""Shared fixtures: the offline CIFAR-10 folder and a small model trained once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Importing locust monkey-patches the process with gevent; the test process must stay normal.
os.environ.setdefault("LOCUST_SKIP_MONKEY_PATCH", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = REPO.parent / "shared" / "datasets" / "cifar10-jpeg"


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    env = os.environ.get("SERVECAP_CIFAR10_DIR")
    path = Path(env) if env else SHARED_CIFAR
    if not (path / "test").is_dir():
        pytest.skip(f"CIFAR-10 image folder not available at {path}")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, cifar_dir: Path) -> Path:
    """A real CNN trained briefly (accuracy is irrelevant here) and exported; its model base."""
    from targets.common.model import train_and_export

    base = tmp_path_factory.mktemp("model") / "cifar10_cnn"
    train_and_export(str(cifar_dir), 512, 256, 1, 64, base, seed=0)
    return base
