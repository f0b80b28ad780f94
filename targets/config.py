"""Declarative configuration of one serving target, as written under ``targets:`` in scenarios.yaml.

This is the target side of the scenario file: what to start and how. Every target has the
fields of :class:`TargetConfig`; each kind adds its own in its folder
(``targets/<kind>/kind.py``), on top of :class:`ModelConfig` (kinds that serve a SavedModel)
or :class:`PythonServerConfig` (servecap's own Python servers). Validating a mapping as a
``KindConfig`` (:mod:`targets.registry`) picks the kind's model by its ``kind`` key, so a
key another kind would take is refused with the keys this kind allows.

The launchers (``targets.launchers``) turn a config into running processes or containers;
the servers read their runtime settings from ``SERVECAP_*`` variables derived from it
(:func:`targets.common.settings.settings_env`).
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from targets.common.model_fetch import DEFAULT_MAX_BYTES, check_url
from targets.common.settings import DEFAULT_MAX_BODY_BYTES, DEFAULT_MODEL_PATH
from targets.inputs import InputConfig

TARGET_NAME_RULE = (
    "a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or "
    "digit, at most 63 characters"
)
_TARGET_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def check_target_name(name: object, what: str = "target") -> str:
    """``name`` when it may name a target (or a scenario: ``what``); ValueError with the rule
    otherwise. A target's name becomes a results folder, YAML keys, container and Kubernetes
    object names, a scenario's a results folder: nothing else is safe in all of them
    (``../run/x`` is a path, a newline a new YAML key)."""
    if isinstance(name, str) and _TARGET_NAME.fullmatch(name):
        return name
    raise ValueError(f"{what} name {name!r} is not {TARGET_NAME_RULE}")


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` when every entry can be one ``KEY=VALUE`` line of an env file (Compose's, a
    Kubernetes Secret's...): keys are variable names, values hold no CR, LF or NUL (a line
    break would start a second variable, e.g. a second SERVECAP_TARGET_CONFIG_B64=).
    ValueError naming the entry otherwise."""
    for key, value in env.items():
        if not _ENV_NAME.fullmatch(key):
            raise ValueError(f"env key {key!r} is not a variable name: letters, digits and '_', "
                             "not starting with a digit")  # fmt: skip
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"env value of {key} holds a line break or NUL: one line each")
    return env


TargetName = Annotated[str, AfterValidator(check_target_name)]
"""A target's name (scenario files, CLI arguments): :func:`check_target_name`."""
ScenarioName = Annotated[str, AfterValidator(lambda name: check_target_name(name, "scenario"))]
"""A scenario's name: the same rule (it names results folders)."""


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
                    + cls._unknown_key_advice()
                )
        return data

    @classmethod
    def _unknown_key_advice(cls) -> str:
        return ""


class TargetConfig(StrictModel):
    """What every target has, whatever its kind: where it listens, how it runs as containers.

    A mapping becomes the config model of its kind (a subclass of this one) through the
    registry: :func:`targets.registry.target_config`, or a field typed
    :data:`targets.registry.KindConfig`. This module knows no kind.
    """

    kind: str = Field(description="serving stack: a folder under targets/ (or a plugin kind)")

    @classmethod
    def _unknown_key_advice(cls) -> str:
        """Validated as the bare base, a kind's own keys are unknown: say how to validate."""
        if cls is TargetConfig:
            return (" (the keys every kind has: validate a target with "
                    "targets.registry.target_config(**mapping) for its kind's own)")  # fmt: skip
        return ""

    host: str = Field(
        default="127.0.0.1",
        description="address the target binds; loopback unless you mean otherwise",
    )
    port: int = Field(default=8101, ge=1024, le=65535, description="port the client talks to")
    ready_timeout_s: float = Field(default=120.0, gt=0)
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
        "(SO_REUSEPORT; kinds that cannot share a port refuse more than one)",
    )
    cpus: float | None = Field(
        default=None, gt=0, description="docker: CPU quota per model-serving container, in cores"
    )
    cpu_period_ms: float | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="docker: the CFS period `cpus` is enforced over, in ms (Docker's and "
        "Kubernetes' default 100). A small quota over a long period holds a throttled request "
        "up to (1 - cpus) x the period; a shorter one spreads it. Kubernetes sets it per node "
        "(the kubelet's cpuCFSQuotaPeriod): a plan measured with it assumes those nodes",
    )
    cpuset: str | None = Field(
        default=None,
        pattern=r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$",
        description="CPUs every process or container of the target may run on, e.g. '0-1'",
    )
    gpu: bool = Field(
        default=False, description="docker: reserve all GPUs (docker-compose.gpu.yml)"
    )
    image_tag: str | None = Field(
        default=None, description="docker: tag of the servecap images (default latest)"
    )
    compose_service: str | None = Field(
        default=None, description="docker: profile in docker-compose.yml (defaults to the kind)"
    )
    env: dict[str, str] = Field(default_factory=dict, description="extra environment")
    input: InputConfig = Field(
        default_factory=InputConfig,
        description="the model's input where its signature does not say it (range) or to "
        "check it (shape, dtype); images are resized to it",
    )

    @field_validator("env")
    @classmethod
    def _env_lines(cls, env: dict[str, str]) -> dict[str, str]:
        return check_env(env)

    @model_validator(mode="after")
    def _period_needs_quota(self) -> TargetConfig:
        if self.cpu_period_ms is not None and self.cpus is None:
            raise ValueError("cpu_period_ms is the period of a CPU quota: set cpus too "
                             "(e.g. cpus: 0.33, cpu_period_ms: 10)")  # fmt: skip
        return self

    @property
    def base_url(self) -> str:
        """Where the load generator sends requests: always a loopback address."""
        return loopback_url(self.host, self.port)


