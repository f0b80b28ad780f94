"""Supervision and fault control for a target started as processes.

The process launcher starts a target's plan in order (:class:`~targets.kind.Kind`), one
process group each. :class:`Supervisor` watches them during the run, as a deployment's
supervisor would: a process that a fault killed or restarted (``loadtests.faults``) is
started again from its spec and waited for until ready, in the background, while the run
goes on; a process that died for any other reason is reported by :meth:`Supervisor.health`
and fails the run, as it always did. Parts:

* a role of the plan (``jobqueue-worker``, ``redis``, ``nginx``...) or its alias in
  :attr:`Kind.part_roles` (``worker``, ``web``, ``redis``): the root process of that spec;
* ``model-server``: the model-serving role (:attr:`Containers.primary`, else the last spec);
* ``worker`` of a kind with no worker role: a worker process forked by the model server
  (uvicorn's and gunicorn's own supervisors start a new one when it dies).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import psutil

from targets.common.settings import ServerSettings, env_name
from targets.kind import Kind
from targets.launch_types import LaunchError, PartRef, ProcessSpec
from targets.launchers.base import probe_http, tail

MODEL_PATH_ENV = env_name(ServerSettings, "model_path")
"""The servers' setting for their model (job-queue workers read the same)."""
Start = Callable[[ProcessSpec], subprocess.Popen[bytes]]
WaitReady = Callable[[ProcessSpec, subprocess.Popen[bytes]], None]


