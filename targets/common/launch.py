"""What the process plans of servecap's Python servers share: interpreter, environment, CPUs.

:func:`server_env` is the one place a target's config becomes the ``SERVECAP_*`` settings a
Python server reads (:class:`targets.common.settings.ServerSettings`); variable names are
derived from the settings model, never typed here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from targets.common.settings import ServerSettings, settings_env
from targets.config import PythonServerConfig
from targets.registry import REPO_ROOT, resolve_model_path

PYTHON = sys.executable


def base_env() -> dict[str, str]:
    """Every servecap Python process: unbuffered logs, quiet TensorFlow, the code importable."""
    return {
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
        # Make the repository importable by the server whatever the working directory.
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p
        ),
    }


def server_settings(config: PythonServerConfig) -> dict[str, Any]:
    """The :class:`ServerSettings` values a target's config sets."""
    return {
        "model_path": resolve_model_path(config),
        "model_url": config.model_url,
        "max_works": config.max_works,
        "max_body_bytes": config.max_body_bytes,
        "max_batch": config.max_batch,
    }


def server_env(
    config: PythonServerConfig, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a Python server of ``config``: its settings, then ``extra``
    (another settings model's variables, e.g. a chain's upstream, from
    :func:`~targets.common.settings.settings_env`), then the target's own ``env`` on top."""
    own = settings_env(ServerSettings, server_settings(config))
    return {**base_env(), **own, **(extra or {}), **config.env}
