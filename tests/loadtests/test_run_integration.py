"""`servecap run` end to end with real Locust.

The shared smoke run (``smoke_run``: the real FastAPI target and model, through the CLI) is
checked against the results contract (summary.json, per-request records, resource samples)
and for processes left behind. The harness's own paths (an interrupted run, each load mode)
run against the ``sleepy`` test kind, which is ready at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from loadtests.orchestrator import RunOptions, run
from tests.contract_snapshot import FIXTURE, snapshot
from tests.ports import free_port
from tests.runs import SmokeRun, servecap, sleepy_scenarios

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
CONTRACT = ("index", "users", "duration_s", "requests", "rps", "p50_ms", "p95_ms", "p99_ms",
            "error_rate", "reject_rate", "cpu_pct", "mem_mb")  # fmt: skip


def serving_processes(spec_file: Path, out: Path) -> list[psutil.Process]:
    """This test's target (by its port) and load generator (by its results folder)."""
    ports = {str(t["port"]) for t in yaml.safe_load(spec_file.read_text())["targets"].values()}
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        args = proc.info["cmdline"] or []
        cmd = " ".join(args)
        server = ("targets." in cmd or "sleepy" in cmd) and any(p in args for p in ports)
        if server or ("loadtests/locustfile.py" in cmd and str(out) in cmd):
            found.append(proc)
    return found


def test_smoke_run_contract(smoke_run: SmokeRun) -> None:
    out = smoke_run.out
    assert smoke_run.returncode == 0, smoke_run.output[-2000:]
    assert not serving_processes(smoke_run.scenarios, out)
    assert "stage 2/2" in smoke_run.output  # progress per stage

    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenario"] == "smoke"
    # the results contract, key for key and column for column (tests/contract_snapshot.py)
    assert snapshot(out) == json.loads(FIXTURE.read_text())
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
    sleepy_kind: Path, cifar_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    spec_file = tmp_path / "s.yaml"
    load = {"warmup_requests": 2, "settle_s": 0, "image_pool": 8,
            "stages": [{"users": 2, "duration_s": 60}]}  # fmt: skip
    spec_file.write_text(json.dumps(sleepy_scenarios(free_port(), load)))  # JSON is YAML
    env = {**os.environ, "SERVECAP_CIFAR10_DIR": str(cifar_dir)}
    env.pop("LOCUST_SKIP_MONKEY_PATCH", None)
    proc = subprocess.Popen(
        servecap("run", "s", "--scenarios", str(spec_file), "--out", str(out)),
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "svc" / "timeline.json").exists():
        time.sleep(0.2)
    time.sleep(2)  # some load, then Ctrl-C
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "interrupted" in output
    assert not serving_processes(spec_file, out)
    summary = json.loads((out / "summary.json").read_text())
    (entry,) = summary["runs"]
    assert entry["status"] == "interrupted"
    assert entry["requests"] > 0  # what was measured before the interrupt is kept
    assert len(pd.read_parquet(out / "svc" / "requests.parquet")) == entry["requests"]


MODES = {
    "rate": {"mode": "rate", "settle_s": 1, "arrival": "poisson",
             "stages": [{"rps": 20, "duration_s": 4}, {"rps": 40, "duration_s": 4, "ramp": True}]},
    "sequential": {"mode": "sequential", "sequential": {"requests": [1, 5, 20], "repeat": 2}},
    "distributed": {"workers": 2, "settle_s": 1, "stages": [{"users": 2, "duration_s": 5}]},
}  # fmt: skip


@pytest.mark.parametrize("mode", sorted(MODES))
def test_load_modes_end_to_end(
    mode: str, sleepy_kind: Path, cifar_dir: Path, tmp_path: Path
) -> None:
    from loadtests.spec import parse_scenarios

    data = sleepy_scenarios(free_port(), {"warmup_requests": 2, **MODES[mode]})
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump(data))
    out = tmp_path / "results"
    outcome = run(RunOptions("s", parse_scenarios(data), spec_file, out, data_dir=str(cifar_dir)),
                  echo=lambda _: None)  # fmt: skip
    assert outcome.ok, outcome.failures
    assert not serving_processes(spec_file, out)
    (entry,) = json.loads((out / "summary.json").read_text())["runs"]
    requests = pd.read_parquet(out / "svc" / "requests.parquet")
    assert len(requests) == entry["requests"] > 0
    assert (requests["outcome"] == "ok").all()
    if mode == "rate":
        first, second = entry["stages"]
        assert first["rps"] == pytest.approx(20, rel=0.5)  # Poisson over a 3 s window
        assert second["rps"] == pytest.approx(32, rel=0.5)  # ramping 20 -> 40
        assert (requests["lag_ms"] >= 0).all() and "send_lag_p99_ms" in first
        assert (requests["latency_ms"] >= requests["service_ms"]).all()
    elif mode == "sequential":
        seq = entry["sequential"]
        assert [s["requests"] for s in seq] == [1, 5, 20] and all(s["repeats"] == 2 for s in seq)
        assert len(entry["stages"]) == 6 and len(requests) == 2 * (1 + 5 + 20)
        assert all(s["mean_total_s"] > 0 for s in seq)
    else:
        pids = {p.stem for p in (out / "svc").glob("requests-*.csv")}
        assert not pids  # the two worker processes' parts were merged
        assert requests["users"].max() >= 1 and entry["stages"][0]["rps"] > 0
        samples = pd.read_parquet(out / "svc" / "resources.parquet")
        generator = samples[samples["role"] == "generator"]
        assert generator["n_procs"].max() >= 3  # the master and its two worker processes
        assert entry["stages"][0]["generator_cpu_pct"] > 0
