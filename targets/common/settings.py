"""Runtime settings every Python target reads from ``SERVECAP_*`` environment variables.

The launchers (process or Docker) derive these from the target's entry in scenarios.yaml
with :func:`settings_env`: variable names come from the settings models' field names plus
their prefix, as pydantic-settings reads them, so no variable name is typed twice. Invalid
values stop the server at start with a message naming the variable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from targets.inputs import CNN_MODEL_NAME

DEFAULT_MODEL_PATH = Path("artifacts/models") / CNN_MODEL_NAME
"""Where ``servecap model train`` exports the paper's CNN (a SavedModel base)."""
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
"""The largest request body a target reads (nginx, the Python servers, the forwarders)."""
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's multiprocess folder: set, a server sums its worker processes' metrics."""


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SERVECAP_", extra="ignore")

    model_path: Path = Field(
        default=DEFAULT_MODEL_PATH,
        description="SavedModel base (TF Serving layout) or a version directory",
    )
    max_works: int = Field(
        default=0, ge=0, description="inferences in flight per worker process; 0 = unlimited"
    )
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    max_batch: int = Field(default=256, ge=1, le=4096)
    max_decodes: int = Field(
        default=2, ge=1, le=64, description="request bodies decoded at once per worker process"
    )
    retry_after_s: int = Field(default=1, ge=0, description="Retry-After sent with 503")
    batch_max: int = Field(
        default=0, ge=0, le=1024, description="dynamic batching: images per model call; 0 = off"
    )
    batch_timeout_ms: float = Field(
        default=2.0, ge=0, le=1000, description="dynamic batching: longest wait for more"
    )
    input_shape: tuple[int, int, int] = Field(
        default=(32, 32, 3), description="the model's image: height, width, channels"
    )
    input_range: tuple[float, float] = Field(
        default=(0.0, 255.0), description="what pixel values 0 and 255 become (float input)"
    )


def env_name(settings: type[BaseSettings], field: str) -> str:
    """The environment variable pydantic-settings reads ``field`` of ``settings`` from."""
    if field not in settings.model_fields:
        raise KeyError(f"{settings.__name__} has no setting {field!r}")
    prefix = str(settings.model_config.get("env_prefix", ""))
    return f"{prefix}{field}".upper()


def settings_env(settings: type[BaseSettings], values: Mapping[str, Any]) -> dict[str, str]:
    """``values`` (field name -> value; None left out) as the environment ``settings`` reads.

    Strings, numbers and paths as text, booleans as ``true``/``false``, lists and mappings as
    JSON (how pydantic-settings parses complex fields).
    """
    env: dict[str, str] = {}
    for field, value in values.items():
        if value is None:
            continue
        env[env_name(settings, field)] = _env_value(value)
    return env


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return str(value)
