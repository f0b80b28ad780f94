"""Faults in the job queue's runs: a killed worker and a rolling model update in one run, a
Redis restart in another; no accepted job is lost (its own module so that xdist runs it beside
tests/loadtests/test_fault_injection.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faultruns import run_with_faults, two_releases


@pytest.mark.integration
def test_faults_on_the_queue_a_killed_worker_and_a_rolling_model_update_lose_no_job(
    tiny_model: Path, cifar_dir: Path, tmp_path: Path
) -> None:
    """A killed queue worker is restarted (supervision); later a rolling model update
    restarts the workers one after the other; no accepted job is lost."""
    base = two_releases(tiny_model, tmp_path)
    target = {"kind": "jobqueue", "model_path": str(base / "1"), "queue_workers": 2}
    load = {
        "settle_s": 1,
        "warmup_requests": 5,
        "stages": [{"users": 4, "duration_s": 6}, {"users": 4, "duration_s": 40}],
    }
    faults = [
        {"action": "kill", "part": "worker", "index": 1, "stage": 2, "offset_s": 2},
        {"action": "model_update", "part": "worker", "model_path": str(base / "2"),
         "stage": 2, "offset_s": 8},
    ]  # fmt: skip
    outcome, entry, lines = run_with_faults(tmp_path, cifar_dir, target, faults, load)
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
    outcome, entry, lines = run_with_faults(tmp_path, cifar_dir, target, faults, load)
    assert outcome.ok, (outcome.failures, lines[-5:])
    (fault,) = entry["faults"]["injected"]
    assert fault["error"] is None and "t-redis" in fault["what"]
    assert entry["restarts"] == ["t-redis"]
    jobs = entry["faults"]["jobs"]
    assert jobs["accepted"] > 0 and jobs["lost"] == 0 and jobs["unresolved"] == 0, jobs
