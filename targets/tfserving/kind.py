"""The ``tfserving`` kind: TensorFlow Serving from its official image (the paper's (d) server).

No TF Serving binary installs on a plain Python host, so this kind runs only as a container
(service ``tfserving`` of docker-compose.yml, command given there: the image is not ours).
Its batching parameters file is chosen per target (``batching``: a file of
``targets/tfserving/batching/``). REST on ``port``, gRPC on ``grpc_port``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from targets.common.tfserving import (
    IMAGE,
    TAG,
    TFServingOptions,
    exposure_problems,
    tfserving_env,
    tfserving_probes,
)
from targets.config import TargetConfig
from targets.kind import Containers, ModelKind, PaperArchitecture
from targets.launch_types import HOST, LaunchError, Placement, Probe, ProcessSpec
from targets.protocols.base import Endpoint
from targets.protocols.tfserving import MODEL_NAME


class TFServingConfig(TFServingOptions):
    kind: Literal["tfserving"] = "tfserving"


class TFServingKind(ModelKind):
    name = "tfserving"
    config_model: ClassVar[type[TargetConfig]] = TFServingConfig
    description = "TensorFlow Serving, official image (containers only)"
    paper = PaperArchitecture("TF Serving", same_path=False)
    containers = Containers(("tfserving",), scalable=False)
    official_images = {"tfserving": f"{IMAGE}:{TAG}"}
    runs_as_processes = False

    def process_plan(
        self, name: str, config: TargetConfig, placement: Placement = HOST
    ) -> list[ProcessSpec]:
        if placement.container:  # the tfserving service runs the official image's program
            return []
        raise LaunchError(
            f"target '{name}' ({self.name}) needs TensorFlow Serving, which runs only as a "
            "container from the official image: use `--launcher docker` on a host that can "
            "pull tensorflow/serving (no TF Serving binary can be installed as a process)"
        )

    def problems(self, name: str, config: TargetConfig) -> list[str]:
        assert isinstance(config, TFServingConfig)
        return [*exposure_problems(name, config), *super().problems(name, config)]

    def endpoint(self, config: TargetConfig) -> Endpoint:
        assert isinstance(config, TFServingConfig)
        grpc = config.api == "grpc"
        return Endpoint(protocol="tfserving-grpc" if grpc else "tfserving-rest",
                        base_url=config.base_url, model_name=MODEL_NAME,
                        grpc_target=f"127.0.0.1:{config.tf_grpc_port}")  # fmt: skip

    def ports(self, config: TargetConfig) -> dict[str, tuple[str, int]]:
        assert isinstance(config, TFServingConfig)
        return {"port": (config.host, config.port),
                "grpc_port": ("127.0.0.1", config.tf_grpc_port)}  # fmt: skip

    def readiness(self, config: TargetConfig) -> list[Probe]:
        assert isinstance(config, TFServingConfig)
        return tfserving_probes(config, config.base_url)

    def compose_env(self, config: TargetConfig) -> dict[str, str]:
        assert isinstance(config, TFServingConfig)
        return tfserving_env(config, config.port)


KIND = TFServingKind()
