"""The ``container`` kind: any image you built, started and torn down by the Docker launcher.

::

    targets:
      my-server:
        kind: container
        image: registry.example.com/team/classifier:1.4   # present locally (built or pulled)
        command: ["serve", "--port", "{port}"]             # {port} is the target's port
        port: 8300
        health_path: /ready
        protocol: image-upload
        output_name: scores
        cpus: 1.0
        memory_limit_mb: 2048

It runs as the ``container`` service of docker-compose.yml (host network, docker-init,
labelled ``io.servecap.managed`` like every servecap container, so nothing is left after a
run, a failure or Ctrl-C, and ``servecap clean`` finds it), with the same ``cpus``,
``memory_limit_mb``, ``cpuset``, ``gpu`` and ``replicas`` fields as servecap's own
containers. The image's user, file system and healthcheck are its own: servecap does not
impose its read-only, non-root defaults on an image it did not build. The server must bind
127.0.0.1 on the host network (the command is where you say so). Replicas share the port, so
more than one needs a server that sets SO_REUSEPORT (``reuse_port: true`` says it does).

**Privileges.** It runs on the host's network as whatever user its image says (often root), so
Docker's default capabilities would give it NET_RAW (read and forge the host's traffic),
CHOWN, DAC_OVERRIDE, SETUID and more. A model server that reads its files and answers on a
port above 1024 needs none of them: every capability is dropped (``cap_drop: [ALL]``, rather
than NET_RAW alone: what is not listed cannot be missed) and ``no-new-privileges`` keeps a
setuid program from getting any back. An image that needs some lists them in
``capabilities`` (``SETUID``/``SETGID`` for an entrypoint that switches user with gosu,
``NET_BIND_SERVICE`` for a port below 1024, ``CHOWN``/``DAC_OVERRIDE`` for one that fixes
file ownership at start).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from targets.common.foreign import ForeignConfig, ForeignKind
from targets.config import TargetConfig
from targets.kind import Containers
from targets.launch_types import Probe

SERVICE = "container"
PORT_PLACEHOLDER = "{port}"
CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})  # fmt: skip
"""What ``capabilities`` may give back: Docker's default set (nothing beyond it)."""


class ContainerConfig(ForeignConfig):
    kind: Literal["container"] = "container"
    image: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-/:@]*$",
        description="the image to run (present in the local engine: built or pulled)",
    )
    command: tuple[str, ...] = Field(
        default=(),
        description="the container's command (default: the image's); '{port}' is replaced by "
        "the target's port",
    )
    health_path: str | None = Field(
        default=None,
        pattern=r"^/",
        description="answers 200 when the server is ready; default: the protocol's, else a TCP "
        "connection to the port",
    )
    grpc_port: int | None = Field(
        default=None, ge=1024, le=65535, description="gRPC port (gRPC protocols)"
    )
    reuse_port: bool = Field(
        default=False,
        description="the server sets SO_REUSEPORT, so replicas can share its port",
    )
    capabilities: tuple[str, ...] = Field(
        default=(),
        description="Linux capabilities the image needs back (all are dropped), e.g. SETUID and "
        "SETGID for an entrypoint that switches user, NET_BIND_SERVICE for a port below 1024",
    )

    @field_validator("capabilities")
    @classmethod
    def _known_capabilities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(c.upper().removeprefix("CAP_") for c in value))
        unknown = [c for c in names if c not in CAPABILITIES]
        if unknown:
            raise ValueError(f"capabilities {', '.join(unknown)} cannot be given back; "
                             f"choose from {', '.join(sorted(CAPABILITIES))}")  # fmt: skip
        return names

    @model_validator(mode="after")
    def _container_checks(self) -> ContainerConfig:
        from targets.protocols import get_protocol

        if get_protocol(self.protocol).transport == "grpc" and self.grpc_port is None:
            raise ValueError(f"protocol {self.protocol} needs grpc_port")
        if self.replicas > 1 and not self.reuse_port:
            raise ValueError(
                "replicas > 1 share the target's port on the host network: set reuse_port: "
                "true if the server sets SO_REUSEPORT, else run one replica"
            )
        return self

    @property
    def grpc_address(self) -> str | None:
        return f"127.0.0.1:{self.grpc_port}" if self.grpc_port else None

    def argv(self) -> list[str]:
        return [a.replace(PORT_PLACEHOLDER, str(self.port)) for a in self.command]


class ContainerKind(ForeignKind):
    name = "container"
    config_model: ClassVar[type[TargetConfig]] = ContainerConfig
    description = "any container image you built, speaking one of servecap's protocols"
    containers = Containers((SERVICE,))
    runs_as_processes = False

    def health_url(self, config: TargetConfig) -> str | None:
        assert isinstance(config, ContainerConfig)
        if config.health_path is not None:
            return f"{config.base_url}{config.health_path}"
        return super().health_url(config)

    def readiness(self, config: TargetConfig) -> list[Probe]:
        assert isinstance(config, ContainerConfig)
        probes = super().readiness(config)
        if config.grpc_port is not None:
            probes.append(Probe(tcp_port=config.grpc_port))
        return probes

    def ports(self, config: TargetConfig) -> dict[str, tuple[str, int]]:
        assert isinstance(config, ContainerConfig)
        ports = {"port": (config.host, config.port)}
        if config.grpc_port is not None:
            ports["grpc_port"] = ("127.0.0.1", config.grpc_port)
        return ports

    def compose_env(self, config: TargetConfig) -> dict[str, str]:
        assert isinstance(config, ContainerConfig)
        return {"SERVECAP_CONTAINER_IMAGE": config.image}

    def compose_overrides(self, config: TargetConfig) -> dict[str, dict[str, Any]]:
        assert isinstance(config, ContainerConfig)
        service: dict[str, Any] = {}
        if config.command:
            service["command"] = config.argv()
        if config.capabilities:
            service["cap_add"] = list(config.capabilities)
        return {SERVICE: service} if service else {}


KIND = ContainerKind()
