"""Distributed generation with remote workers: ``servecap run`` as a Locust master that sends
no load, two ``servecap worker`` processes that connect to it (here on loopback, standing in
for other hosts: they share no folder with the master), and every worker's per-request
records in the master's results folder, including answers that arrive after the plan ends
(the target is frozen for 1.5 s across the end: Locust's master alone would quit 0.5 s after
the plan and lose them). The target is the ``sleepy`` test kind: this is the harness's path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from loadtests.orchestrator import RunOptions, run
from loadtests.spec import parse_scenarios
from tests.ports import free_port
from tests.procs import SLEEPY, server_pids

pytestmark = pytest.mark.integration

RATE_RPS = 40.0
STAGES = [{"rps": RATE_RPS, "duration_s": 5}, {"rps": 2 * RATE_RPS, "duration_s": 5}]


def start_worker(scenarios: Path, cifar_dir: Path, cwd: Path) -> subprocess.Popen[str]:
    servecap = str(Path(sys.executable).with_name("servecap"))
    cmd = [servecap, "worker", "--scenario", "d", "--target", "api", "--master-host",
           "127.0.0.1", "--scenarios", str(scenarios), "--data", str(cifar_dir)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


@pytest.mark.slow
def test_remote_workers_records_land_in_the_masters_folder(
    sleepy_kind: Path, cifar_dir: Path, tmp_path: Path
) -> None:
    port, master_port = free_port(), free_port()
    raw = {
        "targets": {"api": {"kind": "sleepy", "port": port}},
        "scenarios": {"d": {"targets": ["api"], "load": {
            "mode": "rate", "stages": STAGES, "settle_s": 1, "warmup_requests": 2, "image_pool": 8,
            "remote_workers": 2, "master_port": master_port}}},
    }  # fmt: skip
    scenarios = tmp_path / "scenarios.yaml"
    scenarios.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    lines: list[str] = []
    workers: list[subprocess.Popen[str]] = []
    parts_seen: set[str] = set()

    def start_workers_once_waiting() -> None:
        deadline = time.monotonic() + 120
        while not any("remote worker" in line for line in lines):
            assert time.monotonic() < deadline, "the master never announced it was waiting"
            time.sleep(0.2)
        for i in range(2):
            (tmp_path / f"host{i}").mkdir()
            workers.append(start_worker(scenarios, cifar_dir, tmp_path / f"host{i}"))
        while not (out / "api" / "timeline.json").exists():
            time.sleep(0.1)
        timeline = json.loads((out / "api" / "timeline.json").read_text())
        frozen = False
        while any(w.poll() is None for w in workers):  # the master's parts, before merging
            parts_seen.update(p.name for p in (out / "api").glob("requests-remote-*.csv"))
            if not frozen and time.time() >= timeline[-1]["end_ts"] - 0.3:
                frozen = True
                procs = server_pids(port, SLEEPY)
                for proc in procs:
                    proc.send_signal(signal.SIGSTOP)
                time.sleep(1.5)
                for proc in procs:
                    proc.send_signal(signal.SIGCONT)
            time.sleep(0.05)

    helper = threading.Thread(target=start_workers_once_waiting, daemon=True)
    helper.start()
    outcome = run(RunOptions("d", parse_scenarios(raw), scenarios, out, data_dir=str(cifar_dir)),
                  echo=lines.append)  # fmt: skip
    helper.join(70)
    outputs = [w.communicate(timeout=60)[0] for w in workers]
    assert outcome.ok, lines
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert any("servecap worker --scenario d --target api" in line for line in lines)

    tdir = out / "api"
    records = pd.read_parquet(tdir / "requests.parquet")
    # Both workers' rows arrived through the master, one part each, merged at the end.
    assert len(parts_seen) == 2, parts_seen
    assert not list(tdir.glob("requests-*.csv"))
    entry = json.loads((out / "summary.json").read_text())["runs"][0]
    assert entry["requests"] == len(records) > 0
    # Nothing lost at the end: each worker sends its half of 5 s x 40 + 5 s x 80 rps on its
    # own schedule, and every one of those 600 records reaches the master (the last batch
    # and the answers in flight included).
    scheduled = sum(st["rps"] * st["duration_s"] for st in STAGES)
    assert abs(len(records) - scheduled) <= 4, (len(records), scheduled)
    # The two workers share the rate (each sends half): every stage's total is the plan's.
    for stage, planned in zip(entry["stages"], STAGES, strict=True):
        assert stage["rps"] == pytest.approx(planned["rps"], rel=0.15)
        assert stage["error_rate"] == 0
    assert records["service_ms"].gt(0).all() and (records["lag_ms"] >= 0).all()
    for i in range(2):
        assert not list((tmp_path / f"host{i}").rglob("requests-*.csv"))
    left = [p for p in psutil.process_iter(["cmdline"])
            if str(master_port) in (p.info["cmdline"] or [])]  # fmt: skip
    assert not left, "a master or worker was left behind"
