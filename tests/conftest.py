"""Shared fixtures: the offline CIFAR-10 folder and a small model trained once per session."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def readable_model(tiny_model: Path) -> Iterator[Path]:
    """The tiny model where the containers' uid 10001 can read it (pytest's folders are
    private)."""
    root = Path(tempfile.mkdtemp(prefix="servecap-model-"))
    target = root / "cifar10_cnn"
    shutil.copytree(tiny_model, target)
    for path in [root, *target.rglob("*"), target]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield target
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def dataset_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user data folder, the decoded-image cache in tmp_path/xdg-cache, caching on."""
    from targets.common.dataset import ENV_VAR, NO_CACHE_ENV_VAR

    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv(NO_CACHE_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    """A fake image-folder CIFAR-10 (tests/image_folders.py: solid-colour PNGs, 3 a class)."""
    from tests.image_folders import make_tree

    return make_tree(tmp_path / "cifar")


@pytest.fixture
def no_leftovers() -> Iterator[None]:
    """A Docker test starts with no servecap container and leaves none (removed if it did)."""
    from targets.launchers.docker import clean
    from tests.machine import managed_containers

    assert not managed_containers(), (
        "servecap containers left by something else: run `servecap clean`"
    )
    yield
    left = managed_containers()
    if left:
        clean()
    assert not left, f"containers left behind: {left}"


@pytest.fixture
def scenarios_file(tmp_path: Path, tiny_model: Path) -> Path:
    """The repository's scenarios.yaml, every target pointed at the test model and a free
    port."""
    import yaml

    from tests.ports import free_port

    data = yaml.safe_load((REPO / "scenarios.yaml").read_text())
    for target in data["targets"].values():
        target["model_path"] = str(tiny_model)
        target["port"] = free_port()
    path = tmp_path / "scenarios.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
