"""Declarative configuration of one serving target, as written under ``targets:`` in scenarios.yaml.

This is the target side of the scenario file: what to start and how. The launchers
(``targets.launchers``) turn a :class:`TargetConfig` into running processes or containers;
the servers themselves read their runtime settings from ``SERVECAP_*`` environment variables
(:mod:`targets.common.settings`), which the launchers derive from this config.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TargetKind = Literal[
    "fastapi",
    "flask",
    "django-embedded",
    "django-to-flask",
    "django-to-fastapi",
    "django-to-tfserving",
    "tfserving",
    "jobqueue",
]
"""Serving stacks. Each kind is a folder ``targets/<kind with _>/`` with a ``launch`` module."""

Client = Literal["predict", "tfserving-rest", "tfserving-grpc", "jobqueue"]
"""How the load generator talks to a kind (see :attr:`TargetConfig.client`)."""

Encoding = Literal["json", "base64", "jpeg"]


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are refused with the allowed keys listed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = set(cls.model_fields)
            unknown = [k for k in data if k not in allowed]
            if unknown:
                key = str(unknown[0])
                close = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ValueError(
                    f"unknown key '{key}'{hint}; allowed keys here: {', '.join(sorted(allowed))}"
                )
        return data


class TargetConfig(StrictModel):
    """One serving target: a serving stack plus its knobs."""

    kind: TargetKind = Field(description="serving stack; a folder under targets/")
    host: str = Field(
        default="127.0.0.1",
        description="address the target binds; loopback unless you mean otherwise",
    )
    port: int = Field(default=8101, ge=1024, le=65535, description="port the client talks to")
    workers: int = Field(default=1, ge=1, le=64, description="server worker processes")
    max_works: int = Field(
        default=0,
        ge=0,
        description="inferences in flight per worker before answering 503 (jobqueue: jobs "
        "waiting in the queue, whole target); 0 = no limit",
    )
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_batch: int = Field(default=256, ge=1, description="largest batch a request may carry")
    model_path: str = Field(
        default="artifacts/models/cifar10_cnn",
        description="SavedModel base (TF Serving layout) or one version directory",
    )
    threads: int = Field(default=1, ge=1, le=64, description="threads per worker (gunicorn)")
    internal_port: int | None = Field(
        default=None,
        ge=1024,
        le=65535,
        description="app server port behind nginx (django kinds); default port+1",
    )
    upstream_port: int | None = Field(
        default=None,
        ge=1024,
        le=65535,
        description="model server (chains) or Redis (jobqueue) port; default port+2",
    )
    grpc_port: int | None = Field(
        default=None, ge=1024, le=65535, description="TF Serving gRPC port; default port+3"
    )
    api: Literal["rest", "grpc"] = Field(
        default="rest", description="tfserving: which API the load generator uses"
    )
    batching: str | None = Field(
        default=None,
        description="tfserving: batching parameters file in targets/tfserving/batching/",
    )
    queue_workers: int = Field(default=2, ge=1, le=64, description="jobqueue: worker processes")
    job_batch_max: int = Field(
        default=8, ge=1, le=256, description="jobqueue: queued jobs a worker runs as one batch"
    )
    model_url: str | None = Field(
        default=None,
        description="model-load pattern: fetch the model archive from this URL at start",
    )
    memory_limit_mb: int | None = Field(
        default=None,
        ge=64,
        description="memory limit: the container's mem_limit; for processes the harness "
        "stops the target when its tree's RSS exceeds it",
    )
    replicas: int = Field(
        default=1,
        ge=1,
        le=16,
        description="docker: containers of the model-serving service, sharing the port "
        "(SO_REUSEPORT; not TF Serving, not jobqueue: use queue_workers)",
    )
    cpus: float | None = Field(
        default=None, gt=0, description="docker: CPU quota per model-serving container, in cores"
    )
    cpuset: str | None = Field(
        default=None,
        pattern=r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$",
        description="docker: CPUs every container of the target may run on, e.g. '0-1'",
    )
    gpu: bool = Field(
        default=False, description="docker: reserve all GPUs (docker-compose.gpu.yml)"
    )
    image_tag: str | None = Field(
        default=None, description="docker: tag of the servecap images (default latest)"
    )
    model_in_image: bool = Field(
        default=False,
        description="docker: run the <image>:<tag>-model images (servecap images build "
        "--model DIR) instead of mounting model_path",
    )
    ready_timeout_s: float = Field(default=120.0, gt=0)
    compose_service: str | None = Field(
        default=None, description="service in docker-compose.yml (defaults to the kind)"
    )
    env: dict[str, str] = Field(default_factory=dict, description="extra environment")

    @property
    def app_port(self) -> int:
        return self.internal_port or self.port + 1

    @property
    def model_port(self) -> int:
        return self.upstream_port or self.port + 2

    @property
    def tf_grpc_port(self) -> int:
        return self.grpc_port or self.port + 3

    @property
    def client(self) -> Client:
        if self.kind == "tfserving":
            return "tfserving-grpc" if self.api == "grpc" else "tfserving-rest"
        if self.kind == "jobqueue":
            return "jobqueue"
        return "predict"

    @property
    def base_url(self) -> str:
        """Where the load generator sends requests: always a loopback address."""
        return loopback_url(self.host, self.port)


def loopback_url(host: str, port: int) -> str:
    """The URL the harness uses to reach a server bound to ``host:port``: always loopback."""
    return f"http://{'[::1]' if host == '::1' else '127.0.0.1'}:{port}"
