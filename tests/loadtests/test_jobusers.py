"""The job-queue Locust user, run by real Locust against the real job-queue target.

One target (Redis, one batch worker with the test model, the web) is started by the process
launcher; Locust runs the ``jobqueue`` client for a few seconds. Checked: submit, poll and job
rows are recorded, every accepted job finishes, each job's end-to-end latency is at least its
submit's, and every attempt has exactly one job row: a 503 submit (max_works) a rejected one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from analysis.load import read_requests
from loadtests.bodies import build_bodies
from loadtests.generator import start_locust, warm_up
from loadtests.runconfig import LoadRunConfig
from loadtests.spec import LoadPlan, Stage
from targets.launchers.process import ProcessLauncher, stop_process_group
from targets.protocols import Endpoint
from targets.registry import target_config
from tests.ports import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed"),
]


def free_port_pair() -> int:
    """A free port whose port + 2 (the target's Redis) is free too."""
    return free_port()


def leftovers(port: int, run_dir: Path) -> list[psutil.Process]:
    """This test's processes still running: the target's and this run's Locust."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmd = " ".join(proc.info["cmdline"] or [])
        mine = f"127.0.0.1:{port + 2}" in cmd or f"--port {port}" in cmd or str(run_dir) in cmd
        if mine and ("targets.jobqueue" in cmd or "redis-server" in cmd or "locust" in cmd):
            found.append(proc)
    return found


def pair_with_submits(records: pd.DataFrame) -> pd.DataFrame:
    """Each job row with the submit row of the same job: the same user started both within a
    millisecond, and no other submit started that close."""
    jobs = records[records["name"] == "job"].sort_values("ts")
    submits = records[records["name"] == "submit"].sort_values("ts")
    paired = pd.merge_asof(jobs, submits, on="ts", direction="forward", tolerance=0.005,
                           suffixes=("_job", "_submit"))  # fmt: skip
    return paired.dropna(subset=["latency_ms_submit"])


def test_job_user_records_submit_poll_and_job(
    tiny_model: Path, cifar_dir: Path, tmp_path: Path
) -> None:
    port = free_port_pair()
    config = target_config(kind="jobqueue", port=port, model_path=str(tiny_model), queue_workers=1,
                          job_batch_max=4, max_works=3, ready_timeout_s=90)  # fmt: skip
    plan = LoadPlan(stages=(Stage(users=6, duration_s=4),), image_pool=64, images_per_request=8,
                    encoding="jpeg", warmup_requests=2, settle_s=0.5,
                    request_timeout_s=20)  # fmt: skip
    with ProcessLauncher(stop_grace_s=5).launch("jq", config, tmp_path / "logs") as target:
        endpoint = Endpoint(protocol="servecap-jobs", base_url=target.base_url)
        run_config = LoadRunConfig(target="jq", endpoint=endpoint, plan=plan,
                                   data_dir=str(cifar_dir), out_dir=str(tmp_path))  # fmt: skip
        path = tmp_path / "load_config.json"
        run_config.write(path)
        bodies, ctype = build_bodies(run_config)
        assert warm_up(run_config, bodies[0], ctype, 2) > 0  # 202 is a success
        proc = start_locust(path, run_config, tmp_path)
        try:
            proc.wait(timeout=60)
        finally:
            stop_process_group(proc)
    assert not leftovers(port, tmp_path)

    records = read_requests(tmp_path)
    by_name = records.groupby("name")["outcome"].value_counts().unstack(fill_value=0)
    assert {"submit", "poll", "job"} <= set(by_name.index), by_name
    all_jobs = records[records["name"] == "job"]
    submits = records[records["name"] == "submit"]
    assert set(submits["outcome"]) <= {"ok", "rejected"}
    # One job row per attempt (users finish their current job before stopping): accepted
    # submits give ok jobs, refused ones rejected jobs.
    assert len(all_jobs) == len(submits)
    assert (all_jobs["outcome"] == "rejected").sum() == (submits["outcome"] == "rejected").sum()
    assert (all_jobs.loc[all_jobs["outcome"] == "rejected", "status"] == 503).all()
    jobs = all_jobs[all_jobs["outcome"] != "rejected"]
    assert len(jobs) > 10
    assert (jobs["outcome"] == "ok").all(), jobs["error"].unique()
    assert (jobs["status"] == 200).all() and (jobs["bytes"] > 0).all()
    assert (records.loc[records["name"] == "poll", "outcome"] == "ok").all()
    records = records[~((records["name"] == "job") & (records["outcome"] == "rejected"))]

    paired = pair_with_submits(records)
    assert len(paired) >= 0.9 * len(jobs)
    assert (paired["outcome_submit"] == "ok").all()
    assert (paired["latency_ms_job"] >= paired["latency_ms_submit"]).all()
    assert np.median(jobs["latency_ms"]) > np.median(submits["latency_ms"])