UPSTREAM_PORT_OFFSET = 2
"""A target's second tier listens on ``port`` + this unless ``upstream_port`` says otherwise."""


class UpstreamConfig(TargetConfig):
    """A target whose front talks to a second tier on loopback: a chain's model server, the
    job queue's Redis."""

    upstream_port: int | None = Field(
        default=None, ge=1024, le=65535,
        description="port of the tier behind the front (a chain's model server, the job "
        f"queue's Redis); default port+{UPSTREAM_PORT_OFFSET}",
    )  # fmt: skip

    @property
    def model_port(self) -> int:
        """Where the second tier listens (on 127.0.0.1)."""
        return self.upstream_port or self.port + UPSTREAM_PORT_OFFSET


class ModelConfig(TargetConfig):
    """A target serving the SavedModel at ``model_path`` (or fetched from ``model_url``)."""

    model_path: str = Field(
        default=str(DEFAULT_MODEL_PATH),
        description="SavedModel base (TF Serving layout) or one version directory",
    )
    model_url: str | None = Field(
        default=None,
        description="model-load pattern: the launcher fetches this .tar.gz SavedModel archive "
        "(https://, or file:// for a local one) at start and serves it instead of model_path",
    )
    model_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="SHA-256 of the model_url archive (required with it: `sha256sum FILE`)",
    )
    model_max_mb: int = Field(
        default=DEFAULT_MAX_BYTES // 2**20, ge=1, le=1024 * 1024,
        description="model_url: the largest archive downloaded, and the most unpacked from it",
    )  # fmt: skip
    model_in_image: bool = Field(
        default=False,
        description="docker: run the <image>:<tag>-model images (servecap images build "
        "--model DIR) instead of mounting model_path",
    )

    @field_validator("model_url")
    @classmethod
    def _safe_scheme(cls, url: str | None) -> str | None:
        problem = check_url(url) if url is not None else None
        if problem is not None:
            raise ValueError(problem)
        return url

    @model_validator(mode="after")
    def _url_needs_digest(self) -> ModelConfig:
        if self.model_url is not None and self.model_sha256 is None:
            raise ValueError(
                "model_url needs model_sha256, the archive's SHA-256 (`sha256sum model.tar.gz`):"
                " a fetched model is used only if it is exactly the archive you meant"
            )
        if self.model_url is not None and self.model_in_image:
            raise ValueError("set model_url or model_in_image, not both")
        return self


class PythonServerConfig(ModelConfig):
    """servecap's own Python servers (targets.common.service): workers and admission."""

    workers: int = Field(default=1, ge=1, le=64, description="server worker processes")
    threads: int = Field(default=1, ge=1, le=64, description="threads per worker (gunicorn)")
    max_works: int = Field(
        default=0,
        ge=0,
        le=100_000,
        description="inferences in flight per worker before answering 503 (jobqueue: jobs "
        "waiting in the queue, whole target); 0 = no limit",
    )
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024, le=1024**3)
    max_batch: int = Field(
        default=256, ge=1, le=4096, description="largest batch a request may carry"
    )


class InferenceServerConfig(PythonServerConfig):
    """A Python server running the model in its own processes (targets.common.service)."""

    batch_max: int = Field(
        default=0,
        ge=0,
        le=1024,
        description="dynamic batching: the most images one model call takes from concurrent "
        "requests (per worker process); 0 = off, each request is one model call",
    )
    batch_timeout_ms: float = Field(
        default=2.0,
        ge=0,
        le=1000,
        description="dynamic batching: the longest a batch waits for more requests, only "
        "while others are in flight",
    )


def parse_cpuset(spec: str) -> list[int]:
    """``"0"``, ``"0,2"`` or ``"0-3"`` -> CPU indices (the cpuset/taskset notation)."""
    cpus: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ValueError(f"cpuset '{spec}' is not like '0', '0,2' or '0-3'")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def loopback_url(host: str, port: int) -> str:
    """The URL the harness uses to reach a server bound to ``host:port``: always loopback."""
    return f"http://{'[::1]' if host == '::1' else '127.0.0.1'}:{port}"
