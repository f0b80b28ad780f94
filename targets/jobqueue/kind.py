"""The ``jobqueue`` kind: FastAPI web (validate, enqueue, 202) -> Redis -> RQ workers that
batch queued jobs into one model call. Processes: :mod:`targets.jobqueue.launch`."""

from __future__ import annotations

from typing import ClassVar

from targets.config import TargetConfig
from targets.jobqueue.launch import LOOPBACK, JobQueueConfig, launch_env, process_plan
from targets.kind import HOST, Containers, Image, ModelKind, Placement, Probe
from targets.launchers.base import ProcessSpec
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
        return [Probe(url=f"{config.base_url}/healthz?min_workers={config.queue_workers}")]

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


KIND = JobQueueKind()
