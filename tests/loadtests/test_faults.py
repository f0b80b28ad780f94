"""Faults during a run: each ends with a message naming the target and stage, the data
collected so far saved, and no process left behind.

The harness's failure paths run against the ``sleepy`` test kind (ready at once, no model; a
readiness delay and a memory ballast on demand); Redis disappearing is the job queue's own."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest

from loadtests.orchestrator import RunOptions, run
from loadtests.spec import parse_scenarios
from tests.ports import free_port
from tests.procs import SLEEPY, server_pids
from tests.runs import SLEEPY_KINDS, servecap, sleepy_scenarios

pytestmark = pytest.mark.integration


def run_with(
    cifar_dir: Path,
    tmp_path: Path,
    target: dict[str, Any],
    load: dict[str, Any],
    during: Any = None,
) -> tuple[Any, dict[str, Any], list[str]]:
    """A run of the sleepy target ``api``; ``during(port, results folder)`` in a thread."""
    port = free_port()
    spec = parse_scenarios({
        "targets": {"api": {"kind": "sleepy", "port": port, **target}},
        "scenarios": {"f": {"targets": ["api"], "load": {"warmup_requests": 2, "settle_s": 1,
                                                         "image_pool": 8, **load}}},
    })  # fmt: skip
    out = tmp_path / "out"
    lines: list[str] = []
    thread = None
    if during is not None:
        thread = threading.Thread(target=during, args=(port, out / "api"), daemon=True)
        thread.start()
    outcome = run(RunOptions("f", spec, tmp_path / "s.yaml", out, data_dir=str(cifar_dir)),
                  echo=lines.append)  # fmt: skip
    if thread is not None:
        thread.join(30)
    assert not server_pids(port, SLEEPY), "a target process was left behind"
    summary = json.loads((out / "summary.json").read_text())
    return outcome, summary["runs"][0], lines


def wait_for_stage(tdir: Path, stage: int, after_s: float = 1.0) -> None:
    """Return ``after_s`` into stage ``stage`` (0-based)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (tdir / "timeline.json").exists():
            timeline = json.loads((tdir / "timeline.json").read_text())
            if time.time() >= timeline[stage]["start_ts"] + after_s:
                return
        time.sleep(0.2)
    raise AssertionError("stage never started")


STAGES = [
    {"users": 2, "duration_s": 4},
    {"users": 2, "duration_s": 4},
    {"users": 2, "duration_s": 4},
]


def test_target_killed_mid_run(sleepy_kind: Path, cifar_dir: Path, tmp_path: Path) -> None:
    def kill(port: int, tdir: Path) -> None:
        wait_for_stage(tdir, 1)
        for proc in server_pids(port, SLEEPY):
            proc.send_signal(signal.SIGKILL)

    outcome, entry, _ = run_with(cifar_dir, tmp_path, {}, {"stages": STAGES}, kill)
    assert not outcome.ok and entry["status"] == "failed"
    assert "target 'api' during stage 2: process 'api' was killed by signal 9" in entry["error"]
    assert entry["requests"] > 0  # stage 1 measured before the kill is kept
    assert entry["stages"][0]["rps"] > 0
    records = pd.read_parquet(tmp_path / "out" / "api" / "requests.parquet")
    assert len(records) == entry["requests"]


def test_load_generator_killed_mid_run_fails_the_target_and_keeps_its_data(
    sleepy_kind: Path, cifar_dir: Path, tmp_path: Path
) -> None:
    def kill(port: int, tdir: Path) -> None:
        wait_for_stage(tdir, 1)
        for proc in psutil.process_iter(["cmdline", "cwd"]):
            if "locustfile" in " ".join(proc.info["cmdline"] or []) and proc.info["cwd"] == str(
                tdir
            ):
                proc.send_signal(signal.SIGKILL)

    outcome, entry, _lines = run_with(cifar_dir, tmp_path, {}, {"stages": STAGES}, kill)
    assert not outcome.ok and entry["status"] == "failed"
    assert "load generator (Locust) was killed by signal 9 during stage 2" in entry["error"]
    assert entry["stages"][0]["requests"] > 0  # what it measured before is kept
    records = pd.read_parquet(tmp_path / "out" / "api" / "requests.parquet")
    assert len(records) == entry["requests"] > 0


def test_target_never_ready(sleepy_kind: Path, cifar_dir: Path, tmp_path: Path) -> None:
    never = {"ready_timeout_s": 0.3, "ready_delay_s": 60}
    _outcome, entry, _ = run_with(cifar_dir, tmp_path, never, {"stages": STAGES})
    assert entry["status"] == "failed" and entry["requests"] == 0
    assert "target 'api': 'api' not ready after 0 s" in entry["error"]
    assert "ready_timeout_s" in entry["error"]  # says how to fix


@pytest.mark.slow
def test_target_hangs_requests_time_out(sleepy_kind: Path, cifar_dir: Path, tmp_path: Path) -> None:
    def freeze(port: int, tdir: Path) -> None:
        # Frozen before stage 2's settle (1 s) ends: every request it measures times out.
        wait_for_stage(tdir, 1, after_s=0.1)
        procs = server_pids(port, SLEEPY)
        for proc in procs:
            proc.send_signal(signal.SIGSTOP)
        time.sleep(4)
        for proc in procs:
            proc.send_signal(signal.SIGCONT)

    _outcome, entry, lines = run_with(
        cifar_dir, tmp_path, {}, {"request_timeout_s": 1.5, "stages": STAGES}, freeze
    )
    hung = entry["stages"][1]
    assert hung["error_rate"] > 0 and "timed out" in hung["top_error"].lower()
    assert any("stage 2:" in line and "failed" in line for line in lines), lines
    assert entry["stages"][0]["error_rate"] == 0


