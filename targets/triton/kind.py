"""The ``triton`` kind: NVIDIA Triton Inference Server, dynamic batching, the same SavedModel.

::

    tritonserver (HTTP host:port, gRPC 127.0.0.1:grpc_port, metrics 127.0.0.1:metrics_port)
      -> dynamic batcher (max_batch_size, max_queue_delay_us, preferred_batch_sizes)
      -> Python backend x instances (targets/triton/backend/model.py: TensorFlow)

Clients speak the Open Inference Protocol: ``api: rest`` (HTTP; JSON tensors, or the binary
extension with ``encoding: binary``) or ``api: grpc``. Ready when ``/v2/health/ready``
answers (strict readiness: the model is loaded). Runs as a process (``make setup`` installs
the server, targets/triton/setup.sh) or as the ``triton`` container.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from targets.common.launch import PYTHON, base_env
from targets.common.model_files import ModelNotFoundError, version_dir
from targets.common.tmp import private_dir
from targets.config import ModelConfig, TargetConfig, loopback_url
from targets.inputs import CNN_MODEL_NAME
from targets.kind import Containers, Image, MetricsSource, ModelKind, PaperArchitecture
from targets.launch_types import (
    HOST,
    LaunchError,
    Placement,
    Probe,
    ProcessSpec,
    resolve_model_path,
)
from targets.protocols.base import Endpoint
from targets.protocols.v2 import HEALTH_PATH

BACKEND_ENV = "triton-backend"
"""The Python backend's environment, inside the project venv (targets/triton/setup.sh)."""
STUB_LIBPYTHON = Path("/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0")
CONTAINER_PREFIX = Path("/tmp/servecap/triton")


class TritonConfig(ModelConfig):
    kind: Literal["triton"] = "triton"
    api: Literal["rest", "grpc"] = Field(
        default="rest", description="the load generator's API: HTTP (rest) or gRPC"
    )
    grpc_port: int | None = Field(
        default=None, ge=1024, le=65535, description="gRPC port; default port+1"
    )
    metrics_port: int | None = Field(
        default=None, ge=1024, le=65535, description="Prometheus metrics port; default port+2"
    )
    model_name: str = Field(default=CNN_MODEL_NAME, pattern=r"^[A-Za-z0-9_.-]+$")
    max_batch_size: int = Field(
        default=64, ge=1, le=1024, description="largest batch the dynamic batcher forms"
    )
    max_queue_delay_us: int = Field(
        default=1000,
        ge=0,
        le=1_000_000,
        description="how long the batcher may hold a request to fill a batch",
    )
    preferred_batch_sizes: tuple[int, ...] = Field(
        default=(), description="batch sizes the batcher aims for (each <= max_batch_size)"
    )
    instances: int = Field(
        default=1, ge=1, le=16, description="model instances (each a backend process)"
    )

    @model_validator(mode="after")
    def _preferred_fit(self) -> TritonConfig:
        too_big = [n for n in self.preferred_batch_sizes if not 1 <= n <= self.max_batch_size]
        if too_big:
            raise ValueError(
                f"preferred_batch_sizes {too_big} must be between 1 and max_batch_size "
                f"({self.max_batch_size})"
            )
        return self

    @property
    def triton_grpc_port(self) -> int:
        return self.grpc_port or self.port + 1

    @property
    def triton_metrics_port(self) -> int:
        return self.metrics_port or self.port + 2


def backend_env() -> Path:
    """The Python backend's environment, inside this interpreter's venv (in a container too:
    the image's /opt/venv)."""
    return Path(sys.prefix) / BACKEND_ENV


