"""What the serving-framework kinds (``ray-serve``, ``bentoml``, ``litserve``...) share on the
host side: their common config fields, their servers' environment, where their Python is.

Their servers run :class:`targets.common.runner.ModelRunner` behind the framework's own API;
it reads the ``SERVECAP_*`` settings (:class:`~targets.common.settings.ServerSettings`) made
here from the target's config, plus the framework's own knobs as a settings model of the kind
(variable names derived from field names, never typed twice).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings

from targets.common.launch import base_env
from targets.common.settings import DEFAULT_MAX_BODY_BYTES, ServerSettings, settings_env
from targets.config import ModelConfig
from targets.registry import resolve_model_path

SETUP_FIX = "run `make setup` (pip install -e . and targets/*/setup.sh)"


class FrameworkConfig(ModelConfig):
    """A target served by a framework's own server: its request limits and batching."""

    max_batch_size: int = Field(
        default=1, ge=1, le=1024,
        description="server-side batching: the most requests the framework puts in one model "
        "call; 1 = off, each request is one model call",
    )  # fmt: skip
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024, le=1024**3)
    max_batch: int = Field(
        default=256, ge=1, le=4096, description="largest batch (images) a request may carry"
    )
    timeout_s: float = Field(
        default=30.0, gt=0, le=3600,
        description="the framework's request timeout: a request unanswered by then is refused",
    )  # fmt: skip


def framework_env(
    config: FrameworkConfig,
    own: type[BaseSettings] | None = None,
    values: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """A framework server's environment: the model's ``SERVECAP_*`` settings, the kind's own
    settings model ``own`` with ``values``, then the target's ``env`` on top."""
    from targets.registry import get_kind

    spec = get_kind(config.kind).input_spec(config)
    model = settings_env(ServerSettings, {
        "model_path": resolve_model_path(config), "max_body_bytes": config.max_body_bytes,
        "max_batch": config.max_batch, "input_shape": list(spec.shape),
        "input_range": list(spec.range),
    })  # fmt: skip
    kind = settings_env(own, values or {}) if own is not None else {}
    return {**base_env(), **model, **kind, **config.env}


def missing_module(module: str, what: str) -> str | None:
    """Why ``module`` cannot be imported by this interpreter (None when it can)."""
    if importlib.util.find_spec(module) is None:
        return f"{what} is not installed in {sys.prefix}; {SETUP_FIX}"
    return None


def kind_env(name: str) -> Path:
    """A kind's own environment (made by its setup.sh), inside this interpreter's venv (in a
    container too: the image's)."""
    return Path(sys.prefix) / name


def missing_env(name: str) -> str | None:
    """Why the kind's own environment cannot run (None when it can)."""
    if not (kind_env(name) / "bin" / "python").exists():
        return f"{name}'s environment {kind_env(name)} is missing; {SETUP_FIX}"
    return None
