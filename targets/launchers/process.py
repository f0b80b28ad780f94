"""Process launcher: each process of a target in its own process group, nothing left behind.

Start order follows the kind's plan (:meth:`targets.kind.Kind.process_plan`); each process
must pass its readiness check before the next starts. A target's ``cpuset`` pins every
process it starts (``sched_setaffinity`` before exec; children inherit it). Stop is reverse
order: SIGTERM to the whole group, then SIGKILL after a grace period, then any straggling
descendant is killed. Children also get ``PR_SET_PDEATHSIG`` so
that if the harness itself dies they are told to stop.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from targets.config import TargetConfig, parse_cpuset
from targets.launch_types import LaunchError, ProcessSpec, prepare_dirs
from targets.launchers.base import (
    RunningTarget,
    port_is_free,
    probe_http,
    probe_tcp,
    tail,
    with_fetched_model,
)
from targets.launchers.supervise import Identity, Supervisor
from targets.registry import get_kind

STOP_GRACE_S = 10.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def child_setup(cpus: list[int] | None) -> Callable[[], None]:
    """What a child runs between fork and exec: die with its parent (SIGTERM when the harness
    dies, even by SIGKILL), then pin itself to ``cpus``."""

    def setup() -> None:  # runs in the child between fork and exec
        _die_with_parent()
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup


class ProcessLauncher:
    name = "process"

    def __init__(self, stop_grace_s: float = STOP_GRACE_S) -> None:
        self.stop_grace_s = stop_grace_s

    def preflight(self, name: str, config: TargetConfig) -> None:
        check_can_start(name, config)

    @contextlib.contextmanager
    def launch(self, name: str, config: TargetConfig, logs_dir: Path) -> Iterator[RunningTarget]:
        check_can_start(name, config)
        t0 = time.monotonic()
        config = with_fetched_model(name, config)  # part of the cold start
        kind = get_kind(config.kind)
        plan = kind.process_plan(name, config)
        shared = kind.launch_env(config)
        cpus = parse_cpuset(config.cpuset) if config.cpuset else None
        logs_dir.mkdir(parents=True, exist_ok=True)
        started: list[subprocess.Popen[bytes]] = []
        supervisor: Supervisor | None = None
        try:
            for spec in plan:
                started.append(self._start(spec, logs_dir, cpus, shared))
                self._wait_ready(name, spec, started[-1], logs_dir, config.ready_timeout_s, t0)
            supervisor = Supervisor(
                kind, plan, started, logs_dir,
                start=lambda spec: self._start(spec, logs_dir, cpus, shared),
                wait_ready=lambda spec, proc: self._wait_ready(
                    name, spec, proc, logs_dir, config.ready_timeout_s, time.monotonic()),
                ready_urls=[p.url for p in kind.readiness(config) if p.url],
                ready_timeout_s=config.ready_timeout_s,
            )  # fmt: skip
            yield RunningTarget(
                name=name,
                config=config,
                base_url=config.base_url,
                launcher=self.name,
                time_to_ready_s=time.monotonic() - t0,
                pids=supervisor.pids,
                logs_dir=logs_dir,
                health=supervisor.health,
                control=supervisor,
            )
        finally:
            if supervisor is not None:
                supervisor.close()
            for proc in reversed(started):
                stop_process_group(proc, self.stop_grace_s)

    @staticmethod
    def _start(
        spec: ProcessSpec,
        logs_dir: Path,
        cpus: list[int] | None = None,
        shared: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        log_path = logs_dir / f"{spec.name}.log"
        prepare_dirs(spec)
        env = {**os.environ, **(shared or {}), **spec.env}
        with log_path.open("ab") as log:
            return subprocess.Popen(
                spec.argv,
                env=env,
                cwd=spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=child_setup(cpus),
            )

    @staticmethod
    def _wait_ready(
        target: str,
        spec: ProcessSpec,
        proc: subprocess.Popen[bytes],
        logs_dir: Path,
        timeout_s: float,
        t0: float,
    ) -> None:
        log_path = logs_dir / f"{spec.name}.log"
        while True:
            if proc.poll() is not None:
                raise LaunchError(
                    f"target '{target}': process '{spec.name}' exited with code {proc.returncode} "
                    f"before becoming ready; last lines of {log_path}:\n{tail(log_path)}"
                )
            if spec.ready_url is not None:
                if probe_http(spec.ready_url):
                    return
            elif spec.ready_port is None or probe_tcp(spec.ready_port):
                return
            if time.monotonic() - t0 > timeout_s:
                what = spec.ready_url or f"port {spec.ready_port}"
                raise LaunchError(
                    f"target '{target}': '{spec.name}' not ready after {timeout_s:.0f} s "
                    f"(waiting for {what}); raise targets.{target}.ready_timeout_s if it is only "
                    f"slow. Last lines of {log_path}:\n{tail(log_path)}"
                )
            time.sleep(0.2)


def check_can_start(name: str, config: TargetConfig) -> None:
    """Fail before starting anything when the target cannot possibly start: what its kind
    says (a missing model...), a port already taken, no process plan at all."""
    kind = get_kind(config.kind)
    kind.process_plan(name, config)  # raises for kinds that run only as containers
    problems = kind.problems(name, config)
    for field, (host, port) in kind.ports(config).items():
        if not port_is_free(host, port):
            problems.append(
                f"target '{name}': {field} {port} on {host} is already in use"
                f"{_port_owner(port)}; stop that process or set targets.{name}.{field}"
            )
    if problems:
        raise LaunchError("\n  - ".join(problems))


def _port_owner(port: int) -> str:
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            listening = conn.status == psutil.CONN_LISTEN
            if conn.laddr and conn.laddr.port == port and listening and conn.pid:
                proc = psutil.Process(conn.pid)
                return f" by pid {conn.pid} ({' '.join(proc.cmdline()[:3])})"
    return ""


def stop_process_group(proc: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """TERM the process's group, KILL it after ``grace_s``, then kill any stray descendant."""
    try:
        leader = psutil.Process(proc.pid)
        group = Identity(proc.pid, leader.create_time())
        descendants = leader.children(recursive=True)
    except psutil.Error:  # gone already: its group, if any, holds only our processes
        group, descendants = Identity(proc.pid, 0.0), []
    group.signal_group(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        group.signal_group(signal.SIGKILL)
        proc.wait(timeout=5)
    group.signal_group(signal.SIGKILL)  # workers that outlived their master
    _, alive = psutil.wait_procs(descendants, timeout=0.5)
    for child in alive:  # psutil's objects: a reused pid is not killed
        with contextlib.suppress(psutil.Error):
            child.kill()
