"""What this machine has that some tests need: a Docker engine (and servecap's images on it),
Triton. Each check runs once per test session; tests that need one skip with the reason.

Test modules never import one another: what several of them share lives here, in
``tests/conftest.py`` (fixtures) or in the other helper modules beside it.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Callable
from typing import TypeVar

import pytest

from targets.docker.images import OFFLINE_BASE

BASE_IMAGE = OFFLINE_BASE
FASTAPI_IMAGE = "servecap/fastapi:latest"
TRITON_IMAGE = "servecap/triton:latest"
T = TypeVar("T")


@functools.cache
def docker_missing(image: str | None = None) -> str | None:
    """Why Docker tests cannot run here (no CLI, no engine, ``image`` not built), or None."""
    if shutil.which("docker") is None:
        return "no docker CLI"
    try:
        if subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode:
            return "docker info fails (no engine)"
        if (
            image is not None
            and subprocess.run(
                ["docker", "image", "inspect", image], capture_output=True, timeout=20
            ).returncode
        ):
            return f"{image} not built (servecap images build --offline)"
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    return None


def needs_docker(image: str | None = None) -> list[pytest.MarkDecorator]:
    """The marks of a test that needs a Docker engine (and ``image``, when given): ``docker``
    and ``integration`` (``make test`` deselects ``docker``: the CI docker stage,
    targets/docker/ci.sh, runs those), and a skip with the reason when the engine or the image
    is missing. Use as ``pytestmark = needs_docker(...)`` or ``@docker_test(...)``."""
    reason = docker_missing(image)
    return [pytest.mark.docker, pytest.mark.integration,
            pytest.mark.skipif(reason is not None, reason=reason or "")]  # fmt: skip


def docker_test(image: str | None = None) -> Callable[[T], T]:
    """Decorator form of :func:`needs_docker`."""

    def mark(test: T) -> T:
        for decorator in needs_docker(image):
            test = decorator(test)
        return test

    return mark


def managed_containers() -> list[str]:
    """Ids of the servecap-managed containers on the engine, running or not."""
    from targets.launchers.docker import MANAGED_LABEL

    out = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", f"label={MANAGED_LABEL}"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    return out.split()


def needs_redis() -> pytest.MarkDecorator:
    """Skip unless ``redis-server`` is installed (``make setup`` installs it)."""
    missing = shutil.which("redis-server") is None
    return pytest.mark.skipif(missing, reason="redis-server is not installed (make setup)")


@functools.cache
def triton_missing() -> str | None:
    """Why a Triton target cannot start as processes here (no tritonserver), or None."""
    from targets.launch_types import LaunchError
    from targets.registry import get_kind, target_config

    try:
        target = target_config(kind="triton", model_path="/nonexistent")
        get_kind("triton").process_plan("probe", target)
    except LaunchError as err:
        if "model" not in str(err):
            return str(err)
    return None
