"""What a serving stack declares about itself: the interface of ``targets/<kind>/kind.py``.

A kind is one folder holding everything about one serving stack, and one object, ``KIND``,
in its ``kind.py`` that says, for the rest of servecap:

* its configuration model (the keys a target of this kind takes in scenarios.yaml);
* how it starts as processes (:meth:`Kind.process_plan`): the one command definition, used
  by the process launcher and, inside containers, by ``targets.docker.entrypoint serve``;
* its ports, its readiness checks, its container services (a profile of
  docker-compose.yml) and the compose variables it sets, the images it builds;
* the protocol the load generator and ``verify`` speak to it (:mod:`targets.protocols`);
* its label in the paper's tables, if it has one.

Launchers, the orchestrator, the Locust users, image builds and analysis ask the registry
(:mod:`targets.registry`) for a kind and then only call this interface. Adding a kind is
adding a folder; a kind outside the repository is found through ``SERVECAP_KIND_PATH``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from targets.config import ModelConfig, TargetConfig
from targets.inputs import InputSpec
from targets.launch_types import (
    CONTAINER,
    HOST,
    LaunchError,
    Placement,
    Probe,
    ProcessSpec,
    resolve_model_path,
)
from targets.protocols.base import Endpoint
from targets.protocols.servecap import HEALTH_PATH

# The plain types of targets.launch_types a kind uses, re-exported as part of its interface.
__all__ = [
    "CONTAINER",
    "HOST",
    "Containers",
    "Image",
    "Kind",
    "LaunchError",
    "MetricsSource",
    "ModelKind",
    "PaperArchitecture",
    "Placement",
    "Probe",
    "ProcessSpec",
]


@dataclass(frozen=True)
class MetricsSource:
    """Where a target's server-side metrics are (Prometheus text format), and which samples
    mean what. Counters are cumulative; the harness records them at its sampling interval
    and reads each stage's differences (``analysis.server_metrics``)."""

    url: str
    requests: str
    """Counter: requests that reached the model."""
    inferences: str
    """Counter: rows (images) the model ran."""
    executions: str
    """Counter: model calls (so inferences / executions is the mean batch size)."""
    queue_time: str | None = None
    """Counter: per-request waits before the model, summed (None: the server does not say)."""
    model_time: str | None = None
    """Counter: per-request model time, summed (None: the server does not say)."""
    time_unit_s: float = 1.0
    """Seconds per unit of the two time counters (Triton counts microseconds)."""
    in_flight: str | None = None
    """Gauge: requests in the server now."""


@dataclass(frozen=True)
class Containers:
    """The kind's services in docker-compose.yml (its compose profile has the kind's name)."""

    services: tuple[str, ...]
    """Every service the profile starts, the model-serving one first."""
    scalable: bool = True
    """Whether replicas of the first service can share the target's port (SO_REUSEPORT)."""

    @property
    def primary(self) -> str:
        """The model-serving service: replicas, cpus and memory limits apply to it."""
        return self.services[0]


@dataclass(frozen=True)
class Tier:
    """Services deployed together (``servecap plan --kubernetes``): one Deployment whose pods
    each hold them all, reaching each other on the pod's loopback; other tiers are reached
    through their Services."""

    name: str
    """Its Deployment and Service: the target's name ("") or ``<target>-<name>``."""
    services: tuple[str, ...]
    per_replica: int = 1
    """How many of it one measured replica of the target held: its pods are scaled from the
    target's measured capacity divided by that (the job queue's workers: ``queue_workers``);
    0: one for the whole target, never scaled (it holds the target's state: Redis)."""
    ports: tuple[tuple[str, int], ...] = ()
    """(name, port) that its first service listens on and its Service exposes (none: none)."""
    probe: Probe | None = None
    """The first service's readiness."""
    volume: tuple[str, int | None] | None = None
    """(mount path, MiB) of its own data, kept across restarts (a StatefulSet's claim); MiB
    None: scratch space only (an emptyDir)."""


