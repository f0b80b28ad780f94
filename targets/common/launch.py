"""What the process plans of servecap's Python servers share: interpreter, environment, CPUs.

:func:`server_env` is the one place a target's config becomes the ``SERVECAP_*`` settings a
Python server reads (:class:`targets.common.settings.ServerSettings`); variable names are
derived from the settings model, never typed here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from targets.common.settings import METRICS_DIR_ENV, ServerSettings, settings_env
from targets.common.tmp import private_dir
from targets.config import InferenceServerConfig, PythonServerConfig
from targets.launch_types import Placement, resolve_model_path
from targets.registry import REPO_ROOT

PYTHON = sys.executable
CONTAINER_METRICS = Path("/tmp/servecap/metrics")


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
    """The :class:`ServerSettings` values a target's config sets (the model's input from its
    signature and the target's ``input:``, :meth:`targets.kind.ModelKind.input_spec`)."""
    from targets.registry import get_kind

    spec = get_kind(config.kind).input_spec(config)
    values: dict[str, Any] = {
        "model_path": resolve_model_path(config),
        "max_works": config.max_works,
        "max_body_bytes": config.max_body_bytes,
        "max_batch": config.max_batch,
        "input_shape": list(spec.shape),
        "input_range": list(spec.range),
    }
    if isinstance(config, InferenceServerConfig):
        values |= {"batch_max": config.batch_max, "batch_timeout_ms": config.batch_timeout_ms}
    return values


def with_metrics(
    spec_name: str, env: Mapping[str, str], placement: Placement
) -> tuple[dict[str, str], tuple[Path, ...]]:
    """``env`` plus where the server's worker processes keep their metrics (prometheus_client's
    multiprocess mode), and that folder, to be emptied before the server starts."""
    folder = (CONTAINER_METRICS if placement.container else private_dir("metrics")) / spec_name
    return {**env, METRICS_DIR_ENV: str(folder)}, (folder,)


def server_env(
    config: PythonServerConfig, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a Python server of ``config``: its settings, then ``extra``
    (another settings model's variables, e.g. a chain's upstream, from
    :func:`~targets.common.settings.settings_env`), then the target's own ``env`` on top."""
    own = settings_env(ServerSettings, server_settings(config))
    return {**base_env(), **own, **(extra or {}), **config.env}
