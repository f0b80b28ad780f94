"""Faults inside a scenario: validated like everything else, injected on time, the killed part
restarted as a deployment would, and each fault's cost measured from the raw records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis.faults import fault_impact, job_accounting
from loadtests.orchestrator import RunOptions, run
from loadtests.spec import SpecError, parse_scenarios
from tests.ports import free_port


def doc(faults: list[dict[str, Any]], kind: str = "jobqueue") -> dict[str, Any]:
    return {
        "targets": {"t": {"kind": kind}},
        "scenarios": {
            "s": {
                "targets": ["t"],
                "faults": faults,
                "load": {"stages": [{"users": 2, "duration_s": 10}]},
            }
        },
    }


@pytest.mark.parametrize(
    ("fault", "message"),
    [({"action": "kill", "part": "worker"}, "at_s, or as stage"),
     ({"action": "kill", "part": "worker", "at_s": 1, "stage": 1}, "not both"),
     ({"action": "stop", "part": "worker", "at_s": 1}, "stop needs duration_s"),
     ({"action": "cpu_limit", "part": "web", "at_s": 1, "duration_s": 2}, "needs cpus"),
     ({"action": "explode", "part": "worker", "at_s": 1}, "action"),
     ({"action": "kill", "part": "gpu", "at_s": 1}, "not a part of target 't' .jobqueue.; "
      "parts: jobqueue-web, jobqueue-worker, model-server, redis, replica, web, worker"),
     ({"action": "kill", "part": "worker", "stage": 3}, "stage 3: the plan has 1 stages"),
     ({"action": "kill", "part": "worker", "at_s": 1, "target": "u"}, "not a target of")],
)  # fmt: skip
def test_faults_are_validated_with_the_fix_named(fault: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_scenarios(doc([fault]))


def _records(rows: list[tuple[float, float, str]], name: str = "predict") -> pd.DataFrame:
    return pd.DataFrame([{"ts": ts, "latency_ms": ms, "outcome": o, "name": name, "error": ""}
                         for ts, ms, o in rows])  # fmt: skip


def test_the_cost_of_a_fault_from_one_second_windows() -> None:
    rows: list[tuple[float, float, str]] = []
    for second in range(30):  # 10 requests a second, 10 ms
        for i in range(10):
            t = 1000 + second + i / 10
            if 10 <= second < 12 and i % 2:  # two seconds of half errors after the fault
                rows.append((t, 1.0, "error"))
            elif 10 <= second < 13:  # three seconds of slow answers
                rows.append((t, 400.0, "ok"))
            else:
                rows.append((t, 10.0 + i / 10, "ok"))
    impact = fault_impact(_records(rows), 1010.0, 1030.0, slo_p99_ms=100.0)
    assert impact["baseline_goodput_rps"] == 10 and impact["baseline_p99_ms"] < 11
    assert impact["errors"] == 10 and impact["errors_beyond_baseline"] == 10
    assert impact["error_duration_s"] == 2.0 and impact["errors_cleared"]
    assert impact["p99_recovery_s"] == 3.0 and impact["recovered"]
    assert impact["goodput_dip"] == pytest.approx(0.5)
    no_slo = fault_impact(_records(rows), 1010.0, 1030.0, slo_p99_ms=None)
    assert no_slo["p99_limit_from"].startswith("twice the baseline")
    # a fault at the very end: no recovery seen, none claimed
    late = fault_impact(_records(rows), 1028.5, 1030.0, slo_p99_ms=1.0)
    assert late["recovered"] is False and late["p99_recovery_s"] is None
    assert np.isfinite(late["baseline_goodput_rps"])


def test_jobs_accepted_finished_lost() -> None:
    frame = pd.DataFrame([
        {"ts": 1.0, "latency_ms": 1, "outcome": "ok", "name": "submit", "error": ""},
        {"ts": 1.0, "latency_ms": 9, "outcome": "ok", "name": "job", "error": ""},
        {"ts": 2.0, "latency_ms": 1, "outcome": "ok", "name": "submit", "error": ""},
        {"ts": 2.0, "latency_ms": 9, "outcome": "error", "name": "job",
         "error": "JobFailed('job not done after 30 s')"},
        {"ts": 3.0, "latency_ms": 1, "outcome": "error", "name": "submit", "error": "HTTP 500"},
        {"ts": 3.0, "latency_ms": 1, "outcome": "error", "name": "job",
         "error": "JobFailed('submit answered HTTP 500')"},
        {"ts": 4.0, "latency_ms": 1, "outcome": "ok", "name": "submit", "error": ""},
    ])  # fmt: skip
    assert job_accounting(frame) == {"accepted": 3, "finished": 1, "lost": 1, "unresolved": 1}


def _run(tmp_path: Path, cifar_dir: Path, target: dict[str, Any], faults: list[dict[str, Any]],
         load: dict[str, Any]) -> tuple[Any, dict[str, Any], list[str]]:  # fmt: skip
    scenario = {"targets": ["t"], "faults": faults, "load": load, "slo": {"p99_ms": 2000}}
    spec = parse_scenarios({"targets": {"t": {**target, "port": free_port()}},
                            "scenarios": {"s": scenario}})  # fmt: skip
    lines: list[str] = []
    out = tmp_path / "out"
    outcome = run(RunOptions("s", spec, tmp_path / "s.yaml", out, data_dir=str(cifar_dir)),
                  echo=lines.append)  # fmt: skip
    (entry,) = json.loads((out / "summary.json").read_text())["runs"]
    return outcome, entry, lines


def test_each_fault_is_measured_until_the_next_one() -> None:
    from analysis.faults import impacts

    rows = [(1000 + t / 10, 10.0, "ok") for t in range(400)]  # 10/s for 40 s
    rows = [r for r in rows if not 1030 <= r[0] < 1032]  # the second fault stops everything
    events = [{"action": "kill", "start_ts": 1010.0, "error": None},
              {"action": "stop", "start_ts": 1030.0, "error": None}]  # fmt: skip
    first, second = impacts(_records(rows), events, 1040.0, 100.0)
    assert first["impact"]["measured_until_s"] == 20.0
    assert first["impact"]["goodput_dip"] == 1.0  # the stop's zero windows are not its own
    assert second["impact"]["goodput_dip"] == 0.0


def test_model_versions_over_time() -> None:
    from analysis.faults import version_spans

    rows = _records([(1000 + t / 10, 5.0, "ok") for t in range(100)])
    rows["model_version"] = ["1" if t < 60 else "2" for t in range(100)]
    rows.loc[65, "model_version"] = "1"  # one late answer of the old version: a mixed period
    spans = version_spans(rows, 1000.0)
    assert spans["versions"]["1"] == {"requests": 61, "first_s": 0.0, "last_s": 6.5}
    assert spans["versions"]["2"]["first_s"] == 6.0 and spans["mixed_s"] == 0.5
    assert version_spans(rows.drop(columns="model_version"), 1000.0)["mixed_s"] is None
    with pytest.raises(SpecError, match="model_path goes with action model_update"):
        parse_scenarios(doc([{"action": "model_update", "part": "worker", "at_s": 1}]))


def _two_releases(tiny_model: Path, tmp_path: Path) -> Path:
    """A model base holding versions 1 and 2 (the "new" release: the same weights)."""
    base = tmp_path / "models"
    shutil.copytree(tiny_model / "1", base / "1")
    shutil.copytree(tiny_model / "1", base / "2")
    return base


@pytest.mark.slow
@pytest.mark.integration
def test_faults_on_uvicorn_a_killed_worker_a_stopped_server_and_a_model_update(
    tiny_model: Path, cifar_dir: Path, tmp_path: Path
) -> None:
    """Three faults in one run, each measured until the next: uvicorn replaces a killed
    worker itself (no restart by the harness), a stopped server resumes, and a model update
    restarts the server on the new release, whose answers name it."""
    base = _two_releases(tiny_model, tmp_path)
    target = {"kind": "fastapi", "model_path": str(base / "1"), "workers": 2}
    load = {
        "mode": "rate",
        "settle_s": 1,
        "warmup_requests": 5,
        "stages": [{"rps": 15, "duration_s": 6}, {"rps": 15, "duration_s": 36}],
    }
    faults = [
        {"action": "kill", "part": "worker", "index": 1, "stage": 2, "offset_s": 2},
        {"action": "stop", "part": "model-server", "stage": 2, "offset_s": 6, "duration_s": 1},
        {"action": "model_update", "part": "model-server", "model_path": str(base / "2"),
         "stage": 2, "offset_s": 9},  # two workers to load again: time to see version 2
    ]  # fmt: skip
    outcome, entry, lines = _run(tmp_path, cifar_dir, target, faults, load)
    assert outcome.ok, (outcome.failures, lines[-5:])
    kill, stop, update = entry["faults"]["injected"]
    assert kill["error"] is None and kill["what"].startswith("worker 1 (pid")
    assert stop["error"] is None and stop["end_ts"] - stop["start_ts"] == pytest.approx(1, abs=0.6)
    assert update["error"] is None
    for fault in (kill, stop, update):
        impact = fault["impact"]
        assert impact["errors"] >= 0 and impact["goodput_dip"] is not None
        assert impact["p99_limit_ms"] == 2000
    assert kill["impact"]["measured_until_s"] == pytest.approx(4, abs=0.5)  # until the stop
    versions = update["model_versions"]["versions"]
    assert set(versions) == {"1", "2"} and versions["2"]["first_s"] > 0
    records = pd.read_parquet(tmp_path / "out" / "t" / "requests.parquet")
    ok = records[records["outcome"] == "ok"]
    assert set(ok["model_version"]) == {"1", "2"}
    # uvicorn replaced its own worker; the update's restart of the server is counted
    assert entry["restarts"] == ["t"]


@pytest.mark.slow
@pytest.mark.integration
def test_faults_on_the_queue_a_killed_worker_and_a_rolling_model_update_lose_no_job(
    tiny_model: Path, cifar_dir: Path, tmp_path: Path
) -> None:
    """A killed queue worker is restarted (supervision); later a rolling model update
    restarts the workers one after the other; no accepted job is lost. Jobs arrive open-loop,
    10 a second: what is lost or slowed shows without a closed loop keeping both cores busy."""
    base = _two_releases(tiny_model, tmp_path)
    target = {"kind": "jobqueue", "model_path": str(base / "1"), "queue_workers": 2}
    load = {
        "mode": "rate",
        "arrival": "poisson",
        "settle_s": 1,
        "warmup_requests": 5,
        "stages": [{"rps": 10, "duration_s": 6}, {"rps": 10, "duration_s": 40}],
    }
    faults = [
        {"action": "kill", "part": "worker", "index": 1, "stage": 2, "offset_s": 2},
        {"action": "model_update", "part": "worker", "model_path": str(base / "2"),
         "stage": 2, "offset_s": 8},
    ]  # fmt: skip
    outcome, entry, lines = _run(tmp_path, cifar_dir, target, faults, load)
    assert outcome.ok, (outcome.failures, lines[-5:])
    kill, update = entry["faults"]["injected"]
    assert kill["error"] is None and "t-worker-1" in kill["what"]
    assert kill["impact"]["baseline_goodput_rps"] > 0
    assert any("fault 1: kill worker 1" in line for line in lines)
    assert update["error"] is None
    assert set(update["model_versions"]["versions"]) == {"1", "2"}
    # the killed worker restarted, then the update's two, one after the other
    assert entry["restarts"] == ["t-worker-1", "t-worker-1", "t-worker-2"]
    jobs = entry["faults"]["jobs"]
    assert jobs["accepted"] > 0 and jobs["lost"] == 0, jobs
    # each worker ready (counted by the web) before the next went: never both down
    assert update["impact"]["lowest_goodput_rps"] > 0


@pytest.mark.slow
@pytest.mark.integration
def test_a_restarted_redis_loses_no_accepted_job(
    tiny_model: Path, cifar_dir: Path, tmp_path: Path
) -> None:
    """Redis keeps its append-only file by default: restarted under load (4 users, 2 workers),
    it comes back with every queued job (with redis_persistence: off, 4 of 485 were lost)."""
    target = {"kind": "jobqueue", "model_path": str(tiny_model), "queue_workers": 2}
    load = {
        "settle_s": 1,
        "warmup_requests": 5,
        "stages": [{"users": 4, "duration_s": 3}, {"users": 4, "duration_s": 6}],
    }
    faults = [{"action": "restart", "part": "redis", "stage": 2, "offset_s": 1.5}]
    outcome, entry, lines = _run(tmp_path, cifar_dir, target, faults, load)
    assert outcome.ok, (outcome.failures, lines[-5:])
    (fault,) = entry["faults"]["injected"]
    assert fault["error"] is None and "t-redis" in fault["what"]
    assert entry["restarts"] == ["t-redis"]
    jobs = entry["faults"]["jobs"]
    assert jobs["accepted"] > 0 and jobs["lost"] == 0 and jobs["unresolved"] == 0, jobs
