"""Launchers start a target and stop it without leaving anything behind.

One interface (:class:`targets.launchers.base.Launcher`), several implementations:
``process`` (local process groups, the default), ``docker`` (containers from
docker-compose.yml) and ``external`` (starts nothing: a server that is already running, for
the kinds that say so). Use :func:`get_launcher` to pick one by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from targets.launch_types import LaunchError
from targets.launchers.base import Launcher, RunningTarget

if TYPE_CHECKING:
    from targets.kind import Kind

LAUNCHERS = ("process", "docker")


def get_launcher(
    name: str, kind: Kind | None = None, compose_overrides: Sequence[Path] = ()
) -> Launcher:
    """The launcher called ``name``, or the one ``kind`` always uses (:attr:`Kind.launcher`);
    ``compose_overrides``: docker-compose.yml override files for the docker launcher."""
    if kind is not None and kind.launcher is not None:
        name = kind.launcher
    if name == "external":
        from targets.launchers.external import ExternalLauncher

        return ExternalLauncher()
    if name == "process":
        from targets.launchers.process import ProcessLauncher

        return ProcessLauncher()
    if name == "docker":
        from targets.launchers.docker import DockerLauncher

        return DockerLauncher(overrides=tuple(compose_overrides))
    raise LaunchError(f"unknown launcher '{name}'; choose one of: {', '.join(LAUNCHERS)}")


__all__ = ["LAUNCHERS", "LaunchError", "Launcher", "RunningTarget", "get_launcher"]
