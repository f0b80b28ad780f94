"""What the Django chain kinds share: nginx -> Django (forwarding) -> a model server.

``django-to-flask``, ``django-to-fastapi`` and ``django-to-tfserving`` differ only in the
model server at the end of the chain (``127.0.0.1:model_port``) and the protocol Django
forwards in; :class:`ChainKind` is the rest. The model server starts first, then Django in
forward mode, then nginx (:mod:`targets.common.django_front`).
"""

from __future__ import annotations

from typing import ClassVar

from targets.common.django_front import DjangoConfig, front_plan, upstream_url
from targets.common.metrics import source as metrics_source
from targets.config import TargetConfig, UpstreamConfig
from targets.kind import MetricsSource, ModelKind
from targets.launch_types import HOST, LaunchError, Placement, ProcessSpec


class ChainConfig(DjangoConfig, UpstreamConfig):
    """Django forwarding to a model server on a third port (``model_port``)."""


class ChainKind(ModelKind):
    """A Django chain; subclasses give the model server (:meth:`model_plan`)."""

    upstream_protocol: ClassVar[str] = "servecap"

    def model_plan(self, name: str, config: ChainConfig, placement: Placement) -> list[ProcessSpec]:
        """The model server's processes on 127.0.0.1:config.model_port."""
        raise LaunchError(f"target '{name}' ({self.name}): its model server has no process plan")

    def process_plan(
        self, name: str, config: TargetConfig, placement: Placement = HOST
    ) -> list[ProcessSpec]:
        assert isinstance(config, ChainConfig)
        model = self.model_plan(name, config, placement)
        front = front_plan(name, config, placement, upstream_url(config.model_port),
                           self.upstream_protocol)  # fmt: skip
        return [*model, *front]

    def metrics(self, config: TargetConfig) -> MetricsSource | None:
        """The model tier's (where requests reach the model); None when it is not ours."""
        assert isinstance(config, ChainConfig)
        if self.upstream_protocol != "servecap":
            return None
        return metrics_source(f"{upstream_url(config.model_port)}/metrics")

    def ports(self, config: TargetConfig) -> dict[str, tuple[str, int]]:
        assert isinstance(config, ChainConfig)
        return {**config.django_ports(), "upstream_port": ("127.0.0.1", config.model_port)}
