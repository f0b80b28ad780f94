"""The plain vocabulary kinds and launchers share: what a kind declares about starting itself
(its processes, where they run, what answers when ready) and the error a launch raises.

It imports nothing of servecap, so every module of ``targets/`` (the kinds, the launchers,
the registry, the container entrypoint) may import it without making a cycle.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class LaunchError(RuntimeError):
    """A target could not be started (or stopped); the message names the target and the cause."""


@dataclass(frozen=True)
class ProcessSpec:
    """One process of a target (a server, nginx, redis, a queue worker...)."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    role: str = ""
    """The docker-compose.yml service that runs this process in containers (its ``serve``
    command picks the process of this role from the kind's plan)."""
    cwd: Path | None = None
    ready_url: str | None = None
    """GET this URL until it answers 200; None = ready once started."""
    ready_port: int | None = None
    """Or: wait until this TCP port on 127.0.0.1 accepts connections."""
    fresh_dirs: tuple[Path, ...] = ()
    """Folders emptied and made (mode 0700) just before the process starts."""


def prepare_dirs(spec: ProcessSpec) -> None:
    """Empty and make the spec's fresh folders (mode 0700) before its process starts."""
    for folder in spec.fresh_dirs:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, mode=0o700)


@dataclass(frozen=True)
class PartRef:
    """One part of a running target that a fault acts on: a process tree or a container."""

    label: str
    pid: int | None = None
    container: str | None = None
    started: float | None = None
    """The process's start time (psutil's ``create_time``): with ``pid``, which process it is
    (a reused pid belongs to a process started later)."""


@dataclass(frozen=True)
class Probe:
    """A readiness check: ``url`` answers 200 (with ``needle`` in its body, when given), or
    ``tcp_port`` on 127.0.0.1 accepts connections."""

    url: str | None = None
    needle: str | None = None
    tcp_port: int | None = None


@dataclass(frozen=True)
class Placement:
    """Where a process plan runs: on this host (process launcher) or inside a container.

    In a container the plan is computed there (``targets.docker.entrypoint serve ROLE``), so
    interpreter, code and model paths are the container's; servers that may run as replicas
    share their port (SO_REUSEPORT) and private files go under the container's /tmp.
    """

    container: bool = False

    @property
    def share_port(self) -> bool:
        return self.container


HOST = Placement()
CONTAINER = Placement(container=True)


class HasModelPath(Protocol):
    @property
    def model_path(self) -> str: ...


def resolve_model_path(config: HasModelPath) -> Path:
    """A target's ``model_path`` as an absolute path (a relative one is from the working
    folder)."""
    path = Path(config.model_path)
    return path if path.is_absolute() else (Path.cwd() / path).resolve()
