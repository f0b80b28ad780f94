"""The whole job-queue target started by the process launcher: killed workers, their jobs
recovered, nothing left running."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil
import pytest
import redis
from rq import Queue

from targets.common.payload import encode_request
from targets.jobqueue.common import (
    SERIALIZER,
    JobQueueSettings,
    registered_worker_names,
)
from targets.jobqueue.launch import worker_spec
from targets.jobqueue.redis_server import PASSWORD_ENV
from targets.launchers.process import ProcessLauncher, stop_process_group
from targets.registry import target_config
from tests.machine import needs_redis
from tests.targets.jobqueue.helpers import (
    free_port,
)

pytestmark = needs_redis()


# --------------------------------------------------------------------------- full target


def target_processes(port: int) -> list[psutil.Process]:
    """This target's processes (by its Redis port: other job queues may run on the host)."""
    from targets.common.settings import env_name

    redis_port = str(port + 2)
    port_env = env_name(JobQueueSettings, "redis_port")
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmd = " ".join(proc.info["cmdline"] or [])
        if "targets.jobqueue" not in cmd:
            continue
        try:
            ours = proc.environ().get(port_env) == redis_port or f"--port {redis_port}" in cmd
        except psutil.Error:
            continue
        if ours:
            found.append(proc)
    return found


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def owners(conn: redis.Redis, registry_key: str) -> list[tuple[str, str]]:
    """(job id, owning worker) of each entry of the started-job registry."""
    found = []
    for raw in conn.zrange(registry_key, 0, -1):
        member = _text(raw)
        found.append(
            (member.partition(":")[0], _text(conn.hget(f"rq:execution:{member}", "worker_name")))
        )
    return found


def http(method: str, url: str, body: bytes | None = None, ctype: str = "") -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": ctype} if ctype else {})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=40) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read() or b"null")


def freeze_and_kill(conn: redis.Redis, registry_key: str, worker: str) -> list[str]:
    """SIGSTOP ``worker``, read the jobs it has claimed, SIGKILL it; returns those jobs."""
    pid = int(_text(conn.hget(f"rq:worker:{worker}", "pid")) or 0)
    assert pid > 0, worker
    os.kill(pid, signal.SIGSTOP)
    claimed = [job for job, owner in owners(conn, registry_key) if owner == worker]
    os.kill(pid, signal.SIGKILL)
    return claimed


def kill_every_worker(conn: redis.Redis, queue: Queue) -> list[str]:
    """SIGKILL one worker caught while it holds claimed jobs (frozen, its jobs read, killed),
    then the others; returns the jobs they held."""
    registry_key = queue.started_job_registry.key
    in_flight: dict[str, list[str]] = {}
    deadline = time.monotonic() + 20
    while not in_flight and time.monotonic() < deadline:
        busy = next((owner for _, owner in owners(conn, registry_key) if owner), "")
        if busy:
            pid = int(_text(conn.hget(f"rq:worker:{busy}", "pid")) or 0)
            os.kill(pid, signal.SIGSTOP)
            held = [job for job, owner in owners(conn, registry_key) if owner == busy]
            os.kill(pid, signal.SIGKILL if held else signal.SIGCONT)
            if held:
                in_flight[busy] = held
        time.sleep(0.005)
    assert in_flight, "no worker was caught with jobs in flight"
    for other in registered_worker_names(queue) - set(in_flight):
        in_flight[other] = freeze_and_kill(conn, registry_key, other)
    lost = [job for jobs in in_flight.values() for job in jobs]
    print(f"killed {len(in_flight)} workers holding {lost}")
    return lost


@pytest.mark.slow
@pytest.mark.integration
def test_full_target_survives_killed_workers(
    tiny_model: Path, cifar_dir: Path, tmp_path: Path
) -> None:
    """SIGKILL one worker while it holds jobs, then the other: the web keeps accepting and
    answering; a worker started afterwards re-runs the jobs they held, and every accepted job
    finishes."""
    from loadtests.image_files import load_jpeg_bytes

    port = free_port(gap=2)
    config = target_config(kind="jobqueue", port=port, model_path=str(tiny_model),
                          ready_timeout_s=90)  # fmt: skip
    files, _ = load_jpeg_bytes("test", str(cifar_dir), limit=32, seed=0)
    body, ctype = encode_request(np.zeros((32, 32, 32, 3), np.uint8), "jpeg", files)
    replacement: subprocess.Popen[bytes] | None = None
    with ProcessLauncher(stop_grace_s=5).launch("jq", config, tmp_path / "logs") as target:
        base = target.base_url
        assert http("GET", f"{base}/healthz")[1]["workers"] == 2  # both loaded before ready
        # Redis refuses anyone without the launch's password: no job can be planted.
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=config.model_port).rpush("rq:queue:servecap", "planted")
        password = psutil.Process(target.pids[-1]).environ()[PASSWORD_ENV]  # the harness's
        assert len(password) >= 32
        procs = target_processes(port)
        assert len(procs) >= 3  # two workers and the web (Redis runs as redis-server)
        for proc in procs:
            assert password not in " ".join(proc.cmdline())  # not visible to other users
        rq_conn = redis.Redis(port=config.model_port, client_name="test", password=password)
        queue = Queue("servecap", connection=rq_conn, serializer=SERIALIZER)
        accepted = [http("POST", f"{base}/v1/jobs", body, ctype)[1]["job_id"] for _ in range(60)]

        lost_with_workers = kill_every_worker(rq_conn, queue)

        # The web is unaffected: accepts, answers; unhealthy only because no worker is alive.
        accepted += [http("POST", f"{base}/v1/jobs", body, ctype)[1]["job_id"] for _ in range(5)]
        code, doc = http("GET", f"{base}/v1/jobs/{lost_with_workers[0]}?wait_s=0.5")
        assert code == 202 and doc["status"] == "started"  # claimed by a dead worker, not lost
        health = http("GET", f"{base}/healthz")
        assert health[0] == 503 and health[1]["workers"] == 0
        assert http("GET", f"{base}/v1/info")[1]["queued"] > 0

        # A replacement worker, started as the launcher would, recovers and finishes all.
        spec = worker_spec("jq", config, 3)
        restarted = time.monotonic()
        with (tmp_path / "replacement.log").open("wb") as log:
            env = {**os.environ, PASSWORD_ENV: password, **spec.env}
            replacement = subprocess.Popen(spec.argv, env=env,
                                           stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            statuses: dict[str, str] = {}
            for job_id in accepted:
                while statuses.get(job_id) != "finished" and time.monotonic() < deadline:
                    code, doc = http("GET", f"{base}/v1/jobs/{job_id}?wait_s=5")
                    statuses[job_id] = doc.get("status", str(code))
                    assert statuses[job_id] != "failed", doc
            assert set(statuses.values()) == {"finished"}, statuses
            print(f"all {len(accepted)} jobs finished {time.monotonic() - restarted:.1f} s "
                  "after the replacement worker was started")  # fmt: skip
            # The dead workers' jobs ran again: requeued once (Retry) by the new worker.
            retries = {
                _text(rq_conn.hget(f"rq:job:{j}", "retries_left")) for j in lost_with_workers
            }
            assert retries == {"1"}
            assert http("GET", f"{base}/v1/info")[1]["workers"] == 1
            assert len(registered_worker_names(queue)) == 1  # the dead were unregistered
        finally:
            stop_process_group(replacement, 5)
    assert not target_processes(port)
