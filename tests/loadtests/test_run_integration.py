"""`servecap run smoke` end to end against the real FastAPI target and real Locust.

Checks the results contract (summary.json, per-request records, resource samples) and that
no process is left behind, also when the run is interrupted halfway.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from loadtests.orchestrator import RunOptions, run
from loadtests.spec import load_scenarios

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
CONTRACT = ("index", "users", "duration_s", "requests", "rps", "p50_ms", "p95_ms", "p99_ms",
            "error_rate", "reject_rate", "cpu_pct", "mem_mb")  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def scenarios_file(tmp_path: Path, tiny_model: Path) -> Path:
    """The repository's scenarios, pointed at the test model and a free port."""
    data = yaml.safe_load((REPO / "scenarios.yaml").read_text())
    for target in data["targets"].values():
        target["model_path"] = str(tiny_model)
        target["port"] = free_port()
    path = tmp_path / "scenarios.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def serving_processes() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "targets.fastapi.app" in cmd or "loadtests/locustfile.py" in cmd:
            found.append(proc)
    return found


def test_smoke_run_contract(scenarios_file: Path, cifar_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    spec = load_scenarios(scenarios_file)
    lines: list[str] = []
    outcome = run(RunOptions("smoke", spec, scenarios_file, out, data_dir=str(cifar_dir)),
                  echo=lines.append)  # fmt: skip
    assert outcome.ok, outcome.failures
    assert not serving_processes()
    assert any("stage 2/2" in line for line in lines)  # progress per stage

    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenario"] == "smoke"
    (entry,) = summary["runs"]
    assert entry["target"] == "fastapi" and entry["status"] == "ok"
    assert entry["time_to_ready_s"] > 0
    stages = entry["stages"]
    assert [s["users"] for s in stages] == [1, 4]
    for st in stages:
        assert set(CONTRACT) <= set(st)
        assert st["rps"] > 0 and st["requests"] > 0
        assert st["p99_ms"] >= st["p95_ms"] >= st["p50_ms"] > 0
        assert st["error_rate"] == 0 and st["reject_rate"] == 0
        assert st["cpu_pct"] > 10  # the real server worked
        assert st["mem_mb"] > 200  # TensorFlow and the model are loaded
        assert st["generator_cpu_pct"] > 0

    requests = pd.read_parquet(out / "fastapi" / "requests.parquet")
    assert len(requests) == sum(s["requests"] for s in stages) == entry["requests"]
    assert {"ts", "latency_ms", "status", "bytes", "stage", "outcome", "in_window"} <= set(requests)
    assert (requests["status"] == 200).all() and (requests["bytes"] > 0).all()
    assert not list((out / "fastapi").glob("requests-*.csv"))  # parts merged
    samples = pd.read_parquet(out / "fastapi" / "resources.parquet")
    assert {"target", "generator", "host"} <= set(samples["role"])
    assert (out / "fastapi" / "locust_stats.csv").exists()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["versions"]["tensorflow"] and meta["host"]["cpu_count_logical"] >= 1
    assert meta["targets"]["fastapi"]["time_to_ready_s"] == entry["time_to_ready_s"]
    assert (out / "scenario.yaml").exists()


def test_interrupted_run_keeps_data_and_leaves_nothing(
    scenarios_file: Path, cifar_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    env = {**os.environ, "SERVECAP_CIFAR10_DIR": str(cifar_dir)}
    env.pop("LOCUST_SKIP_MONKEY_PATCH", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtests.cli", "run", "quickstart", "--scenarios",
         str(scenarios_file), "--out", str(out)],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "fastapi" / "timeline.json").exists():
        time.sleep(0.5)
    time.sleep(4)  # some load, then Ctrl-C
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "interrupted" in output
    assert not serving_processes()
    summary = json.loads((out / "summary.json").read_text())
    (entry,) = summary["runs"]
    assert entry["status"] == "interrupted"
    assert entry["requests"] > 0  # what was measured before the interrupt is kept
    assert len(pd.read_parquet(out / "fastapi" / "requests.parquet")) == entry["requests"]