@dataclass
class Supervisor:
    """The running processes of one target, their restarts, and the faults' control."""

    kind: Kind
    plan: list[ProcessSpec]
    started: list[subprocess.Popen[bytes]]
    logs_dir: Path
    start: Start
    wait_ready: WaitReady
    pids: list[int] = field(default_factory=list)
    """The root pids now (updated in place on a restart: the samplers' view)."""
    ready_urls: list[str] = field(default_factory=list)
    """The target's own readiness checks (:meth:`Kind.readiness`): a rolling restart waits
    for them after each process (a job-queue worker is ready once the web counts it)."""
    ready_timeout_s: float = 120.0
    expected: set[int] = field(default_factory=set)
    """Pids a fault killed or restarted: their death is not a failure."""
    restarts: list[str] = field(default_factory=list)
    _restarting: set[int] = field(default_factory=set)
    _closed: bool = False
    _failed: str | None = None
    _affinity: dict[int, list[int]] = field(default_factory=dict)
    _paused: dict[str, list[int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.pids[:] = [p.pid for p in self.started]

    # ------------------------------------------------------------------ health

    def health(self) -> str | None:
        """None while every process runs or is being restarted after a fault."""
        with self._lock:
            if self._failed is not None:
                return self._failed
            for i, (spec, proc) in enumerate(zip(self.plan, self.started, strict=False)):
                code = proc.poll()
                if code is None or i in self._restarting:
                    continue
                if proc.pid in self.expected:
                    if self._closed:
                        continue
                    # Started here, on the thread that runs the target (a child's parent-death
                    # signal follows the thread that started it); waited for in the background.
                    self._restarting.add(i)
                    new = self.start(spec)
                    self.started[i] = new
                    self.pids[i] = new.pid
                    threading.Thread(target=self._await, args=(i, new), daemon=True,
                                     name=f"servecap-restart-{spec.name}").start()  # fmt: skip
                    continue
                how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                log = self.logs_dir / f"{spec.name}.log"
                return f"process '{spec.name}' {how}; last lines of {log}:\n{tail(log, 8)}"
        return None

    def close(self) -> None:
        """No restart from now on (the target is being stopped)."""
        with self._lock:
            self._closed = True

    def _await(self, i: int, proc: subprocess.Popen[bytes]) -> None:
        spec = self.plan[i]
        try:
            self.wait_ready(spec, proc)
            self.restarts.append(spec.name)
        except LaunchError as err:
            with self._lock:
                self._failed = f"process '{spec.name}' could not be restarted: {err}"
        finally:
            with self._lock:
                self._restarting.discard(i)

    # ------------------------------------------------------------------ parts

    def resolve(self, part: str, index: int) -> PartRef:
        roles = [spec.role for spec in self.plan]
        role = self.kind.part_roles.get(part, part)
        if part == "model-server":
            primary = self.kind.containers.primary if self.kind.containers else None
            role = primary if primary in roles else roles[-1]
        if role in roles:
            matches = [i for i, r in enumerate(roles) if r == role]
            if index > len(matches):
                raise LaunchError(f"part {part} {index}: the target has {len(matches)}")
            i = matches[index - 1]
            with self._lock:
                pid = self.started[i].pid
            return PartRef(f"{self.plan[i].name} (pid {pid})", pid=pid)
        if part == "worker":
            return self._forked_worker(index)
        allowed = sorted({"model-server", "worker", *self.kind.part_roles, *roles})
        raise LaunchError(f"no part '{part}' in a {self.kind.name} target; parts: "
                          f"{', '.join(allowed)}")  # fmt: skip

    def _forked_worker(self, index: int) -> PartRef:
        server = self.resolve("model-server", 1)
        assert server.pid is not None
        try:
            children = [c for c in psutil.Process(server.pid).children()
                        if "resource_tracker" not in " ".join(c.cmdline())]  # fmt: skip
        except psutil.Error as err:
            raise LaunchError(f"cannot list the model server's workers: {err}") from None
        children.sort(key=lambda c: c.create_time())
        if index > len(children):
            raise LaunchError(f"part worker {index}: the model server has {len(children)} "
                              "worker process(es) (workers: N > 1 forks them)")  # fmt: skip
        child = children[index - 1]
        return PartRef(f"worker {index} (pid {child.pid}) of {server.label}", pid=child.pid)

    def _tree(self, pid: int) -> list[int]:
        try:
            root = psutil.Process(pid)
            return [pid, *(c.pid for c in root.children(recursive=True))]
        except psutil.Error:
            return [pid]

    # ------------------------------------------------------------------ actions

    def kill(self, ref: PartRef) -> None:
        assert ref.pid is not None
        self.expected.add(ref.pid)
        if ref.pid in self.pids:  # a root: its group (its workers) goes with it
            _signal_group(ref.pid, signal.SIGKILL)
        else:
            os.kill(ref.pid, signal.SIGKILL)

    def restart(self, ref: PartRef) -> None:
        assert ref.pid is not None
        self.expected.add(ref.pid)
        if ref.pid in self.pids:
            _signal_group(ref.pid, signal.SIGTERM)
        else:
            os.kill(ref.pid, signal.SIGTERM)

    def pause(self, ref: PartRef) -> None:
        assert ref.pid is not None
        tree = self._tree(ref.pid)
        self._paused[ref.label] = tree
        for pid in tree:
            os.kill(pid, signal.SIGSTOP)

    def resume(self, ref: PartRef) -> None:
        for pid in self._paused.pop(ref.label, []):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                continue

    def update_model(self, part: str, model_path: str) -> None:
        """A rolling restart of the part's processes on ``model_path`` (the model-load
        pattern): each is restarted with the new model and ready before the next goes."""
        first = self.resolve(part, 1)
        role = next(self.plan[i].role for i, p in enumerate(self.started) if p.pid == first.pid)
        indices = [i for i, spec in enumerate(self.plan) if spec.role == role]
        path = str(Path(model_path).resolve())
        threading.Thread(target=self._roll, args=(indices, path), daemon=True,
                         name="servecap-model-update").start()  # fmt: skip

    def _roll(self, indices: list[int], model_path: str) -> None:
        for i in indices:
            with self._lock:
                if self._closed:
                    return
                spec = self.plan[i]
                self.plan[i] = replace(spec, env={**spec.env, MODEL_PATH_ENV: model_path})
                old = self.started[i].pid
                self.expected.add(old)
                restarts = len(self.restarts)
            _signal_group(old, signal.SIGTERM)
            deadline = time.monotonic() + self.ready_timeout_s
            while True:  # health() starts it again; _await counts it once it is ready
                with self._lock:
                    if self._closed or self._failed is not None:
                        return
                    done = len(self.restarts) > restarts and i not in self._restarting
                if done and all(probe_http(url) for url in self.ready_urls):
                    break
                if time.monotonic() > deadline:
                    with self._lock:
                        self._failed = (f"model update: '{spec.name}' not ready again after "
                                        f"{self.ready_timeout_s:.0f} s")  # fmt: skip
                    return
                time.sleep(0.1)

    def cpu_limit(self, ref: PartRef, cpus: float | None) -> None:
        """CPU affinity of the part's tree: the first ceil(cpus) of the CPUs it may use."""
        assert ref.pid is not None
        for pid in self._tree(ref.pid):
            try:
                proc = psutil.Process(pid)
                if cpus is None:
                    if pid in self._affinity:
                        proc.cpu_affinity(self._affinity.pop(pid))
                    continue
                allowed = self._affinity.setdefault(pid, proc.cpu_affinity() or [])
                proc.cpu_affinity(allowed[: max(1, math.ceil(cpus))])
            except psutil.Error:
                continue


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pgid, sig)
        except ProcessLookupError:
            return
