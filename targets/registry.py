"""Where each target kind says how it starts: ``targets/<kind>/launch.py``.

A kind's ``launch`` module provides ``process_plan(name, config) -> list[ProcessSpec]``:
the processes to start, in order, each with its readiness check. Launchers call it; they do
not know any kind's command line.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Protocol

from targets.config import TargetConfig
from targets.launchers.base import LaunchError, ProcessSpec

REPO_ROOT = Path(__file__).resolve().parents[1]


class KindModule(Protocol):
    def process_plan(self, name: str, config: TargetConfig) -> list[ProcessSpec]: ...


def kind_module(kind: str) -> KindModule:
    try:
        module: KindModule = importlib.import_module(f"targets.{kind.replace('-', '_')}.launch")
    except ModuleNotFoundError as err:
        raise LaunchError(f"target kind '{kind}' has no launch module ({err})") from None
    return module


def resolve_model_path(config: TargetConfig) -> Path:
    path = Path(config.model_path)
    return path if path.is_absolute() else (Path.cwd() / path).resolve()


def server_env(config: TargetConfig) -> dict[str, str]:
    """The SERVECAP_* variables a Python server reads (targets.common.settings)."""
    env = {
        "SERVECAP_MODEL_PATH": str(resolve_model_path(config)),
        "SERVECAP_MAX_WORKS": str(config.max_works),
        "SERVECAP_MAX_BODY_BYTES": str(config.max_body_bytes),
        "SERVECAP_MAX_BATCH": str(config.max_batch),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
        # Make the repository importable by the server whatever the working directory.
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p
        ),
    }
    if config.model_url:
        env["SERVECAP_MODEL_URL"] = config.model_url
    env.update(config.env)
    return env


PYTHON = sys.executable
