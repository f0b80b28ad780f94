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

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from targets.common.framework import V2FrameworkKind, V2ServerConfig
from targets.common.v2_runtime import BATCH_METRIC
from targets.config import TargetConfig
from targets.kind import Containers, Image, MetricsSource
from targets.launch_types import Placement


class KServeConfig(V2ServerConfig):
    kind: Literal["kserve"] = "kserve"
    workers: int = Field(
        default=1, ge=1, le=16,
        description="uvicorn REST worker processes, each with the model (ModelServer --workers)",
    )  # fmt: skip


class KServeKind(V2FrameworkKind):
    name = "kserve"
    config_model: ClassVar[type[TargetConfig]] = KServeConfig
    description = "KServe Python model server, custom kserve.Model (TensorFlow)"
    containers = Containers(("kserve",), scalable=False)
    images = (Image("kserve", wheels=("requirements-env.txt", "requirements-image.txt")),)

    def launch_args(
        self, name: str, config: V2ServerConfig, model: Path, placement: Placement
    ) -> tuple[str, ...]:
        assert isinstance(config, KServeConfig)
        return (
            "--model_dir", str(model), "--model_name", config.model_name,
            "--host", config.host, "--http_port", str(config.port),
            "--grpc_port", str(config.v2_grpc_port), "--workers", str(config.workers),
            "--max_body_bytes", str(config.max_body_bytes), "--enable_latency_logging", "false",
        )  # fmt: skip

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


KIND = KServeKind()
