"""The ``mlserver`` kind: Seldon's MLServer 1.7.1 serving the SavedModel through a custom runtime.

::

    MLServer (HTTP host:port, gRPC host:grpc_port, metrics host:metrics_port)
      -> adaptive batcher (max_batch_size requests, max_batch_time_s; off by default)
      -> parallel_workers inference processes (0: in the server process)
           -> SavedModelRuntime (targets/mlserver/runtime.py: TensorFlow)

Clients speak the Open Inference Protocol: ``api: rest`` (JSON tensors: MLServer has no binary
tensor extension, so the protocol is ``v2-rest-json`` and another ``load.encoding`` is
refused) or ``api: grpc`` (raw tensor contents). Ready when ``/v2/models/<model>/ready``
answers. Runs as a process in MLServer's own environment (``make setup``:
targets/mlserver/setup.sh, ``VENV/mlserver``) or as the ``mlserver`` container.

Knobs: ``max_batch_size`` and ``max_batch_time_s`` are MLServer's ``max_batch_size`` (requests
merged into one model call, not images) and ``max_batch_time`` (seconds); batching is on when
both are set (``max_batch_size`` > 1 and ``max_batch_time_s`` > 0). ``parallel_workers`` is
MLServer's setting of that name (its default, 1, runs the model in one worker process).

Security: MLServer binds every listener to one ``host`` (default 0.0.0.0): here the target's
host, 127.0.0.1 unless set otherwise. Its model repository API (load/unload over HTTP and gRPC)
is an unauthenticated control surface with no switch: :mod:`targets.mlserver.launch` answers
403 to load and unload. Request bodies over ``max_body_bytes`` get 413 and compressed ones 415
(MLServer inflates gzip bodies without a bound). Debug mode (tracebacks, access logs) is off.
Metrics: :mod:`targets.mlserver.metrics`.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from targets.common.framework import V2FrameworkKind, V2ServerConfig
from targets.common.tmp import private_dir
from targets.config import TargetConfig, loopback_url
from targets.kind import Containers, Image, MetricsSource
from targets.launch_types import Placement
from targets.mlserver.metrics import source

CONTAINER_PREFIX = Path("/tmp/servecap/mlserver")


class MLServerConfig(V2ServerConfig):
    kind: Literal["mlserver"] = "mlserver"
    metrics_port: int | None = Field(
        default=None, ge=1024, le=65535, description="Prometheus metrics port; default port+2"
    )
    max_batch_size: int = Field(
        default=1, ge=1, le=1024,
        description="adaptive batching: the most requests merged into one model call (1: off)",
    )  # fmt: skip
    max_batch_time_s: float = Field(
        default=0.0, ge=0, le=10,
        description="adaptive batching: the longest a batch waits for more requests (0: off)",
    )  # fmt: skip
    parallel_workers: int = Field(
        default=1, ge=0, le=16,
        description="inference worker processes, each with the model (0: in the server process)",
    )  # fmt: skip

    @model_validator(mode="after")
    def _batching_both_or_neither(self) -> MLServerConfig:
        if (self.max_batch_size > 1) != (self.max_batch_time_s > 0):
            raise ValueError(
                "adaptive batching needs both max_batch_size > 1 and max_batch_time_s > 0 "
                f"(got {self.max_batch_size} and {self.max_batch_time_s}): set both, or "
                "neither to leave it off"
            )
        return self

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 1

    @property
    def mlserver_metrics_port(self) -> int:
        return self.metrics_port or self.port + 2


class MLServerKind(V2FrameworkKind):
    name = "mlserver"
    config_model: ClassVar[type[TargetConfig]] = MLServerConfig
    description = "Seldon MLServer, custom runtime (TensorFlow), adaptive batching"
    containers = Containers(("mlserver",), scalable=False)
    images = (Image("mlserver", wheels=("requirements-env.txt", "requirements-image.txt")),)
    rest_protocol = "v2-rest-json"

    def launch_args(
        self, name: str, config: V2ServerConfig, model: Path, placement: Placement
    ) -> tuple[str, ...]:
        assert isinstance(config, MLServerConfig)
        prefix = CONTAINER_PREFIX if placement.container else private_dir("mlserver", name)
        return (
            "--prefix", str(prefix), "--model", str(model), "--model-name", config.model_name,
            "--host", config.host, "--port", str(config.port),
            "--grpc-port", str(config.v2_grpc_port),
            "--metrics-port", str(config.mlserver_metrics_port),
            "--parallel-workers", str(config.parallel_workers),
            "--max-batch-size", str(config.max_batch_size),
            "--max-batch-time-s", str(config.max_batch_time_s),
            "--max-body-bytes", str(config.max_body_bytes),
        )  # fmt: skip

    def ports(self, config: TargetConfig) -> dict[str, tuple[str, int]]:
        assert isinstance(config, MLServerConfig)
        metrics = (config.host, config.mlserver_metrics_port)
        return {**super().ports(config), "metrics_port": metrics}

    def metrics(self, config: TargetConfig) -> MetricsSource:
        assert isinstance(config, MLServerConfig)
        url = f"{loopback_url(config.host, config.mlserver_metrics_port)}/metrics"
        return source(url, config.batching)


KIND = MLServerKind()
