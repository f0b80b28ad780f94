"""What kinds serving the model with another framework's server share (MLServer, KServe).

* **Their own environment.** A framework whose dependencies clash with the project's pins
  lives in ``VENV/<kind>`` (made by ``targets/<kind>/setup.sh``, which ``make setup`` calls):
  a venv of the same interpreter that sees the project's packages (TensorFlow) through a .pth
  file, after its own. :func:`framework_python` finds its interpreter (inside a container too:
  the image's ``/opt/venv``), :func:`require_environment` says how to make it when missing.
* **The Open Inference Protocol (v2)**, over HTTP and gRPC: :class:`V2ServerConfig` has the
  knobs every such target has (client API, gRPC and metrics ports, model name, body limit) and
  :func:`v2_endpoint` / :func:`v2_ports` / :func:`v2_readiness` what the harness derives from
  them. Readiness is the model's own ready path: a server's ``/v2/health/ready`` may answer
  before its model is loaded.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import Field

from targets.common.settings import DEFAULT_MAX_BODY_BYTES
from targets.config import ModelConfig
from targets.inputs import CNN_MODEL_NAME
from targets.launch_types import LaunchError, Probe
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


def v2_endpoint(config: V2ServerConfig, rest_protocol: str = "v2-rest") -> Endpoint:
    """Where clients reach the model: ``rest_protocol`` over HTTP, or v2 gRPC."""
    return Endpoint(
        protocol="v2-grpc" if config.api == "grpc" else rest_protocol,
        base_url=config.base_url,
        grpc_target=f"127.0.0.1:{config.v2_grpc_port}",
        model_name=config.model_name,
    )


def v2_ports(config: V2ServerConfig) -> dict[str, tuple[str, int]]:
    return {"port": (config.host, config.port),
            "grpc_port": (config.host, config.v2_grpc_port)}  # fmt: skip


def v2_ready_url(config: V2ServerConfig) -> str:
    return f"{config.base_url}{model_ready_path(config.model_name)}"


def v2_readiness(config: V2ServerConfig) -> list[Probe]:
    return [Probe(url=v2_ready_url(config)), Probe(tcp_port=config.v2_grpc_port)]