class TritonKind(ModelKind):
    name = "triton"
    config_model: ClassVar[type[TargetConfig]] = TritonConfig
    description = "NVIDIA Triton Inference Server, dynamic batcher, Python backend (TensorFlow)"
    paper = PaperArchitecture("TF Serving", same_path=False)
    """The paper's (d), a dedicated C++ inference server with request batching: Triton stands
    in for TF Serving where its image cannot run, in the column beside its figures."""
    containers = Containers(("triton",), scalable=False)
    images = (Image("triton", wheels=("requirements-server.txt", "requirements-backend.txt")),)

    def endpoint(self, config: TargetConfig) -> Endpoint:
        assert isinstance(config, TritonConfig)
        return Endpoint(
            protocol="v2-grpc" if config.api == "grpc" else "v2-rest",
            base_url=config.base_url,
            grpc_target=f"127.0.0.1:{config.triton_grpc_port}",
            model_name=config.model_name,
            max_images=config.max_batch_size,  # Triton refuses a request of more (HTTP 400)
        )

    def process_plan(
        self, name: str, config: TargetConfig, placement: Placement = HOST
    ) -> list[ProcessSpec]:
        assert isinstance(config, TritonConfig)
        env_dir = backend_env()
        if not placement.container:
            self._check_host(name, env_dir)
        try:
            model = version_dir(resolve_model_path(config))
        except ModelNotFoundError as err:
            raise LaunchError(f"target '{name}': {err}") from None
        own = f"{name}-{config.port}"  # one folder per target and port, as nginx's
        prefix = CONTAINER_PREFIX if placement.container else private_dir("triton", own)
        argv = (
            PYTHON, "-m", "targets.triton.launch", "--prefix", str(prefix),
            "--model", str(model), "--model-name", config.model_name,
            "--max-batch-size", str(config.max_batch_size),
            "--max-queue-delay-us", str(config.max_queue_delay_us),
            "--preferred", ",".join(str(n) for n in config.preferred_batch_sizes),
            "--instances", str(config.instances), "--backend-env", str(env_dir),
            "--host", config.host, "--port", str(config.port),
            "--grpc-port", str(config.triton_grpc_port),
            "--metrics-port", str(config.triton_metrics_port),
        )  # fmt: skip
        return [
            ProcessSpec(
                name=name,
                role="triton",
                argv=argv,
                env={**base_env(), **config.env},
                ready_url=f"{config.base_url}{HEALTH_PATH}",
            )
        ]

    @staticmethod
    def _check_host(name: str, env_dir: Path) -> None:
        from targets.triton.repository import tritonserver_root

        fix = "run `make setup` (targets/triton/setup.sh)"
        try:
            binary = tritonserver_root() / "bin" / "tritonserver"
        except FileNotFoundError as err:
            raise LaunchError(f"target '{name}': {err}") from None
        if not binary.is_file():
            raise LaunchError(f"target '{name}': no tritonserver at {binary}; {fix}")
        if not (env_dir / "bin" / "python").exists():
            raise LaunchError(
                f"target '{name}': Triton's Python backend environment {env_dir} is missing; "
                f"{fix} on a host with Debian's python3.11"
            )
        if not STUB_LIBPYTHON.exists():
            raise LaunchError(
                f"target '{name}': Triton's Python backend stub needs {STUB_LIBPYTHON} "
                "(Debian: apt-get install libpython3.11)"
            )

    def ports(self, config: TargetConfig) -> dict[str, tuple[str, int]]:
        assert isinstance(config, TritonConfig)
        return {"port": (config.host, config.port),
                "grpc_port": ("127.0.0.1", config.triton_grpc_port),
                "metrics_port": ("127.0.0.1", config.triton_metrics_port)}  # fmt: skip

    def metrics(self, config: TargetConfig) -> MetricsSource:
        assert isinstance(config, TritonConfig)
        from targets.common.triton_metrics import source

        return source(f"{loopback_url('127.0.0.1', config.triton_metrics_port)}/metrics")

    def readiness(self, config: TargetConfig) -> list[Probe]:
        assert isinstance(config, TritonConfig)
        return [Probe(url=f"{config.base_url}{HEALTH_PATH}"),
                Probe(tcp_port=config.triton_grpc_port)]  # fmt: skip


KIND = TritonKind()
