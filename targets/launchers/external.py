"""External launcher: for servers servecap does not start (the ``external`` kind).

Same interface as the other launchers, but it starts and stops nothing:

    pre-flight   the server's health URL answers 200 within ready_timeout_s (else a LaunchError
                 naming the URL and the last reason); the resources named exist: the
                 containers (Docker API) or the process (psutil)
    launch       the same wait (time_to_ready_s is 0 when it is already up), then a
                 RunningTarget whose pids / containers are the ``resources`` given, so the
                 collectors sample them as they sample servecap's own targets; its health
                 check reports a watched process or container that went away
    tear down    nothing: the server is not ours
"""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from targets.common import loopback
from targets.config import TargetConfig
from targets.launch_types import LaunchError
from targets.launchers.base import RunningTarget
from targets.registry import get_kind

POLL_S = 0.25


def probe(url: str | None, base_url: str, timeout_s: float = 2.0) -> str | None:
    """None when the server is up (``url`` answers 200, or without one a TCP connection to
    ``base_url`` opens), else why not."""
    if url is None:
        parts = urllib.parse.urlsplit(base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            with socket.create_connection((parts.hostname or "", port), timeout=timeout_s):
                return None
        except OSError as err:
            return f"cannot connect to {parts.hostname}:{port} ({err.strerror or err})"
    try:
        with loopback.urlopen(url, timeout_s) as resp:
            return None if resp.status == 200 else f"HTTP {resp.status}"
    except urllib.error.HTTPError as err:
        return f"HTTP {err.code}"
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return str(getattr(reason, "strerror", None) or reason)


def wait_ready(name: str, config: TargetConfig) -> float:
    """Seconds until the server answered its health check; LaunchError after
    ``ready_timeout_s``."""
    kind = get_kind(config.kind)
    probes = kind.readiness(config)
    url = probes[0].url if probes else None
    t0 = time.monotonic()
    deadline = t0 + config.ready_timeout_s
    while True:
        why = probe(url, config.base_url)
        if why is None:
            return time.monotonic() - t0
        if time.monotonic() >= deadline:
            raise LaunchError(
                f"target '{name}': the external server at {url or config.base_url} is not "
                f"ready after {config.ready_timeout_s:.0f} s ({why}); start it first, or fix "
                f"targets.{name}.url / health_url"
            )
        time.sleep(POLL_S)


def resolve_containers(name: str, config: TargetConfig) -> list[str]:
    """The ids of the containers named by the target's ``resources`` (none: [])."""
    resources = getattr(config, "resources", None)
    if resources is None or not (resources.containers or resources.label):
        return []
    from targets.launchers.docker.engine import docker_client

    client = docker_client()
    if resources.label:
        found = client.containers.list(filters={"label": resources.label})
        if not found:
            raise LaunchError(f"target '{name}': no running container has label {resources.label}")
        return [c.id for c in found]
    ids = []
    for ref in resources.containers:
        try:
            container = client.containers.get(ref)
        except Exception:
            raise LaunchError(
                f"target '{name}': no container '{ref}' (resources.containers)"
            ) from None
        if container.status != "running":
            raise LaunchError(f"target '{name}': container '{ref}' is {container.status}")
        ids.append(container.id)
    return ids


def resolve_pid(name: str, config: TargetConfig) -> list[int]:
    resources = getattr(config, "resources", None)
    pid = resources.pid if resources is not None else None
    if pid is None:
        return []
    if not psutil.pid_exists(pid):
        raise LaunchError(f"target '{name}': no process {pid} (resources.pid)")
    return [pid]


def health_check(pids: list[int], containers: list[str]) -> Callable[[], str | None]:
    """What went wrong with the watched process or containers (None while they run)."""
    started = {pid: psutil.Process(pid).create_time() for pid in pids}

    def check() -> str | None:
        for pid, created in started.items():
            try:
                if psutil.Process(pid).create_time() != created:
                    return f"process {pid} exited"
            except psutil.NoSuchProcess:
                return f"process {pid} exited"
        if containers:
            from targets.launchers.docker.engine import containers_health, docker_client

            return containers_health(docker_client(), containers)
        return None

    return check


class ExternalLauncher:
    name = "external"

    def preflight(self, name: str, config: TargetConfig) -> None:
        problems = get_kind(config.kind).problems(name, config)
        if problems:
            raise LaunchError("; ".join(problems))
        wait_ready(name, config)
        resolve_containers(name, config)
        resolve_pid(name, config)

    @contextlib.contextmanager
    def launch(self, name: str, config: TargetConfig, logs_dir: Path) -> Iterator[RunningTarget]:
        ready_s = wait_ready(name, config)
        pids = resolve_pid(name, config)
        containers = resolve_containers(name, config)
        yield RunningTarget(
            name=name,
            config=config,
            base_url=config.base_url,
            launcher=self.name,
            time_to_ready_s=ready_s,
            pids=pids,
            containers=containers,
            logs_dir=None,
            health=health_check(pids, containers),
        )