def deployed_name(target: str, tier: str) -> str:
    """The Deployment and Service name of a target's tier."""
    return f"{target}-{tier}" if tier else target


@dataclass(frozen=True)
class Image:
    """A servecap image built from a Dockerfile in the kind's folder (FROM the runtime image)."""

    name: str
    dockerfile: str = "Dockerfile"
    wheels: tuple[str, ...] = ()
    """Requirement files (in the kind's folder) whose packages the Dockerfile installs without
    their dependencies: an offline build downloads them into the wheelhouse (``--no-deps``)
    and serves it to the build as ``WHEELS_URL``."""


@dataclass(frozen=True)
class PaperArchitecture:
    """Where a kind sits among the paper's four architectures (Tables 3 and 4)."""

    name: str
    """``embedded``, ``Flask API``, ``FastAPI`` or ``TF Serving`` (analysis.paper)."""
    same_path: bool
    """True when the request path is the paper's (nginx -> Gunicorn -> Django -> ...)."""


class Kind:
    """One serving stack; ``targets/<kind>/kind.py`` binds an instance of a subclass to KIND.

    Defaults describe the simplest kind: one process answering servecap's predict API with
    ``/healthz`` for readiness on ``config.port``.
    """

    name: ClassVar[str] = ""
    """The ``kind:`` value in scenarios.yaml."""
    config_model: ClassVar[type[TargetConfig]] = TargetConfig
    description: ClassVar[str] = ""
    paper: ClassVar[PaperArchitecture | None] = None
    containers: ClassVar[Containers | None] = None
    """None: the kind has no container services (process launcher only)."""
    images: ClassVar[tuple[Image, ...]] = ()
    """Images built from Dockerfiles in the kind's folder (FROM the runtime image)."""
    official_images: ClassVar[dict[str, str]] = {}
    """Images of others its containers run, by a short name (pulled, never built; their
    model-in-image variants, ``servecap/<name>:<tag>-model``, are built by ``servecap images
    build --model``)."""
    health_path: ClassVar[str] = HEALTH_PATH
    runs_as_processes: ClassVar[bool] = True
    """False for stacks that ship only as container images (TF Serving)."""
    part_roles: ClassVar[dict[str, str]] = {}
    """Fault parts (``loadtests.faults``) named as an SRE would (``worker``, ``web``,
    ``redis``) -> the kind's process roles / container services; ``model-server`` is always
    the model-serving role (:attr:`Containers.primary`)."""
    launcher: ClassVar[str | None] = None
    """The launcher its targets always use, whatever ``--launcher`` says (``external``: a
    server servecap does not start); None: the one the run chooses."""
    folder: Path = Path()
    """Set by the registry: the kind's folder (Dockerfiles are looked up there)."""

    # ------------------------------------------------------------------ the load side

    def endpoint(self, config: TargetConfig) -> Endpoint:
        """Where and in which protocol the load generator and verify talk to the target
        (:mod:`targets.protocols`). Its ``input`` is filled in by the registry
        (:func:`targets.registry.endpoint_for`, from :meth:`input_spec`)."""
        return Endpoint(protocol="servecap", base_url=config.base_url)

    def input_spec(self, config: TargetConfig) -> InputSpec:
        """What the target's model takes: the target's ``input:`` over the default (the
        paper's CNN). Kinds that serve a model read its signature."""
        return config.input.spec()

    # ------------------------------------------------------------------ starting

    def unsupported(self, launcher: str) -> str | None:
        """Why the kind cannot run with ``launcher`` at all (None when it can)."""
        if launcher == "process" and not self.runs_as_processes:
            return f"{self.name} runs only as containers (--launcher docker)"
        if launcher == "docker" and self.containers is None:
            return f"{self.name} has no container services in docker-compose.yml"
        return None

    def process_plan(
        self, name: str, config: TargetConfig, placement: Placement = HOST
    ) -> list[ProcessSpec]:
        """The processes to start, in order, each ready before the next starts."""
        raise LaunchError(
            f"target '{name}' ({self.name}) has no process plan: it runs only as containers "
            "(--launcher docker)"
        )

    def launch_env(self, config: TargetConfig) -> dict[str, str]:
        """Variables made afresh for each launch (passwords), given to every process and
        container of that launch; launchers keep them out of logs and results."""
        return {}

    def ports(self, config: TargetConfig) -> dict[str, tuple[str, int]]:
        """Every port the target binds, by its config field: (host, port). All must be free."""
        return {"port": (config.host, config.port)}

    def readiness(self, config: TargetConfig) -> list[Probe]:
        """What must answer, from the host, before the target counts as ready (containers)."""
        return [Probe(url=f"{config.base_url}{self.health_path}")]

    def metrics(self, config: TargetConfig) -> MetricsSource | None:
        """The target's server-side metrics, when it exposes them (scraped during a run)."""
        return None

    def problems(self, name: str, config: TargetConfig) -> list[str]:
        """What stops the target from starting with any launcher (checked before a run)."""
        return []

    # ------------------------------------------------------------------ containers

    def compose_env(self, config: TargetConfig) -> dict[str, str]:
        """The kind's own variables of docker-compose.yml (ports, sizes), from its config."""
        return {}

    def scales(self, config: TargetConfig) -> dict[str, int]:
        """``--scale`` counts of services other than the replicated primary one."""
        return {}

    def compose_overrides(self, config: TargetConfig) -> dict[str, dict[str, Any]]:
        """Per service, fields that no ``${VARIABLE}`` can carry (a command given as a list):
        the Docker launcher writes them to an override file beside the launch's logs."""
        return {}

    # ------------------------------------------------------------------ deployed

    def tiers(self, config: TargetConfig) -> tuple[Tier, ...]:
        """How the kind is deployed (Kubernetes): by default one tier, every container
        service in one pod, scaled by the plan, on the target's ports (and gRPC port), ready
        by its first readiness check."""
        assert self.containers is not None
        ports = [("http", config.port)]
        ports += [("grpc", port) for field, (_, port) in self.ports(config).items()
                  if "grpc" in field]  # fmt: skip
        probes = self.readiness(config)
        return (Tier("", self.containers.services, ports=tuple(ports),
                     probe=probes[0] if probes else None),)  # fmt: skip

    def deployed(self, name: str, config: TargetConfig) -> TargetConfig:
        """The config as its tiers run deployed: where they reach each other's Services."""
        return config


