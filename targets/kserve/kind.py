"""The ``kserve`` kind: KServe's Python model server (kserve 0.21.0) with a custom model.

::

    kserve.ModelServer (HTTP host:port, its /metrics there too; gRPC host:grpc_port)
      -> uvicorn, workers REST processes (each with the model when workers > 1)
           -> SavedModelPredictor (targets/kserve/model.py: a kserve.Model, TensorFlow)

Clients speak the Open Inference Protocol: ``api: rest`` (``/v2/models/<model>/infer``, JSON
tensors or the binary extension: ``v2-rest``) or ``api: grpc``. Ready when
``/v2/models/<model>/ready`` answers. Runs as a process in KServe's own environment (``make
setup``: targets/kserve/setup.sh, ``VENV/kserve``) or as the ``kserve`` container.

Knobs: ``workers`` is ModelServer's ``--workers`` (uvicorn REST processes, spawned: each loads
the model; gRPC stays in the main process). No batching knob: KServe batches in its Go agent
sidecar (the InferenceService ``batcher``), not in the Python model server, so there is no
``kserve-batch`` target; each request is one model call.

Security: KServe 0.21 binds HTTP to 0.0.0.0 and gRPC to ``[::]`` with no option;
:mod:`targets.kserve.launch` binds both to the target's host (127.0.0.1 unless set otherwise).
Its v2 repository extension (load/unload over HTTP and gRPC) answers 403, the Swagger docs
are off, bodies over ``max_body_bytes`` get 413 and compressed ones 415. It opens no other
port. Its per-request latency log line is off (the harness measures latency itself).
Metrics: KServe's ``request_predict_seconds`` (requests, model time) and the model's
histograms (images per call) on ``/metrics`` of the HTTP port; with ``workers`` > 1 each
worker answers with its own counters (KServe keeps no shared registry), so they are read only
with one worker. KServe reports no queue time.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from targets.common.framework import (
    V2ServerConfig,
    require_environment,
    v2_endpoint,
    v2_ports,
    v2_readiness,
    v2_ready_url,
)
from targets.common.launch import base_env
from targets.common.model_files import ModelNotFoundError, version_dir
from targets.common.v2_runtime import BATCH_METRIC
from targets.config import TargetConfig
from targets.kind import Containers, Image, MetricsSource, ModelKind
from targets.launch_types import (
    HOST,
    LaunchError,
    Placement,
    Probe,
    ProcessSpec,
    resolve_model_path,
)
from targets.protocols.base import Endpoint

ENVIRONMENT = "kserve"


class KServeConfig(V2ServerConfig):
    kind: Literal["kserve"] = "kserve"
    workers: int = Field(
        default=1, ge=1, le=16,
        description="uvicorn REST worker processes, each with the model (ModelServer --workers)",
    )  # fmt: skip


class KServeKind(ModelKind):
    name = "kserve"
    config_model: ClassVar[type[TargetConfig]] = KServeConfig
    description = "KServe Python model server, custom kserve.Model (TensorFlow)"
    containers = Containers(("kserve",), scalable=False)
    images = (Image("kserve", wheels=("requirements-env.txt", "requirements-image.txt")),)

    def endpoint(self, config: TargetConfig) -> Endpoint:
        assert isinstance(config, KServeConfig)
        return v2_endpoint(config)

    def process_plan(
        self, name: str, config: TargetConfig, placement: Placement = HOST
    ) -> list[ProcessSpec]:
        assert isinstance(config, KServeConfig)
        python = require_environment(name, ENVIRONMENT)
        try:
            model = version_dir(resolve_model_path(config))
        except ModelNotFoundError as err:
            raise LaunchError(f"target '{name}': {err}") from None
        argv = (
            str(python), "-m", "targets.kserve.launch", "--model_dir", str(model),
            "--model_name", config.model_name, "--host", config.host,
            "--http_port", str(config.port), "--grpc_port", str(config.v2_grpc_port),
            "--workers", str(config.workers), "--max_body_bytes", str(config.max_body_bytes),
            "--enable_latency_logging", "false",
        )  # fmt: skip
        return [
            ProcessSpec(
                name=name,
                role="kserve",
                argv=argv,
                env={**base_env(), **config.env},
                ready_url=v2_ready_url(config),
            )
        ]

    def ports(self, config: TargetConfig) -> dict[str, tuple[str, int]]:
        assert isinstance(config, KServeConfig)
        return v2_ports(config)

    def metrics(self, config: TargetConfig) -> MetricsSource | None:
        assert isinstance(config, KServeConfig)
        if config.workers > 1:
            return None  # each worker would answer with its own counters
        return MetricsSource(
            url=f"{config.base_url}/metrics",
            requests="request_predict_seconds_count",
            inferences=f"{BATCH_METRIC}_sum",
            executions=f"{BATCH_METRIC}_count",
            model_time="request_predict_seconds_sum",
        )

    def readiness(self, config: TargetConfig) -> list[Probe]:
        assert isinstance(config, KServeConfig)
        return v2_readiness(config)


KIND = KServeKind()
