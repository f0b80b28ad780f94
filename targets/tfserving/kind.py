"""The ``tfserving`` kind: TensorFlow Serving from its official image (the paper's (d) server).

No TF Serving binary installs on a plain Python host, so this kind runs only as a container
(service ``tfserving`` of docker-compose.yml, command given there: the image is not ours).
Its batching parameters file is chosen per target (``batching``: a file of
``targets/tfserving/batching/``). REST on ``port``, gRPC on ``grpc_port``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from targets.config import ModelConfig, TargetConfig
from targets.docker.images import IMAGE_REPO
from targets.kind import Containers, ModelKind, PaperArchitecture
from targets.launch_types import HOST, LaunchError, Placement, Probe, ProcessSpec
from targets.protocols.base import Endpoint
from targets.protocols.tfserving import MODEL_NAME, rest_status_path

IMAGE = "tensorflow/serving"
TAG = "2.19.0"


class TFServingOptions(ModelConfig):
    """TF Serving's own knobs (also those of the chain that ends in it)."""

    grpc_port: int | None = Field(
        default=None, ge=1024, le=65535, description="TF Serving gRPC port; default port+3"
    )
    api: Literal["rest", "grpc"] = Field(
        default="rest", description="which API the load generator uses"
    )
    batching: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="batching parameters file in targets/tfserving/batching/ (no batching "
        "when unset)",
    )
    all_interfaces: bool = Field(
        default=False,
        description="accept that TF Serving listens on every interface (it has no host flag: "
        "its REST and gRPC ports, model reload included, are reachable from other hosts); "
        "without it the target refuses to start",
    )

    @property
    def tf_grpc_port(self) -> int:
        return self.grpc_port or self.port + 3


def exposure_problems(name: str, config: TFServingOptions) -> list[str]:
    """TF Serving binds 0.0.0.0 (tensorflow/serving#1969): it runs only when the target opts in."""
    if config.all_interfaces:
        return []
    return [
        f"target '{name}': TensorFlow Serving listens on all interfaces (0.0.0.0, no flag to "
        "bind loopback), so its REST and gRPC ports would be reachable from other hosts; on a "
        f"firewalled benchmark host set targets.{name}.all_interfaces: true to run it anyway"
    ]


class TFServingConfig(TFServingOptions):
    kind: Literal["tfserving"] = "tfserving"


def tfserving_env(config: TFServingOptions, rest_port: int) -> dict[str, str]:
    """The variables of docker-compose.yml's ``tfserving`` service."""
    image, tag = IMAGE, TAG
    if config.model_in_image:  # built by `servecap images build --model DIR tfserving`
        image, tag = f"{IMAGE_REPO}/tfserving", f"{TAG}-model"
    return {
        "TFSERVING_IMAGE": image,
        "TFSERVING_TAG": tag,
        "SERVECAP_TFSERVING_REST_PORT": str(rest_port),
        "SERVECAP_TFSERVING_GRPC_PORT": str(config.tf_grpc_port),
        "SERVECAP_TFSERVING_ENABLE_BATCHING": "true" if config.batching else "false",
        "SERVECAP_TFSERVING_BATCHING_FILE": "/config/batching.txt" if config.batching else "",
        "SERVECAP_BATCHING": config.batching or "default",
    }


def tfserving_probes(config: TFServingOptions, rest_url: str) -> list[Probe]:
    """The model AVAILABLE on REST, and the gRPC port open."""
    return [Probe(url=f"{rest_url}{rest_status_path()}", needle="AVAILABLE"),
            Probe(tcp_port=config.tf_grpc_port)]  # fmt: skip


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