def test_memory_limit(sleepy_kind: Path, cifar_dir: Path, tmp_path: Path) -> None:
    _outcome, entry, _ = run_with(cifar_dir, tmp_path, {"memory_limit_mb": 100, "ballast_mb": 160},
                                 {"stages": STAGES})  # fmt: skip
    assert entry["status"] == "failed"
    assert "exceeded its memory limit" in entry["error"] and "> 100 MB" in entry["error"]
    # caught at the first sample: the server's ballast alone is over the limit
    assert re.match(r"target 'api' (before the load started|during stage \d)", entry["error"])


def test_no_load_generator_left(tmp_path: Path) -> None:
    mine = [p for p in psutil.Process(os.getpid()).children(recursive=True)
            if "locustfile" in " ".join(p.cmdline())]  # fmt: skip
    assert not mine


@pytest.mark.slow
def test_redis_disappears_under_the_job_queue(
    tiny_model: Path, cifar_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    spec = parse_scenarios({
        "targets": {"jq": {"kind": "jobqueue", "port": port, "model_path": str(tiny_model),
                           "queue_workers": 1}},
        "scenarios": {"f": {"targets": ["jq"], "load": {"warmup_requests": 1, "settle_s": 1,
                                                        "stages": STAGES}}},
    })  # fmt: skip
    out = tmp_path / "out"

    def kill_redis() -> None:
        wait_for_stage(out / "jq", 1)
        for proc in psutil.process_iter(["cmdline"]):
            args = proc.info["cmdline"] or []
            if args and "redis-server" in args[0] and str(port + 2) in " ".join(args):
                proc.send_signal(signal.SIGKILL)

    thread = threading.Thread(target=kill_redis, daemon=True)
    thread.start()
    outcome = run(RunOptions("f", spec, tmp_path / "s.yaml", out, data_dir=str(cifar_dir)),
                  echo=lambda _: None)  # fmt: skip
    thread.join(30)
    entry = json.loads((out / "summary.json").read_text())["runs"][0]
    assert not outcome.ok and entry["status"] == "failed"
    assert "target 'jq' during stage 2: process 'jq-redis' was killed by signal 9" in entry["error"]
    assert entry["stages"][0]["requests"] > 0  # stage 1 kept
    leftovers = [p for p in psutil.process_iter(["cmdline"])
                 if str(port) in " ".join(p.info["cmdline"] or [])
                 and "python" in " ".join(p.info["cmdline"] or [])]  # fmt: skip
    assert not leftovers


def write_sleepy_scenario(path: Path, port: int, duration_s: int) -> None:
    load = {"warmup_requests": 2, "settle_s": 0, "image_pool": 8,
            "stages": [{"users": 2, "duration_s": duration_s}]}  # fmt: skip
    path.write_text(json.dumps(sleepy_scenarios(port, load, delay_ms=5)))  # JSON is YAML


def harness(scenarios: Path, out: Path, cifar_dir: Path) -> psutil.Popen:
    env = {**os.environ, "SERVECAP_KIND_PATH": str(SLEEPY_KINDS),
           "SERVECAP_CIFAR10_DIR": str(cifar_dir)}  # fmt: skip
    return psutil.Popen(
        servecap("run", "s", "--scenarios", str(scenarios), "--out", str(out)),
        env=env, stdout=(out.parent / f"{out.name}.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def test_a_killed_harness_leaves_no_load_generator_or_target(
    tmp_path: Path, cifar_dir: Path
) -> None:
    port = free_port()
    write_sleepy_scenario(tmp_path / "s.yaml", port, duration_s=60)
    proc = harness(tmp_path / "s.yaml", tmp_path / "out", cifar_dir)
    timeline = tmp_path / "out" / "svc" / "timeline.json"
    deadline = time.monotonic() + 60
    while not timeline.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert timeline.exists(), (tmp_path / "out.log").read_text()
    children = proc.children(recursive=True)
    assert any("locust" in " ".join(c.cmdline()) for c in children)
    proc.send_signal(signal.SIGKILL)  # during the stage: no cleanup code runs
    proc.wait(10)
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, [" ".join(p.cmdline()[:4]) for p in alive]
    assert len(gone) == len(children)


def test_a_second_run_into_the_same_folder_changes_nothing(tmp_path: Path, cifar_dir: Path) -> None:
    write_sleepy_scenario(tmp_path / "s.yaml", free_port(), duration_s=3)
    out = tmp_path / "out"
    first = harness(tmp_path / "s.yaml", out, cifar_dir)
    assert first.wait(120) == 0, (tmp_path / "out.log").read_text()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert any(p.name == "requests.parquet" for p in before)
    second = harness(tmp_path / "s.yaml", out, cifar_dir)
    assert second.wait(60) != 0
    assert "not empty" in (tmp_path / "out.log").read_text()
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # byte for byte, nothing added or removed
