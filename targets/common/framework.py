"""What kinds serving the model with another framework's server share (MLServer, KServe, Ray
Serve, BentoML, LitServe).

* **Their own environment.** A framework whose dependencies clash with the project's pins
  lives in ``VENV/<kind>`` (made by ``targets/<kind>/setup.sh``, which ``make setup`` calls):
  a venv of the same interpreter that sees the project's packages (TensorFlow) through a .pth
  file, after its own. :func:`framework_python` finds its interpreter (inside a container too:
  the image's ``/opt/venv``), :func:`require_environment` says how to make it when missing.
* **The Open Inference Protocol (v2)**, over HTTP and gRPC: :class:`V2ServerConfig` has the
  knobs every such target has (client API, gRPC port, model name, body limit) and
  :class:`V2FrameworkKind` what the harness derives from them: the endpoint, the ports, the
  readiness checks (the model's own ready path: a server's ``/v2/health/ready`` may answer
  before its model is loaded), and one process, ``python -m targets.<kind>.launch ARGS`` in the
  kind's environment, whose arguments each kind gives (:meth:`V2FrameworkKind.launch_args`).
* **servecap's model runner behind a framework's own API** (Ray Serve, BentoML, LitServe:
  :mod:`targets.common.runner`): :class:`FrameworkConfig` has their request limits and batching
  switch, :func:`framework_server_env` makes their servers' ``SERVECAP_*`` settings plus the
  kind's own settings model (variable names derived from field names, never typed twice).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field
from pydantic_settings import BaseSettings

from targets.common.launch import base_env
from targets.common.model_files import ModelNotFoundError, version_dir
from targets.common.settings import DEFAULT_MAX_BODY_BYTES, ServerSettings, settings_env
from targets.config import ModelConfig, TargetConfig
from targets.inputs import CNN_MODEL_NAME
from targets.kind import ModelKind
from targets.launch_types import (
    HOST,
    LaunchError,
    Placement,
    Probe,
    ProcessSpec,
    resolve_model_path,
)
from targets.protocols.base import Endpoint
from targets.protocols.v2 import model_ready_path


def framework_env(kind: str) -> Path:
    """``VENV/<kind>``: the kind's environment, inside this interpreter's venv."""
    return Path(sys.prefix) / kind


def framework_python(kind: str) -> Path:
    return framework_env(kind) / "bin" / "python"


def require_environment(target: str, kind: str) -> Path:
    """The interpreter of ``kind``'s environment; LaunchError saying how to make it."""
    python = framework_python(kind)
    if not python.exists():
        raise LaunchError(
            f"target '{target}': {kind} runs in its own environment {python.parent.parent}, "
            f"which is missing: run `make setup` (or `bash targets/{kind}/setup.sh "
            f"{sys.prefix}`)"
        )
    return python


class V2ServerConfig(ModelConfig):
    """A framework's model server speaking v2 over HTTP (``port``) and gRPC."""

    api: Literal["rest", "grpc"] = Field(
        default="rest", description="the load generator's API: HTTP (rest) or gRPC"
    )
    grpc_port: int | None = Field(
        default=None, ge=1024, le=65535, description="gRPC port; default port+1"
    )
    model_name: str = Field(
        default=CNN_MODEL_NAME, pattern=r"^[A-Za-z0-9_.-]+$", description="the served model"
    )
    max_body_bytes: int = Field(
        default=DEFAULT_MAX_BODY_BYTES, ge=1024, le=1024**3,
        description="larger request bodies get 413 (the framework would read any size)",
    )  # fmt: skip

    @property
    def v2_grpc_port(self) -> int:
        return self.grpc_port or self.port + 1


class V2FrameworkKind(ModelKind):
    """A kind whose framework serves the model over v2, as one process in its environment."""

    rest_protocol: ClassVar[str] = "v2-rest"
    """The client protocol over HTTP (gRPC is ``v2-grpc``)."""

    def launch_args(
        self, name: str, config: V2ServerConfig, model: Path, placement: Placement
    ) -> tuple[str, ...]:
        """The arguments of ``python -m targets.<kind>.launch`` serving ``model`` (a version
        folder)."""
        raise NotImplementedError

    def endpoint(self, config: TargetConfig) -> Endpoint:
        assert isinstance(config, V2ServerConfig)
        return Endpoint(
            protocol="v2-grpc" if config.api == "grpc" else self.rest_protocol,
            base_url=config.base_url,
            grpc_target=f"127.0.0.1:{config.v2_grpc_port}",
            model_name=config.model_name,
        )

    def process_plan(
        self, name: str, config: TargetConfig, placement: Placement = HOST
    ) -> list[ProcessSpec]:
        assert isinstance(config, V2ServerConfig)
        python = require_environment(name, self.name)
        try:
            model = version_dir(resolve_model_path(config))
        except ModelNotFoundError as err:
            raise LaunchError(f"target '{name}': {err}") from None
        module = f"targets.{self.name}.launch"
        argv = (str(python), "-m", module, *self.launch_args(name, config, model, placement))
        ready = f"{config.base_url}{model_ready_path(config.model_name)}"
        env = {**base_env(), **config.env}
        return [ProcessSpec(name=name, role=self.name, argv=argv, env=env, ready_url=ready)]

    def ports(self, config: TargetConfig) -> dict[str, tuple[str, int]]:
        assert isinstance(config, V2ServerConfig)
        return {"port": (config.host, config.port),
                "grpc_port": (config.host, config.v2_grpc_port)}  # fmt: skip

    def readiness(self, config: TargetConfig) -> list[Probe]:
        assert isinstance(config, V2ServerConfig)
        ready = f"{config.base_url}{model_ready_path(config.model_name)}"
        return [Probe(url=ready), Probe(tcp_port=config.v2_grpc_port)]


class FrameworkConfig(ModelConfig):
    """A target whose framework serves servecap's model runner: request limits, batching."""

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


def framework_server_env(
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


def missing_module(target: str, module: str, what: str) -> str | None:
    """Why this interpreter cannot import ``module`` (None when it can), for a kind whose
    framework is pinned in the project venv."""
    if importlib.util.find_spec(module) is None:
        return (f"target '{target}': {what} is not installed in {sys.prefix}: run `make setup` "
                "(pip install -e .)")  # fmt: skip
    return None
