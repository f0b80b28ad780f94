"""The ``fastapi`` kind: FastAPI + uvicorn with the model in each worker (paper: (c) server).

::

    uvicorn (config.host:config.port, config.workers workers) -> FastAPI -> model
"""

from __future__ import annotations

from typing import ClassVar, Literal

from targets.common.apps import FASTAPI_APP
from targets.common.launch import server_env
from targets.common.metrics import source as metrics_source
from targets.common.uvicorn import uvicorn_spec
from targets.config import InferenceServerConfig, TargetConfig
from targets.kind import Containers, Image, MetricsSource, ModelKind, PaperArchitecture
from targets.launch_types import HOST, Placement, ProcessSpec


class FastAPIConfig(InferenceServerConfig):
    kind: Literal["fastapi"] = "fastapi"


class FastAPIKind(ModelKind):
    name = "fastapi"
    config_model: ClassVar[type[TargetConfig]] = FastAPIConfig
    description = "FastAPI model server under uvicorn"
    paper = PaperArchitecture("FastAPI", same_path=False)
    containers = Containers(("fastapi",))
    images = (Image("fastapi"),)

    def process_plan(
        self, name: str, config: TargetConfig, placement: Placement = HOST
    ) -> list[ProcessSpec]:
        assert isinstance(config, FastAPIConfig)
        return [uvicorn_spec(name, "fastapi", FASTAPI_APP, server_env(config), config.host,
                             config.port, config.workers, placement)]  # fmt: skip

    def metrics(self, config: TargetConfig) -> MetricsSource:
        return metrics_source(f"{config.base_url}/metrics")


KIND = FastAPIKind()
