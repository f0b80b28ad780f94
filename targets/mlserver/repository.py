"""The folder MLServer is started on (``mlserver start DIR``'s layout), written before each start.

::

    <prefix>/settings.json                      server: listeners, workers, metrics
    <prefix>/<model_name>/model-settings.json   the model: runtime, adaptive batching, uri

The prefix is a private folder (mode 0700), emptied and rewritten at each start; MLServer runs
with it as its working directory, so its ``.env`` lookups, its metrics folder (parallel workers)
and its environments folder are there and nowhere else. Pure: no MLServer import (tested in
servecap's environment).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUNTIME = "targets.mlserver.runtime.SavedModelRuntime"
SETTINGS_FILE = "settings.json"
MODEL_SETTINGS_FILE = "model-settings.json"


@dataclass(frozen=True)
class ServerOptions:
    """What a target's config sets in settings.json and model-settings.json."""

    model_name: str
    model_dir: Path
    """The SavedModel version folder."""
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    parallel_workers: int
    max_batch_size: int
    max_batch_time_s: float


def server_settings(options: ServerOptions, prefix: Path) -> dict[str, Any]:
    """settings.json: every listener on ``host``, debug off (no tracebacks in answers, no
    access log), metrics on their own port, Kafka and tracing off."""
    return {
        "debug": False,
        "host": options.host,
        "http_port": options.http_port,
        "grpc_port": options.grpc_port,
        "metrics_port": options.metrics_port,
        "metrics_endpoint": "/metrics",
        "metrics_dir": str(prefix / "metrics"),
        "environments_dir": str(prefix / "envs"),
        "parallel_workers": options.parallel_workers,
        "load_models_at_startup": True,
        "kafka_enabled": False,
        "tracing_server": None,
    }


def model_settings(options: ServerOptions) -> dict[str, Any]:
    """model-settings.json: the custom runtime, adaptive batching (off when
    ``max_batch_time_s`` is 0 or ``max_batch_size`` is 1), the model's folder."""
    return {
        "name": options.model_name,
        "implementation": RUNTIME,
        "max_batch_size": options.max_batch_size,
        "max_batch_time": options.max_batch_time_s,
        "parameters": {"uri": str(options.model_dir)},
    }


def write(prefix: Path, options: ServerOptions) -> Path:
    """Empty ``prefix`` (private) and write both files in it; returns the folder to start."""
    if prefix.exists():
        shutil.rmtree(prefix)
    prefix.mkdir(parents=True, mode=0o700)
    os.chmod(prefix, 0o700)
    model = prefix / options.model_name
    model.mkdir(mode=0o700)
    (prefix / SETTINGS_FILE).write_text(json.dumps(server_settings(options, prefix), indent=2))
    (model / MODEL_SETTINGS_FILE).write_text(json.dumps(model_settings(options), indent=2))
    return prefix
