"""The ``jobqueue`` kind: FastAPI web (validate, enqueue, 202) -> Redis -> RQ workers that
batch queued jobs into one model call. Processes: :mod:`targets.jobqueue.launch`."""

from __future__ import annotations

from typing import ClassVar

from targets.config import TargetConfig
from targets.jobqueue.launch import (
    CONTAINER_REDIS_DATA,
    LOOPBACK,
    JobQueueConfig,
    launch_env,
    process_plan,
    ready_path,
)
from targets.kind import Containers, Image, ModelKind, Tier, deployed_name
from targets.launch_types import HOST, Placement, Probe, ProcessSpec
from targets.protocols.base import Endpoint


class JobQueueKind(ModelKind):
    name = "jobqueue"
    config_model: ClassVar[type[TargetConfig]] = JobQueueConfig
    description = "FastAPI web -> Redis -> RQ workers (batching): the job-queue pattern"
    containers = Containers(("jobqueue-worker", "redis", "jobqueue-web"), scalable=False)
    part_roles: ClassVar[dict[str, str]] = {"worker": "jobqueue-worker", "web": "jobqueue-web"}
    images = (Image("jobqueue"),)

    def endpoint(self, config: TargetConfig) -> Endpoint:
        return Endpoint(protocol="servecap-jobs", base_url=config.base_url)

    def process_plan(
        self, name: str, config: TargetConfig, placement: Placement = HOST
    ) -> list[ProcessSpec]:
        assert isinstance(config, JobQueueConfig)
        return process_plan(name, config, placement)

    def launch_env(self, config: TargetConfig) -> dict[str, str]:
        return launch_env()

    def ports(self, config: TargetConfig) -> dict[str, tuple[str, int]]:
        assert isinstance(config, JobQueueConfig)
        return {"port": (config.host, config.port),
                "upstream_port": ("127.0.0.1", config.model_port)}  # fmt: skip

    def readiness(self, config: TargetConfig) -> list[Probe]:
        assert isinstance(config, JobQueueConfig)
        return [Probe(url=f"{config.base_url}{ready_path(config)}")]

    def problems(self, name: str, config: TargetConfig) -> list[str]:
        assert isinstance(config, JobQueueConfig)
        found = super().problems(name, config)
        if config.redis_host != LOOPBACK:
            found.append(f"target '{name}': redis_host {config.redis_host!r} is for deployed "
                         f"manifests; servecap starts Redis beside the web on {LOOPBACK}: "
                         "remove redis_host")  # fmt: skip
        return found

    def scales(self, config: TargetConfig) -> dict[str, int]:
        assert isinstance(config, JobQueueConfig)
        return {"jobqueue-worker": config.queue_workers}

    def tiers(self, config: TargetConfig) -> tuple[Tier, ...]:
        """Deployed as a job queue is: the web (the target's Service) and the workers scaled
        apart, one Redis holding the queue (its append-only file on a volume of its own, twice
        its memory cap: room for a rewrite), reached through its Service."""
        assert isinstance(config, JobQueueConfig)
        data = None if config.redis_persistence == "off" else 2 * config.redis_maxmemory_mb
        home = CONTAINER_REDIS_DATA.rsplit("/", 1)[0]  # the volume's mount: see launch
        return (
            Tier("", ("jobqueue-web",), ports=(("http", config.port),),
                 probe=Probe(url=f"{config.base_url}/healthz?min_workers=0")),
            Tier("worker", ("jobqueue-worker",), per_replica=config.queue_workers),
            Tier("redis", ("redis",), per_replica=0, ports=(("redis", config.model_port),),
                 probe=Probe(tcp_port=config.model_port), volume=(home, data)),
        )  # fmt: skip

    def deployed(self, name: str, config: TargetConfig) -> TargetConfig:
        return config.model_copy(update={"redis_host": deployed_name(name, "redis")})


KIND = JobQueueKind()
