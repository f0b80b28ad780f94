"""Process launcher: readiness, time-to-ready, failures named, nothing left behind.

The launch plans here start real processes (Python's http.server, a sleeper, a crasher);
only the plan is made up, so the launcher's own logic is what is tested.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import psutil
import pytest

from targets.config import TargetConfig
from targets.kind import Kind
from targets.launch_types import HOST, Placement, ProcessSpec
from targets.launchers import LaunchError, get_launcher
from targets.launchers.process import ProcessLauncher
from targets.registry import target_config
from tests.ports import free_port


class PlanKind(Kind):
    """A kind whose process plan is given (stands in for a ``targets/<kind>/kind.py``)."""

    name = "planned"

    def __init__(self, specs: list[ProcessSpec]) -> None:
        self.specs = specs

    def process_plan(
        self, name: str, config: TargetConfig, placement: Placement = HOST
    ) -> list[ProcessSpec]:
        return self.specs


@pytest.fixture
def config(tmp_path: Path) -> TargetConfig:
    return target_config(kind="fastapi", port=free_port(), model_path=str(tmp_path),
                        ready_timeout_s=5)  # fmt: skip


def use_plan(monkeypatch: pytest.MonkeyPatch, *specs: ProcessSpec) -> None:
    monkeypatch.setattr("targets.launchers.process.get_kind", lambda kind: PlanKind(list(specs)))


def http_server(port: int, name: str = "web") -> ProcessSpec:
    # The child also forks a sleeping grandchild, as gunicorn/uvicorn workers would be.
    code = (
        "import subprocess,sys,http.server;"
        "subprocess.Popen([sys.executable,'-c','import time; time.sleep(600)']);"
        f"http.server.test(HandlerClass=http.server.SimpleHTTPRequestHandler, port={port},"
        " bind='127.0.0.1')"
    )
    return ProcessSpec(name, (sys.executable, "-c", code), ready_url=f"http://127.0.0.1:{port}/")


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def test_start_ready_and_stop_leaves_nothing(
    config: TargetConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_plan(monkeypatch, http_server(config.port))
    with get_launcher("process").launch("t", config, tmp_path / "logs") as running:
        assert running.time_to_ready_s > 0
        assert running.base_url == f"http://127.0.0.1:{config.port}"
        procs = tree(running.pids[0])
        assert len(procs) == 2
    _gone, alive = psutil.wait_procs(procs, timeout=5)
    assert not alive
    assert (tmp_path / "logs" / "web.log").exists()


def test_exception_inside_still_stops(
    config: TargetConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_plan(monkeypatch, http_server(config.port))
    procs: list[psutil.Process] = []
    with (
        pytest.raises(KeyboardInterrupt),
        get_launcher("process").launch("t", config, tmp_path) as running,
    ):
        procs = tree(running.pids[0])
        raise KeyboardInterrupt
    assert not psutil.wait_procs(procs, timeout=5)[1]


def test_process_that_exits_early_is_named_with_its_log(
    config: TargetConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = "print('model exploded'); raise SystemExit(3)"
    crash = ProcessSpec("srv", (sys.executable, "-c", code), ready_url="http://127.0.0.1:1/")
    use_plan(monkeypatch, crash)
    with pytest.raises(LaunchError) as info, ProcessLauncher().launch("mytarget", config, tmp_path):
        pass
    msg = str(info.value)
    assert "target 'mytarget'" in msg and "exited with code 3" in msg and "model exploded" in msg


def test_never_ready_times_out_and_kills(
    config: TargetConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config.model_copy(update={"ready_timeout_s": 1.0})
    sleeper = ProcessSpec("srv", (sys.executable, "-c", "import time; time.sleep(600)"),
                          ready_port=cfg.port)  # fmt: skip
    use_plan(monkeypatch, sleeper)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with (
        pytest.raises(LaunchError, match="not ready after 1 s"),
        ProcessLauncher().launch("t", cfg, tmp_path),
    ):
        pass
    after = {p.pid for p in psutil.Process().children(recursive=True)}
    assert after <= before


def test_stubborn_process_is_killed_after_grace(
    config: TargetConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    use_plan(monkeypatch, ProcessSpec("stubborn", (sys.executable, "-c", code)))
    with ProcessLauncher(stop_grace_s=0.5).launch("t", config, tmp_path) as running:
        proc = psutil.Process(running.pids[0])
    assert not psutil.wait_procs([proc], timeout=5)[1]


def test_port_in_use_is_refused_before_starting(
    config: TargetConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_plan(monkeypatch, http_server(config.port))
    with socket.socket() as s:
        s.bind(("127.0.0.1", config.port))
        s.listen()
        with (
            pytest.raises(LaunchError, match=f"port {config.port} .* already in use"),
            ProcessLauncher().launch("t", config, tmp_path),
        ):
            pass


def test_missing_model_says_how_to_fix(config: TargetConfig, tmp_path: Path) -> None:
    cfg = config.model_copy(update={"model_path": str(tmp_path / "nope")})
    with (
        pytest.raises(LaunchError, match="servecap model train"),
        ProcessLauncher().launch("t", cfg, tmp_path),
    ):
        pass


def test_unknown_launcher() -> None:
    with pytest.raises(LaunchError, match="unknown launcher 'k8s'"):
        get_launcher("k8s")


def test_signals_received_while_held_are_delivered_afterwards() -> None:
    import os
    import signal

    from targets.launchers.base import held_signals

    seen: list[str] = []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: seen.append(signal.Signals(signum).name))
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        with held_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
            seen.append("finished the write")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert seen == ["finished the write", "SIGTERM", "SIGINT"]
