"""The ``flask`` kind: Flask under gunicorn (gthread) with the model in each worker
(paper: (b) server). Commands and their reasons: :mod:`targets.common.gunicorn`."""

from __future__ import annotations

from typing import ClassVar, Literal

from targets.common.apps import FLASK_APP
from targets.common.gunicorn import gunicorn_spec
from targets.common.launch import server_env
from targets.common.metrics import source as metrics_source
from targets.config import InferenceServerConfig, TargetConfig
from targets.kind import Containers, Image, MetricsSource, ModelKind, PaperArchitecture
from targets.launch_types import HOST, Placement, ProcessSpec


class FlaskConfig(InferenceServerConfig):
    kind: Literal["flask"] = "flask"


class FlaskKind(ModelKind):
    name = "flask"
    config_model: ClassVar[type[TargetConfig]] = FlaskConfig
    description = "Flask model server under gunicorn (gthread workers)"
    paper = PaperArchitecture("Flask API", same_path=False)
    containers = Containers(("flask",))
    images = (Image("flask"),)

    def process_plan(
        self, name: str, config: TargetConfig, placement: Placement = HOST
    ) -> list[ProcessSpec]:
        assert isinstance(config, FlaskConfig)
        return [gunicorn_spec(name, "flask", FLASK_APP, server_env(config), config, config.host,
                              config.port, placement)]  # fmt: skip

    def metrics(self, config: TargetConfig) -> MetricsSource:
        return metrics_source(f"{config.base_url}/metrics")


KIND = FlaskKind()
