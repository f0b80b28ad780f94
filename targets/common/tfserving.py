"""TensorFlow Serving's container as servecap runs it: its image, its options in a target's
config, the variables of docker-compose.yml's ``tfserving`` service and its readiness.

Shared by the ``tfserving`` kind and the ``django-to-tfserving`` chain that ends in it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from targets.config import ModelConfig
from targets.docker.images import IMAGE_REPO
from targets.launch_types import Probe
from targets.protocols.tfserving import rest_status_path

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
