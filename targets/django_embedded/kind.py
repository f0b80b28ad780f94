"""The ``django-embedded`` kind: nginx -> gunicorn -> Django with the model in each worker
(the paper's architecture (a)). Commands: :mod:`targets.common.django_front`."""

from __future__ import annotations

from typing import ClassVar, Literal

from targets.common.django_front import DjangoConfig, front_plan
from targets.common.metrics import source as metrics_source
from targets.config import TargetConfig
from targets.kind import Containers, Image, MetricsSource, ModelKind, PaperArchitecture
from targets.launch_types import HOST, Placement, ProcessSpec


class DjangoEmbeddedConfig(DjangoConfig):
    kind: Literal["django-embedded"] = "django-embedded"


class DjangoEmbeddedKind(ModelKind):
    name = "django-embedded"
    config_model: ClassVar[type[TargetConfig]] = DjangoEmbeddedConfig
    description = "nginx -> gunicorn -> Django, the model in the web tier"
    paper = PaperArchitecture("embedded", same_path=True)
    containers = Containers(("django", "nginx"))
    part_roles: ClassVar[dict[str, str]] = {"web": "django"}
    images = (Image("django"),)

    def process_plan(
        self, name: str, config: TargetConfig, placement: Placement = HOST
    ) -> list[ProcessSpec]:
        assert isinstance(config, DjangoConfig)
        return front_plan(name, config, placement)

    def ports(self, config: TargetConfig) -> dict[str, tuple[str, int]]:
        assert isinstance(config, DjangoConfig)
        return config.django_ports()

    def metrics(self, config: TargetConfig) -> MetricsSource:
        return metrics_source(f"{config.base_url}/metrics")  # through nginx, from Django


KIND = DjangoEmbeddedKind()