class ModelKind(Kind):
    """A kind serving the SavedModel of a :class:`ModelConfig`."""

    config_model: ClassVar[type[TargetConfig]] = ModelConfig

    def input_spec(self, config: TargetConfig) -> InputSpec:
        """The model's signature (shape, dtype) with the target's ``input:`` (range...) over
        it; the default input when the model is not readable here (model_url not fetched
        yet, model_in_image)."""
        from targets.common.model_files import ModelNotFoundError
        from targets.common.signature import SignatureError, read_signature

        assert isinstance(config, ModelConfig)
        if config.model_url is not None or config.model_in_image:
            return config.input.spec()
        path = resolve_model_path(config)
        try:
            signature = read_signature(path)
        except (ModelNotFoundError, FileNotFoundError):
            return config.input.spec()  # problems() reports the missing model
        except SignatureError as err:
            raise LaunchError(f"model {path}: {err}") from None
        known = InputSpec(shape=signature.shape, dtype=signature.dtype)  # type: ignore[arg-type]
        try:
            return config.input.spec(known, source=f"the model at {path}")
        except ValueError as err:
            raise LaunchError(str(err)) from None

    def problems(self, name: str, config: TargetConfig) -> list[str]:
        assert isinstance(config, ModelConfig)
        if config.model_url is not None or config.model_in_image:
            return []
        path = resolve_model_path(config)
        if not any(path.glob("saved_model.pb")) and not any(path.glob("*/saved_model.pb")):
            return [
                f"target '{name}': model not found at {path}; train and export it with "
                f"`servecap model train` or set targets.{name}.model_path"
            ]
        return []
