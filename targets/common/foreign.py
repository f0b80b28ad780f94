"""Servers servecap did not write (``external`` and ``container`` kinds): how to talk to them.

Their targets name a protocol and, where the protocol needs them, the model's name, its input
and output tensors, the path and form field of an upload. What is left out is asked of the
running server's metadata API (:meth:`targets.protocols.base.Protocol.discover`: KServe v2,
TF Serving and servecap servers say their model's input), and the target's ``input:`` fills
in or checks what the server does not say.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

from pydantic import Field, field_validator, model_validator

from targets.config import TargetConfig
from targets.inputs import InputSpec
from targets.kind import Kind
from targets.launch_types import LaunchError, Probe
from targets.protocols import PROTOCOLS, get_protocol
from targets.protocols.base import Discovery, Endpoint


class ForeignConfig(TargetConfig):
    """The client side of a server servecap did not write."""

    protocol: str = Field(description=f"how to talk to it: one of {', '.join(PROTOCOLS)}")
    model_name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="the served model's name (KServe v2 and TF Serving protocols)",
    )
    input_name: str | None = Field(
        default=None, description="the model's input tensor; default: what the server says"
    )
    output_name: str | None = Field(
        default=None,
        description="the output read back (a JSON field for image-upload); default: what the "
        "server says, else the protocol's",
    )
    output_kind: Literal["probabilities", "logits", "class_id"] = Field(
        default="probabilities",
        description="what the output holds: scores (the class is the top one) or class ids",
    )
    predict_path: str | None = Field(
        default=None, pattern=r"^/", description="image-upload: where images are POSTed"
    )
    upload_field: str | None = Field(
        default=None, description="image-upload: the multipart form field (default: raw body)"
    )
    reference_model: str | None = Field(
        default=None,
        description="servecap verify: the SavedModel or .keras file whose answers the server's "
        "are compared with",
    )

    @field_validator("protocol")
    @classmethod
    def _known_protocol(cls, value: str) -> str:
        get_protocol(value)  # ValueError naming the known ones
        return value

    @model_validator(mode="after")
    def _protocol_needs(self) -> ForeignConfig:
        if self.protocol.startswith(("v2-", "tfserving-")) and self.model_name is None:
            raise ValueError(f"protocol {self.protocol} needs model_name (the served model)")
        if self.upload_field is not None and self.protocol != "image-upload":
            raise ValueError("upload_field is for protocol image-upload")
        return self

    @property
    def grpc_address(self) -> str | None:
        """host:port of the gRPC endpoint (gRPC protocols)."""
        return None


@cache
def _discovered(endpoint: Endpoint) -> Discovery:
    return get_protocol(endpoint.protocol).discover(endpoint)


class ForeignKind(Kind):
    """A kind whose server is not servecap's: endpoint and input from the target and the
    server's metadata."""

    def endpoint(self, config: TargetConfig) -> Endpoint:
        assert isinstance(config, ForeignConfig)
        endpoint = configured_endpoint(config)
        found = self.discovery(config)
        update: dict[str, object] = {}
        if config.input_name is None and found.input_name:
            update["input_name"] = found.input_name
        if config.output_name is None and found.output_name:
            update["output_name"] = found.output_name
        return endpoint.model_copy(update=update)

    def discovery(self, config: TargetConfig) -> Discovery:
        """What the server says about its model (kept once it has said something)."""
        assert isinstance(config, ForeignConfig)
        found = _discovered(configured_endpoint(config))
        if found == Discovery():
            _discovered.cache_clear()  # not up yet, or no metadata API: ask again later
        return found

    def input_spec(self, config: TargetConfig) -> InputSpec:
        """What the server declares, with the target's ``input:`` over it (a contradiction is
        an error); the default input when neither says anything."""
        found = self.discovery(config).input()
        try:
            return config.input.spec(found, source=f"the server at {config.base_url}")
        except ValueError as err:
            raise LaunchError(str(err)) from None

    def health_url(self, config: TargetConfig) -> str | None:
        """The URL that answers 200 when the server is ready (None: a TCP connection to it is
        the test)."""
        assert isinstance(config, ForeignConfig)
        path = get_protocol(config.protocol).health_path(configured_endpoint(config))
        return f"{config.base_url}{path}" if path else None

    def readiness(self, config: TargetConfig) -> list[Probe]:
        url = self.health_url(config)
        return [Probe(url=url)] if url else [Probe(tcp_port=config.port)]


def configured_endpoint(config: ForeignConfig) -> Endpoint:
    """The endpoint from what the target says (before asking the server)."""
    given = {
        "input_name": config.input_name, "output_name": config.output_name,
        "predict_path": config.predict_path, "upload_field": config.upload_field,
        "grpc_target": config.grpc_address, "model_name": config.model_name,
    }  # fmt: skip
    return Endpoint(
        protocol=config.protocol,
        base_url=config.base_url,
        output_kind=config.output_kind,
        **{k: v for k, v in given.items() if v is not None},  # type: ignore[arg-type]
    )
