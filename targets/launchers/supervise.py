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

**Only ours.** A pid names a process only while it lives: once it is reaped the kernel may give
the number to another. Every process is therefore held as an :class:`Identity` (pid and start
time) and checked before it is signalled (kill, restart, stop, continue, CPU affinity) or its
death excused: a process group is signalled only while its leader is ours or gone (Linux keeps
a group's id from being reused while the group has members), never a bare pid as a fallback;
a stopped tree is continued process by process, each checked; an excused death is forgotten
once its process is restarted. Lifting a CPU limit gives the part's whole tree, as it is then,
its CPUs back, workers forked meanwhile included.
"""

from __future__ import annotations

import contextlib
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


@dataclass(frozen=True)
class Identity:
    """A process as no other can be taken for it: its pid and its start time."""

    pid: int
    started: float

    @classmethod
    def of(cls, pid: int) -> Identity | None:
        """The identity of the process with ``pid`` now (None: there is none)."""
        try:
            return cls(pid, psutil.Process(pid).create_time())
        except psutil.Error:
            return None

    def process(self) -> psutil.Process | None:
        """The process, if ``pid`` still names this one (a zombie too: its pid is not free)."""
        try:
            proc = psutil.Process(self.pid)
            return proc if proc.create_time() == self.started else None
        except psutil.Error:
            return None

    def signal(self, sig: int) -> bool:
        """Send ``sig`` to this process only (False: it is gone or the pid is another's)."""
        proc = self.process()
        if proc is None:
            return False
        try:
            proc.send_signal(sig)  # psutil checks the identity again, just before the kill
        except psutil.Error:
            return False
        return True

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the process group this process leads: while the leader is ours, or
        gone with members left (the kernel keeps a living group's id for it); never when the
        pid now names another process."""
        try:
            leader = psutil.Process(self.pid)
            if leader.create_time() != self.started:
                return  # the number is another process's now
        except psutil.NoSuchProcess:
            pass  # gone: a group still holding its id is made of our processes
        except psutil.Error:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)


def ref_identity(ref: PartRef) -> Identity:
    """The identity a part was resolved with (LaunchError for a part that is no process)."""
    if ref.pid is None or ref.started is None:
        raise LaunchError(f"{ref.label} is not a process resolved by this launcher")
    return Identity(ref.pid, ref.started)


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
    expected: set[Identity] = field(default_factory=set)
    """Processes a fault killed or restarted: their death is not a failure (forgotten once
    they are restarted)."""
    restarts: list[str] = field(default_factory=list)
    roots: list[Identity | None] = field(default_factory=list)
    """Who each started process is (None: it was gone before it could be looked at)."""
    _restarting: set[int] = field(default_factory=set)
    _closed: bool = False
    _failed: str | None = None
    _affinity: dict[str, tuple[list[int], dict[Identity, list[int]]]] = field(default_factory=dict)
    """Per part under a CPU limit: its root's CPUs before, and each limited process's."""
    _paused: dict[str, list[Identity]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.pids[:] = [p.pid for p in self.started]
        self.roots = [Identity.of(p.pid) for p in self.started]

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
                if self.roots[i] in self.expected:
                    if self._closed:
                        continue
                    # Started here, on the thread that runs the target (a child's parent-death
                    # signal follows the thread that started it); waited for in the background.
                    self.expected.discard(self.roots[i])  # excused once: its pid is free now
                    self._restarting.add(i)
                    new = self.start(spec)
                    self.started[i] = new
                    self.pids[i] = new.pid
                    self.roots[i] = Identity.of(new.pid)
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
                root = self.roots[i]
            if root is None or root.process() is None:
                raise LaunchError(f"part {part} {index} ({self.plan[i].name}) is not running")
            return PartRef(f"{self.plan[i].name} (pid {root.pid})", pid=root.pid,
                           started=root.started)  # fmt: skip
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
        return PartRef(f"worker {index} (pid {child.pid}) of {server.label}", pid=child.pid,
                       started=child.create_time())  # fmt: skip

    def _tree(self, ref: PartRef) -> list[psutil.Process]:
        """The part's process and its descendants now ([]: the part is gone, or its pid is
        another process's)."""
        root = ref_identity(ref).process()
        if root is None:
            return []
        with contextlib.suppress(psutil.Error):
            return [root, *root.children(recursive=True)]
        return [root]

    def _is_root(self, who: Identity) -> bool:
        with self._lock:
            return who in self.roots

    # ------------------------------------------------------------------ actions

    def kill(self, ref: PartRef) -> None:
        self._end(ref, signal.SIGKILL)

    def restart(self, ref: PartRef) -> None:
        self._end(ref, signal.SIGTERM)

    def _end(self, ref: PartRef, sig: int) -> None:
        """Excuse the part's death, then signal it: a root with its group (its workers go with
        it), a forked worker alone; LaunchError if it is no longer the process resolved."""
        who = ref_identity(ref)
        if who.process() is None:
            raise LaunchError(f"{ref.label} is gone (or its pid is another process's now)")
        if self._is_root(who):  # health() restarts it and forgets the excuse
            with self._lock:
                self.expected.add(who)
            who.signal_group(sig)
        elif not who.signal(sig):  # a forked worker: its server starts another
            raise LaunchError(f"{ref.label} is gone (or its pid is another process's now)")

    def pause(self, ref: PartRef) -> None:
        tree = self._tree(ref)
        if not tree:
            raise LaunchError(f"{ref.label} is gone (or its pid is another process's now)")
        self._paused[ref.label] = [Identity(p.pid, p.create_time()) for p in tree]
        for who in self._paused[ref.label]:
            who.signal(signal.SIGSTOP)

    def resume(self, ref: PartRef) -> None:
        for who in self._paused.pop(ref.label, []):
            who.signal(signal.SIGCONT)  # only a process that is still the one stopped

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
                old = self.roots[i]
                if old is not None:
                    self.expected.add(old)
                restarts = len(self.restarts)
            if old is not None:
                old.signal_group(signal.SIGTERM)
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
        """CPU affinity of the part's tree: the first ceil(cpus) of the CPUs it may use; None
        gives the tree as it is now its CPUs back (processes forked under the limit get the
        CPUs the part had before it)."""
        if cpus is None:
            before, saved = self._affinity.pop(ref.label, ([], {}))
            for proc in self._tree(ref):
                who = Identity(proc.pid, proc.create_time())
                with contextlib.suppress(psutil.Error):
                    proc.cpu_affinity(saved.get(who, before))
            return
        tree = self._tree(ref)
        if not tree:
            raise LaunchError(f"{ref.label} is gone (or its pid is another process's now)")
        before, saved = self._affinity.setdefault(ref.label, (tree[0].cpu_affinity() or [], {}))
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                allowed = saved.setdefault(Identity(proc.pid, proc.create_time()),
                                           proc.cpu_affinity() or before)  # fmt: skip
                proc.cpu_affinity(allowed[: max(1, math.ceil(cpus))])
