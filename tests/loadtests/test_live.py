"""The live view: figures of the last seconds while a run goes, in a terminal or as lines."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import time
from pathlib import Path

import pytest

from loadtests.live import PlainView, RecordTail, plain_line, snapshot
from tests.ports import free_port
from tests.runs import SmokeRun, servecap, sleepy_scenarios

HEADER = "ts,latency_ms,outcome,lag_ms,name\n"
REPO = Path(__file__).resolve().parents[2]


def test_the_tail_reads_only_new_complete_lines(tmp_path: Path) -> None:
    part = tmp_path / "requests-1.csv"
    part.write_text(HEADER + "100.0,5.0,ok,0,predict\n100.5,7.0,error,0,predict\n101.0,9")
    tail = RecordTail(tmp_path, window_s=5.0)
    assert [r[1] for r in tail.poll(now=101.0)] == [5.0, 7.0]  # the cut line waits
    with part.open("a") as f:
        f.write(".0,ok,0,predict\n")
    assert [r[1] for r in tail.poll(now=101.0)] == [5.0, 7.0, 9.0]
    (tmp_path / "requests-2.csv").write_text(HEADER + "104.0,3.0,rejected,0,predict\n")
    assert [r[1] for r in tail.poll(now=105.8)] == [9.0, 3.0]  # older than 5 s: dropped


def test_snapshot_figures_and_generator_health() -> None:
    rows = [(float(i) / 10, float(i), "ok", 0.0) for i in range(1, 101)]
    rows += [(10.0, 1.0, "error", 50.0), (10.0, 1.0, "rejected", 50.0)]
    s = snapshot("api", "stage 1/2 users=4", 12.0, 30.0, rows, 5.0,
                 {"target": (150.0, 812.0), "generator": (95.0, 100.0)}, late_ms=10.0)  # fmt: skip
    assert s.rps == pytest.approx(100 / 5) and s.p50_ms == pytest.approx(50.5)
    assert s.p99_ms == pytest.approx(99.01)
    assert s.error_share == pytest.approx(1 / 102) and s.reject_share == pytest.approx(1 / 102)
    assert s.remaining == "18 s" and s.progress == pytest.approx(0.4)
    assert s.generator.startswith("BEHIND: CPU 95%")
    sequential = snapshot("api", "N=100", 30.0, 7200.0, rows, 5.0, {}, 10.0, done=0.25)
    assert sequential.remaining == "~90 s" and sequential.progress == 0.25  # from the pace
    line = plain_line(s)
    assert "rps=20.0" in line and "cpu=150%" in line and "mem=812 MB" in line
    lines: list[str] = []
    view = PlainView(lines.append, every_s=0.0)
    view.show(s)
    view.show(s)
    assert len(lines) == 2


@pytest.mark.integration
def test_a_terminal_shows_the_live_panel(
    sleepy_kind: Path, cifar_dir: Path, tmp_path: Path
) -> None:
    scenarios = tmp_path / "s.yaml"
    load = {"warmup_requests": 2, "settle_s": 0, "image_pool": 8,
            "stages": [{"users": 1, "duration_s": 3}, {"users": 2, "duration_s": 3}]}  # fmt: skip
    scenarios.write_text(json.dumps(sleepy_scenarios(free_port(), load)))  # JSON is YAML
    env = {**os.environ, "SERVECAP_CIFAR10_DIR": str(cifar_dir), "COLUMNS": "160"}
    env.pop("LOCUST_SKIP_MONKEY_PATCH", None)
    master, slave = pty.openpty()
    proc = subprocess.Popen(servecap("run", "s", "--scenarios", str(scenarios), "--out",
                                     str(tmp_path / "tty")), stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, env=env, cwd=REPO)  # fmt: skip
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0
    text = seen.decode(errors="replace")
    assert "remaining" in text and "target CPU" in text and "generator" in text  # the panel
    assert "\x1b[" in text  # drawn with terminal control sequences
    assert "stage 2/2" in text  # and the stage results still printed


@pytest.mark.integration
def test_a_file_gets_plain_live_lines(smoke_run: SmokeRun) -> None:
    assert smoke_run.returncode == 0
    assert "\x1b[" not in smoke_run.output
    live = [line for line in smoke_run.output.splitlines() if "] live stage" in line]
    assert live and "rps=" in live[0] and "p99=" in live[0]
