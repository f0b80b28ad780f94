"""Replicas behind an nginx upstream, for ``plan --verify``'s second balancer.

The Docker launcher's replicas share one port through SO_REUSEPORT: the kernel spreads
*connections* at random. To measure an explicit per-request balancer instead, this starts
``replicas`` one-container launches of the target, each on a port of its own, and nginx in
front of them (``round-robin``: nginx's default; ``least-conn``: ``least_conn``), with one
worker, pinned to the load generator's CPUs so that it takes nothing from the replicas. The
run then drives nginx's port as an ``external`` target whose CPU and memory are the replicas'
containers (Docker stats API), so the orchestrator measures it like any other.

Everything is stopped on the way out, whatever happens: nginx first, then each replica's
containers (their launcher's own teardown).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from targets.common.nginx import nginx_argv, run_dir, write_conf
from targets.common.settings import DEFAULT_MAX_BODY_BYTES
from targets.config import TargetConfig
from targets.launchers.base import LaunchError, port_is_free, probe_http
from targets.launchers.docker import DockerLauncher
from targets.protocols import get_protocol
from targets.registry import endpoint_for

NGINX_BALANCES = {"nginx-round-robin": "round-robin", "nginx-least-conn": "least-conn"}
"""``plan --balancer`` names of nginx's methods (targets.common.nginx: BALANCE_DIRECTIVES)."""
PORT_STRIDE = 4
"""A target uses its port and the three after it."""
READY_TIMEOUT_S = 30.0

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Balanced:
    """Replicas running behind nginx: where to send the load, what to measure."""

    url: str
    containers: tuple[str, ...]
    replica_ports: tuple[int, ...]


def replica_ports(
    base: int, replicas: int, is_free: Callable[[int], bool] | None = None
) -> list[int]:
    """``replicas`` ports for the replicas, each the first of a free block of four, above
    ``base`` + 100 (the balancer keeps ``base``)."""
    free = is_free or (lambda p: port_is_free("127.0.0.1", p))
    out: list[int] = []
    port = base + 100
    while len(out) < replicas:
        if port + PORT_STRIDE > 65_535:
            raise LaunchError(f"no {replicas} free port blocks above {base + 100}")
        if all(free(port + i) for i in range(PORT_STRIDE)):
            out.append(port)
        port += PORT_STRIDE
    return out


@contextlib.contextmanager
def nginx_replicas(
    name: str, config: TargetConfig, replicas: int, balancer: str, cpuset: str | None,
    logs_dir: Path, echo: Echo = print,
) -> Iterator[Balanced]:  # fmt: skip
    """Start ``replicas`` containers of ``config`` and nginx (``balancer``) on its port."""
    if balancer not in NGINX_BALANCES:
        raise ValueError(f"balancer must be one of {', '.join(NGINX_BALANCES)}: {balancer!r}")
    ports = replica_ports(config.port, replicas)
    launcher = DockerLauncher()
    with contextlib.ExitStack() as stack:
        ids: list[str] = []
        for i, port in enumerate(ports, start=1):
            one = config.model_copy(update={"port": port, "replicas": 1})
            running = stack.enter_context(
                launcher.launch(f"{name}-r{i}", one, logs_dir / f"replica-{i}")
            )
            ids.extend(running.containers)
            echo(f"[{name}] replica {i} ready on port {port}")
        url = stack.enter_context(
            _nginx(name, config, ports, NGINX_BALANCES[balancer], cpuset, logs_dir)
        )
        where = f", on CPUs {cpuset}" if cpuset else ""
        echo(f"[{name}] nginx {NGINX_BALANCES[balancer]} on {url} over ports "
             f"{', '.join(map(str, ports))}{where}")  # fmt: skip
        yield Balanced(url, tuple(ids), tuple(ports))


@contextlib.contextmanager
def _nginx(
    name: str, config: TargetConfig, ports: list[int], balance: str, cpuset: str | None,
    logs_dir: Path,
) -> Iterator[str]:  # fmt: skip
    prefix = run_dir(f"{name}-balancer", config.port)
    max_body = int(getattr(config, "max_body_bytes", DEFAULT_MAX_BODY_BYTES))
    conf = write_conf(prefix, "127.0.0.1", config.port, ports, max_body, 1, balance)
    argv = list(nginx_argv(prefix, conf))
    if cpuset:
        argv = ["taskset", "-c", cpuset, *argv]
    logs_dir.mkdir(parents=True, exist_ok=True)
    log = (logs_dir / "nginx.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{config.port}"
    endpoint = endpoint_for(config)
    health = get_protocol(endpoint.protocol).health_path(endpoint) or "/"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not probe_http(url + health):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LaunchError(f"target '{name}': nginx in front of the replicas did not "
                                  f"answer on {url} (log: {logs_dir / 'nginx.log'})")  # fmt: skip
            time.sleep(0.1)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGQUIT)  # graceful: finish what is in flight
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
