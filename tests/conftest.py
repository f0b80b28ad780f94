"""Shared fixtures: the offline CIFAR-10 folder, a small model trained once per test run, the
``sleepy`` test kind, and one real ``servecap run smoke`` shared by the tests that only read
its results.

Under pytest-xdist (``-n N``) the model and the smoke run are made once for all workers (a
folder beside the workers' own, under a lock: the first worker to need one makes it, the
others wait for it and read it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runs import SLEEPY_KINDS, SmokeRun, servecap, write_scenarios

# Importing locust monkey-patches the process with gevent; the test process must stay normal.
os.environ.setdefault("LOCUST_SKIP_MONKEY_PATCH", "1")

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules holding ``slow`` tests first, the most first (the rest keep their order): under
    pytest-xdist (``make test``: loadscope, no reorder) a module of long runs that started last
    would end the suite alone on one worker while the others idle."""
    module = {item.nodeid: item.nodeid.split("::")[0] for item in items}
    slow = Counter(module[item.nodeid] for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[module[item.nodeid]])


SHARED_CIFAR = REPO.parent / "shared" / "datasets" / "cifar10-jpeg"


@contextlib.contextmanager
def run_wide(factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """``name``, a folder every pytest-xdist worker of this run shares (the session's own
    without xdist), held under a lock: the first to enter makes what the others reuse."""
    root = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield root / name


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
    with run_wide(tmp_path_factory, "model") as folder:
        base = folder / "cifar10_cnn"
        if not (folder / "done").exists():
            from targets.common.model import train_and_export

            shutil.rmtree(folder, ignore_errors=True)
            train_and_export(str(cifar_dir), 512, 256, 1, 64, base, seed=0)
            (folder / "done").touch()
    return base


@pytest.fixture
def sleepy_kind(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The ``sleepy`` test kind on ``SERVECAP_KIND_PATH`` (its folder's parent yielded)."""
    from targets.registry import KIND_PATH_ENV, kinds

    monkeypatch.setenv(KIND_PATH_ENV, str(SLEEPY_KINDS))
    kinds.cache_clear()
    yield SLEEPY_KINDS
    kinds.cache_clear()


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path,
              cifar_dir: Path) -> SmokeRun:  # fmt: skip
    """One real smoke run, shared by the tests that only read what it did and wrote."""
    with run_wide(tmp_path_factory, "smoke") as base:
        scenarios, out, output = base / "scenarios.yaml", base / "smoke-results", base / "output"
        if not (base / "returncode").exists():
            shutil.rmtree(base, ignore_errors=True)
            base.mkdir()
            write_scenarios(scenarios, tiny_model)
            env = {**os.environ, "SERVECAP_CIFAR10_DIR": str(cifar_dir), "COLUMNS": "160"}
            env.pop("LOCUST_SKIP_MONKEY_PATCH", None)
            with output.open("w") as log:
                code = subprocess.run(servecap("run", "smoke", "--scenarios", str(scenarios),
                                               "--out", str(out)), stdout=log,
                                      stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                      timeout=300).returncode  # fmt: skip
            (base / "returncode").write_text(str(code))
        code = int((base / "returncode").read_text())
    return SmokeRun(scenarios, out, code, output.read_text())


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
    return write_scenarios(tmp_path / "scenarios.yaml", tiny_model)
