"""The ``django-to-tfserving`` kind: nginx -> Django (forwarding, REST) -> TF Serving.

TF Serving runs only as a container (``--launcher docker``), so this chain does too; the
Django side is :mod:`targets.common.forward` speaking ``tfserving-rest`` to
``127.0.0.1:model_port``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from targets.common.chain import ChainConfig, ChainKind
from targets.common.tfserving import (
    IMAGE,
    TAG,
    TFServingOptions,
    exposure_problems,
    tfserving_env,
    tfserving_probes,
)
from targets.config import TargetConfig, loopback_url
from targets.kind import Containers, PaperArchitecture
from targets.launch_types import LaunchError, Placement, Probe, ProcessSpec


class DjangoToTFServingConfig(ChainConfig, TFServingOptions):
    kind: Literal["django-to-tfserving"] = "django-to-tfserving"


class DjangoToTFServingKind(ChainKind):
    name = "django-to-tfserving"
    config_model: ClassVar[type[TargetConfig]] = DjangoToTFServingConfig
    description = "nginx -> gunicorn -> Django (forwarding) -> TF Serving (containers only)"
    paper = PaperArchitecture("TF Serving", same_path=True)
    containers = Containers(("tfserving", "django-forward", "nginx"), scalable=False)
    part_roles: ClassVar[dict[str, str]] = {"web": "django-forward"}
    official_images = {"tfserving": f"{IMAGE}:{TAG}"}
    runs_as_processes = False
    upstream_protocol = "tfserving-rest"

    def model_plan(self, name: str, config: ChainConfig, placement: Placement) -> list[ProcessSpec]:
        if placement.container:  # the tfserving service runs the official image's command
            return []
        raise LaunchError(
            f"target '{name}' ({self.name}) forwards to TensorFlow Serving, which runs only as "
            "a container from the official image: use `--launcher docker` on a host that can "
            "pull tensorflow/serving (no TF Serving binary can be installed as a process)"
        )

    def problems(self, name: str, config: TargetConfig) -> list[str]:
        assert isinstance(config, DjangoToTFServingConfig)
        return [*exposure_problems(name, config), *super().problems(name, config)]

    def ports(self, config: TargetConfig) -> dict[str, tuple[str, int]]:
        assert isinstance(config, DjangoToTFServingConfig)
        return {**super().ports(config), "grpc_port": ("127.0.0.1", config.tf_grpc_port)}

    def readiness(self, config: TargetConfig) -> list[Probe]:
        assert isinstance(config, DjangoToTFServingConfig)
        model = tfserving_probes(config, loopback_url("127.0.0.1", config.model_port))
        return [*model, *super().readiness(config)]

    def compose_env(self, config: TargetConfig) -> dict[str, str]:
        assert isinstance(config, DjangoToTFServingConfig)
        return tfserving_env(config, config.model_port)


KIND = DjangoToTFServingKind()
