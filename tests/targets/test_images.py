"""Offline container base image (targets/docker/build_base.sh).

Skipped when no Docker engine answers. When the image already exists the build script
is a no-op and the whole module takes a few seconds; building it from nothing
(debootstrap, root only) takes about a minute.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.machine import BASE_IMAGE, docker_test

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "targets" / "docker"
BUILD_BASE = DOCKER_DIR / "build_base.sh"
BUILD_WHEELHOUSE = DOCKER_DIR / "build_wheelhouse.sh"
APP_UID = 10001


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


@pytest.mark.parametrize(
    "script", [BUILD_BASE, BUILD_WHEELHOUSE, DOCKER_DIR / "ci.sh"], ids=lambda p: p.name
)
def test_scripts_are_valid_bash(script: Path) -> None:
    assert script.is_file()
    assert os.access(script, os.X_OK), f"{script} is not executable"
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    help_out = subprocess.run(
        ["bash", str(script), "--help"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert "Usage" in help_out


needs_engine = docker_test()


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


@needs_engine
def test_build_base_is_idempotent(base_image: str) -> None:
    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", str(BUILD_BASE)], capture_output=True, text=True, timeout=120, check=True
    )
    assert "nothing to do" in proc.stderr
    assert time.monotonic() - t0 < 30


@needs_engine
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


@needs_engine
def test_base_image_runs_as_app_and_pip_works_offline(base_image: str) -> None:
    out = _docker_run(base_image, "sh", "-c", "id -u; pip --version", user="app")
    uid, pip_version = out.strip().splitlines()
    assert int(uid) == APP_UID
    assert "python 3.11" in pip_version


# ------------------------------------------------------------------ target images


DOCKERFILES = {
    "runtime": DOCKER_DIR / "runtime.Dockerfile",
    "model": DOCKER_DIR / "model.Dockerfile",
    "fastapi": REPO / "targets" / "fastapi" / "Dockerfile",
    "flask": REPO / "targets" / "flask" / "Dockerfile",
    "django": REPO / "targets" / "django_embedded" / "Dockerfile",
    "jobqueue": REPO / "targets" / "jobqueue" / "Dockerfile",
}


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfiles_build_with_either_builder(name: str) -> None:
    text = DOCKERFILES[name].read_text()
    # the engine's BuildKit here cannot pull a frontend image; the legacy builder has no --mount
    assert not re.search(r"^#\s*syntax\s*=", text, re.M)
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "--mount" not in code
    froms = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    assert len(froms) == 1  # single stage: no ~3 GB dangling intermediate images
    if name == "runtime":
        assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in text and froms == ["${BASE_IMAGE}"]
    elif name == "model":
        assert froms == ["${TARGET_IMAGE}"]
    else:
        assert "ARG RUNTIME_IMAGE=servecap/runtime:latest" in text
        assert froms == ["${RUNTIME_IMAGE}"]
        assert re.search(r'^CMD \["serve", "[a-z-]+"\]$', text, re.M)  # the kind's own command


def test_dockerignore_is_an_allow_list() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # everything out (.venv is 2.8 GB), then only what images need
    assert set(lines[1:3]) == {"!targets/", "!build/docker/requirements-runtime.txt"}


def test_runtime_requirements_are_pyprojects_pins() -> None:
    import tomllib

    from targets.docker import images

    pins = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = images.runtime_requirements()
    names = {images._requirement_name(r) for r in reqs}
    assert {"tensorflow", "numpy", "fastapi", "uvicorn", "pydantic-settings"} <= names
    assert not names & {"locust", "pandas", "pyarrow", "docker", "click", "nvidia-ml-py"}
    for req in reqs:
        if "==" in req:
            assert req in pins  # the very pin, not a copy of it
    assert images.images_for(["django-to-fastapi"]) == ["fastapi", "django"]
    with pytest.raises(images.BuildError, match="unknown kind or image"):
        images.images_for(["nope"])


def test_wheelhouse_is_served_on_loopback_only(tmp_path: Path) -> None:
    import urllib.request

    from targets.docker.images import serve_directory

    (tmp_path / "x-1.0-py3-none-any.whl").write_bytes(b"wheel")
    with serve_directory(tmp_path, port=0) as url:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "x-1.0-py3-none-any.whl", timeout=5) as resp:
            assert resp.read() == b"wheel"


RUNTIME_IMAGE = "servecap/runtime:latest"


@needs_engine
def test_runtime_image_contents() -> None:
    if not _image_exists(RUNTIME_IMAGE):
        pytest.skip(f"{RUNTIME_IMAGE} not built")
    probe = (
        "import importlib.util as u, json, os, shutil\n"
        "mods = ['tensorflow', 'fastapi', 'uvicorn', 'flask', 'gunicorn', 'django', 'rq',"
        " 'redis', 'pydantic_settings', 'targets.common.service']\n"
        "print(json.dumps({'missing': [m for m in mods if not u.find_spec(m)],"
        " 'uid': os.getuid(), 'nginx': shutil.which('nginx') or os.path.exists('/usr/sbin/nginx'),"
        " 'redis': shutil.which('redis-server'), 'locust': bool(u.find_spec('locust'))}))\n"
    )
    cmd = ["docker", "run", "--rm", "--network", "none", "--read-only", RUNTIME_IMAGE,
           "exec", "--", "python", "-c", probe]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["missing"] == [] and info["uid"] == APP_UID
    assert info["nginx"] and info["redis"] and not info["locust"]
