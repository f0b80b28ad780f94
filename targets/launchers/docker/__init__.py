"""The Docker launcher: targets as containers from docker-compose.yml.

:mod:`.launcher` (the launcher), :mod:`.environment` (what Compose is given),
:mod:`.engine` (Docker engine access, ``servecap clean``).
"""

from __future__ import annotations

from targets.launchers.docker.engine import MANAGED_LABEL, RUN_LABEL, clean, docker_client
from targets.launchers.docker.environment import (
    ContainerOptions,
    compose_env,
    container_env,
    options_for,
)
from targets.launchers.docker.launcher import DockerLauncher

__all__ = [
    "MANAGED_LABEL",
    "RUN_LABEL",
    "ContainerOptions",
    "DockerLauncher",
    "clean",
    "compose_env",
    "container_env",
    "docker_client",
    "options_for",
]
