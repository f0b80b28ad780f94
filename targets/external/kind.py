"""The ``external`` kind: a server servecap does not start (yours, already running).

::

    targets:
      my-triton:
        kind: external
        url: http://127.0.0.1:8000          # loopback only, unless allow_remote: true
        protocol: v2-rest                   # any of targets.protocols
        model_name: resnet
        resources: {containers: [triton]}   # or label, or pid; prometheus_url for metrics

servecap waits until the server's health URL answers (``health_url``, or the protocol's own
health path), asks its metadata API what the model takes (:mod:`targets.common.foreign`),
then loads it like any target. Its CPU and memory come from the Docker stats API
(``containers`` or ``label``) or psutil (``pid``, over the process tree); without any of them
the summary says that the target's resources were not measured. The external launcher
(:mod:`targets.launchers.external`) starts and stops nothing.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from targets.common.foreign import ForeignConfig, ForeignKind
from targets.common.loopback import checked_port
from targets.config import StrictModel, TargetConfig
from targets.kind import MetricsSource
from targets.launch_types import Probe
from targets.protocols import get_protocol

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_host(url: str, field: str = "url") -> str:
    """The host of an http(s) URL; ValueError naming the field and what is wrong with it."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{field} '{url}' is not an http:// or https:// URL with a host")
    checked_port(url, field)
    return parts.hostname


class ExternalResources(StrictModel):
    """Where the external server's resource use is read (at most one CPU/RAM source)."""

    containers: tuple[str, ...] = Field(
        default=(), description="Docker container names or ids (Docker stats API)"
    )
    label: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.\-/]+(=.*)?$",
        description="every running container with this label, key or key=value (Docker)",
    )
    pid: int | None = Field(
        default=None, ge=1, description="the server's process: psutil over its process tree"
    )
    prometheus_url: str | None = Field(
        default=None, description="the server's Prometheus metrics (scraped during the run)"
    )
    prometheus_format: Literal["triton", "servecap"] = Field(
        default="triton", description="whose metric names: Triton's or a servecap server's"
    )

    @model_validator(mode="after")
    def _one_source(self) -> ExternalResources:
        given = [n for n, v in (("containers", self.containers), ("label", self.label),
                                ("pid", self.pid)) if v]  # fmt: skip
        if len(given) > 1:
            raise ValueError(
                f"give one of containers, label or pid (got {' and '.join(given)}): each is a "
                "whole view of the server's CPU and memory"
            )
        return self

    @property
    def measured(self) -> bool:
        return bool(self.containers or self.label or self.pid)


class ExternalConfig(ForeignConfig):
    """A running server at ``url`` (``host`` and ``port`` are not used)."""

    kind: Literal["external"] = "external"
    url: str = Field(description="the server's base URL, e.g. http://127.0.0.1:8000")
    grpc_target: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}$",
        description="host:port of its gRPC endpoint (gRPC protocols)",
    )
    health_url: str | None = Field(
        default=None, description="answers 200 when the server is ready; default per protocol"
    )
    allow_remote: bool = Field(
        default=False,
        description="allow non-loopback addresses: load then leaves this host (be sure it is "
        "meant)",
    )
    resources: ExternalResources = Field(default_factory=ExternalResources)

    @model_validator(mode="after")
    def _loopback(self) -> ExternalConfig:
        urls = {"url": self.url, "health_url": self.health_url,
                "resources.prometheus_url": self.resources.prometheus_url}  # fmt: skip
        for field, url in urls.items():
            if url is None:
                continue
            host = url_host(url, field)
            if not self.allow_remote and not is_loopback(host):
                raise ValueError(
                    f"{field} {url} is not a loopback address: servecap sends load only to "
                    "this host unless the target sets allow_remote: true"
                )
        if self.grpc_target is not None:
            host, _, port = self.grpc_target.rpartition(":")
            if not 1 <= int(port) <= 65535:
                raise ValueError(f"grpc_target {self.grpc_target}: port '{port}' is not a "
                                 "number from 1 to 65535")  # fmt: skip
            if not self.allow_remote and not is_loopback(host):
                raise ValueError(
                    f"grpc_target {self.grpc_target} is not a loopback address; set "
                    "allow_remote: true if load must leave this host"
                )
        if get_protocol(self.protocol).transport == "grpc" and self.grpc_target is None:
            raise ValueError(f"protocol {self.protocol} needs grpc_target (host:port)")
        return self

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")

    @property
    def grpc_address(self) -> str | None:
        return self.grpc_target


class ExternalKind(ForeignKind):
    name = "external"
    config_model: ClassVar[type[TargetConfig]] = ExternalConfig
    description = "a server servecap does not start: any URL speaking one of its protocols"
    launcher: ClassVar[str | None] = "external"

    def health_url(self, config: TargetConfig) -> str | None:
        assert isinstance(config, ExternalConfig)
        return config.health_url or super().health_url(config)

    def readiness(self, config: TargetConfig) -> list[Probe]:
        url = self.health_url(config)
        return [Probe(url=url)] if url else []  # the launcher then connects to url

    def ports(self, config: TargetConfig) -> dict[str, tuple[str, int]]:
        return {}  # binds nothing: the server is already there

    def metrics(self, config: TargetConfig) -> MetricsSource | None:
        assert isinstance(config, ExternalConfig)
        url = config.resources.prometheus_url
        if url is None:
            return None
        if config.resources.prometheus_format == "servecap":
            from targets.common.metrics import source as servecap_source

            return servecap_source(url)
        from targets.common.triton_metrics import source as triton_source

        return triton_source(url)

    def unsupported(self, launcher: str) -> str | None:
        return None  # whatever --launcher says, servecap starts nothing


KIND = ExternalKind()
