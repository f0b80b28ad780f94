"""Launchers start a target and stop it without leaving anything behind.

One interface (:class:`targets.launchers.base.Launcher`), several implementations:
``process`` (local process groups, the default) and ``docker`` (containers from
docker-compose.yml). Use :func:`get_launcher` to pick one by name.
"""

from __future__ import annotations

from targets.launchers.base import Launcher, LaunchError, RunningTarget

LAUNCHERS = ("process", "docker")


def get_launcher(name: str) -> Launcher:
    if name == "process":
        from targets.launchers.process import ProcessLauncher

        return ProcessLauncher()
    if name == "docker":
        from targets.launchers.docker import DockerLauncher

        return DockerLauncher()
    raise LaunchError(f"unknown launcher '{name}'; choose one of: {', '.join(LAUNCHERS)}")


__all__ = ["LAUNCHERS", "LaunchError", "Launcher", "RunningTarget", "get_launcher"]
