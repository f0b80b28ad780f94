"""The ``litserve`` kind: LitServe (pinned in pyproject.toml) serving the SavedModel.

::

    LitServer (uvicorn, config.host:config.port) -> queue -> workers x LitAPI
      (decode_request -> batch: max_batch_size, batch_timeout_s -> predict -> encode_response)

Clients speak servecap's predict API (JSON bodies: ``images``, ``images_b64`` or
``images_jpeg_b64``) at ``/v1/predict``; ready when LitServe's ``/health`` answers (every
worker has loaded the model). servecap's metrics at ``/metrics`` (targets/litserve/server.py).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from targets.common.framework import FrameworkConfig, framework_server_env, missing_module
from targets.common.launch import PYTHON, with_metrics
from targets.common.metrics import source as metrics_source
from targets.config import TargetConfig
from targets.kind import MetricsSource, ModelKind
from targets.launch_types import HOST, Placement, ProcessSpec
from targets.litserve.settings import HEALTH_PATH, LitServeSettings
from targets.protocols.base import Endpoint


class LitServeConfig(FrameworkConfig):
    kind: Literal["litserve"] = "litserve"
    workers: int = Field(
        default=1, ge=1, le=64, description="inference worker processes (workers_per_device)"
    )
    batch_timeout_s: float = Field(
        default=0.0, ge=0, le=10,
        description="batching: the longest LitServe waits to fill a batch (its batch_timeout)",
    )  # fmt: skip


class LitServeKind(ModelKind):
    name = "litserve"
    config_model: ClassVar[type[TargetConfig]] = LitServeConfig
    description = "LitServe LitAPI (batching: max_batch_size, batch_timeout_s; workers)"
    health_path = HEALTH_PATH

    def endpoint(self, config: TargetConfig) -> Endpoint:
        return Endpoint(protocol="servecap", base_url=config.base_url)

    def problems(self, name: str, config: TargetConfig) -> list[str]:
        missing = missing_module(name, "litserve", "LitServe")
        return [missing] if missing else super().problems(name, config)

    def process_plan(
        self, name: str, config: TargetConfig, placement: Placement = HOST
    ) -> list[ProcessSpec]:
        assert isinstance(config, LitServeConfig)
        knobs = {"host": config.host, "port": config.port, "workers": config.workers,
                 "max_batch_size": config.max_batch_size,
                 "batch_timeout_s": config.batch_timeout_s,
                 "timeout_s": config.timeout_s}  # fmt: skip
        env, fresh = with_metrics(
            name, framework_server_env(config, LitServeSettings, knobs), placement
        )
        return [ProcessSpec(name=name, role="litserve", env=env, fresh_dirs=fresh,
                            argv=(PYTHON, "-m", "targets.litserve.server"),
                            ready_url=f"{config.base_url}{HEALTH_PATH}")]  # fmt: skip

    def metrics(self, config: TargetConfig) -> MetricsSource:
        return metrics_source(f"{config.base_url}/metrics")


KIND = LitServeKind()
