"""Offline container base image (targets/docker/build_base.sh).

Skipped when no Docker engine answers. When the image already exists the build script
is a no-op and the whole module takes a few seconds; building it from nothing
(debootstrap, root only) takes about a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "targets" / "docker"
BUILD_BASE = DOCKER_DIR / "build_base.sh"
BUILD_WHEELHOUSE = DOCKER_DIR / "build_wheelhouse.sh"
BASE_IMAGE = "servecap/base:bookworm-py311"
APP_UID = 10001


def _docker_available() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        proc = subprocess.run([docker, "info"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def _image_exists(image: str) -> bool:
    proc = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, timeout=30, check=False
    )
    return proc.returncode == 0


def _docker_run(image: str, *args: str, user: str | None = None) -> str:
    cmd = ["docker", "run", "--rm", "--network", "host"]
    if user is not None:
        cmd += ["--user", user]
    proc = subprocess.run(
        [*cmd, image, *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("script", [BUILD_BASE, BUILD_WHEELHOUSE], ids=lambda p: p.name)
def test_scripts_are_valid_bash(script: Path) -> None:
    assert script.is_file()
    assert os.access(script, os.X_OK), f"{script} is not executable"
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    help_out = subprocess.run(
        ["bash", str(script), "--help"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert "Usage" in help_out


needs_docker = pytest.mark.skipif(not _docker_available(), reason="docker engine not available")


@pytest.fixture(scope="module")
def base_image() -> str:
    """The base image, built by build_base.sh if missing (a no-op when present)."""
    can_build = os.geteuid() == 0 and shutil.which("debootstrap") is not None
    if not can_build and not _image_exists(BASE_IMAGE):
        pytest.skip(f"{BASE_IMAGE} missing and cannot be built here (needs root + debootstrap)")
    proc = subprocess.run(
        ["bash", str(BUILD_BASE)], capture_output=True, text=True, timeout=900, check=False
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert _image_exists(BASE_IMAGE)
    return BASE_IMAGE


@pytest.mark.integration
@needs_docker
def test_build_base_is_idempotent(base_image: str) -> None:
    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", str(BUILD_BASE)], capture_output=True, text=True, timeout=120, check=True
    )
    assert "nothing to do" in proc.stderr
    assert time.monotonic() - t0 < 30


@pytest.mark.integration
@needs_docker
def test_base_image_python_user_and_venv(base_image: str) -> None:
    probe = (
        "import json, os, pwd, shutil, ssl, sys, sysconfig, venv, ensurepip\n"
        "app = pwd.getpwnam('app')\n"
        "st = os.stat('/opt/venv')\n"
        "print(json.dumps({'version': list(sys.version_info[:2]),"
        " 'soabi': sysconfig.get_config_var('SOABI'), 'prefix': sys.prefix,"
        " 'app_uid': app.pw_uid, 'venv_owner': st.st_uid,"
        " 'pip': shutil.which('pip'), 'tini': shutil.which('tini'),"
        " 'unbuffered': os.environ.get('PYTHONUNBUFFERED')}))\n"
    )
    info = json.loads(_docker_run(base_image, "python", "-c", probe))
    assert info["version"] == [3, 11]
    assert info["soabi"].startswith("cpython-311-x86_64")  # matches the cp311 wheelhouse
    assert info["prefix"] == "/opt/venv"
    assert info["app_uid"] == APP_UID
    assert info["venv_owner"] == 0  # root-owned: `pip install` at build time, read-only for app
    assert info["pip"] == "/opt/venv/bin/pip"
    assert info["tini"] is not None
    assert info["unbuffered"] == "1"


@pytest.mark.integration
@needs_docker
def test_base_image_runs_as_app_and_pip_works_offline(base_image: str) -> None:
    out = _docker_run(base_image, "sh", "-c", "id -u; pip --version", user="app")
    uid, pip_version = out.strip().splitlines()
    assert int(uid) == APP_UID
    assert "python 3.11" in pip_version
