"""The process launcher's supervisor acts only on its own processes: a pid is checked to still
name the process it was resolved as (pid and start time) before it is signalled or its death
excused; excuses are forgotten once used; a lifted CPU limit reaches processes forked under it.

Real processes (``sleep``, a small Python script), no target: each test takes a second or less.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from targets.kind import Kind
from targets.launchers.base import LaunchError, PartRef, ProcessSpec
from targets.launchers.process import ProcessLauncher, stop_process_group
from targets.launchers.supervise import Identity, Supervisor

FORK_ON_TRIGGER = """
import os, sys, time
from pathlib import Path
while not Path(sys.argv[1]).exists():
    time.sleep(0.02)
if os.fork() == 0:
    time.sleep(60)
    os._exit(0)
time.sleep(60)
"""


def wait_for(check: Callable[[], object], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def bystander() -> Iterator[psutil.Process]:
    """A process that is not the supervisor's (in the test's own process group)."""
    proc = subprocess.Popen(["sleep", "30"])
    yield psutil.Process(proc.pid)
    proc.kill()
    proc.wait()


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    argv = (sys.executable, "-c", FORK_ON_TRIGGER, str(tmp_path / "fork"))
    spec = ProcessSpec(name="srv", role="srv", argv=argv)

    def start(s: ProcessSpec) -> subprocess.Popen[bytes]:
        return ProcessLauncher._start(s, tmp_path)

    sup = Supervisor(Kind(), [spec], [start(spec)], tmp_path, start=start,
                     wait_ready=lambda s, p: None)  # fmt: skip
    yield sup
    sup.close()
    for proc in sup.started:
        stop_process_group(proc, 2)


def test_a_pid_that_now_names_another_process_is_never_signalled(
    supervisor: Supervisor, bystander: psutil.Process
) -> None:
    # resolved earlier as a worker that has since died; its pid now is the bystander's
    stale = PartRef(f"worker 1 (pid {bystander.pid})", pid=bystander.pid,
                    started=bystander.create_time() - 5)  # fmt: skip
    affinity = bystander.cpu_affinity()
    for action in (supervisor.kill, supervisor.restart, supervisor.pause,
                   lambda ref: supervisor.cpu_limit(ref, 1)):  # fmt: skip
        with pytest.raises(LaunchError, match="gone"):
            action(stale)
    assert bystander.status() != psutil.STATUS_STOPPED and bystander.is_running()
    assert bystander.cpu_affinity() == affinity and not supervisor.expected


def test_a_group_that_is_gone_is_never_replaced_by_a_bare_pid(bystander: psutil.Process) -> None:
    """The bystander leads no group: a group named after its pid does not exist, and that is
    the end of it (signalling the pid instead would kill a process that is not ours)."""
    Identity(bystander.pid, bystander.create_time()).signal_group(signal.SIGKILL)
    time.sleep(0.1)
    assert bystander.is_running() and bystander.status() != psutil.STATUS_ZOMBIE


def test_an_excused_death_is_forgotten_once_restarted(supervisor: Supervisor) -> None:
    first = supervisor.resolve("srv", 1)
    supervisor.kill(first)
    assert supervisor.expected == {Identity(first.pid or 0, first.started or 0)}
    wait_for(lambda: supervisor.health() is None and supervisor.pids[0] != first.pid)
    assert supervisor.expected == set()  # pruned: that pid may be anyone's now
    again = supervisor.resolve("srv", 1)
    os.killpg(again.pid or 0, signal.SIGKILL)  # a death no fault caused
    wait_for(supervisor.health)
    assert "was killed by signal 9" in str(supervisor.health())


def test_a_stopped_part_is_continued_only_where_it_is_still_ours(
    supervisor: Supervisor, bystander: psutil.Process
) -> None:
    ref = supervisor.resolve("srv", 1)
    supervisor.pause(ref)
    server = psutil.Process(ref.pid or 0)
    wait_for(lambda: server.status() == psutil.STATUS_STOPPED)
    bystander.suspend()  # stopped by someone else, and its pid taken for one of the part's
    supervisor._paused[ref.label].append(Identity(bystander.pid, bystander.create_time() - 5))
    supervisor.resume(ref)
    wait_for(lambda: server.status() != psutil.STATUS_STOPPED)
    time.sleep(0.1)
    assert bystander.status() == psutil.STATUS_STOPPED  # not ours: left as it was
    bystander.resume()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_lifting_a_cpu_limit_reaches_workers_forked_under_it(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    ref = supervisor.resolve("srv", 1)
    server = psutil.Process(ref.pid or 0)
    before = server.cpu_affinity()
    supervisor.cpu_limit(ref, 1)
    assert server.cpu_affinity() == before[:1]
    (tmp_path / "fork").touch()  # the server forks a worker now, under the limit
    wait_for(server.children)
    (worker,) = server.children()
    assert worker.cpu_affinity() == before[:1]
    supervisor.cpu_limit(ref, None)
    assert server.cpu_affinity() == before and worker.cpu_affinity() == before
