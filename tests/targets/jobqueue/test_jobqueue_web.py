"""The job queue's web API on a real Redis: submit, long polls, limits, health, safety.

The web never loads a model; where a job must complete, a
:class:`~targets.jobqueue.worker.BatchWorker` runs in burst mode with ``ConstantModel``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import redis
from fastapi.testclient import TestClient
from rq import Queue, Retry

from targets.common.payload import encode_request
from targets.jobqueue.common import (
    TASK,
    JobQueueSettings,
    input_key,
    registered_worker_names,
)
from targets.jobqueue.web import create_app
from tests.machine import needs_redis
from tests.targets.jobqueue.helpers import (
    IMAGES,
    PASSWORD,
    ConstantModel,
    enqueue_raw,
    free_port,
    make_worker,
    submit,
    zlib_or_raw,
)

pytestmark = needs_redis()


# --------------------------------------------------------------------------- web


def test_submit_is_202_with_location_and_compact_job(client: TestClient, queue: Queue) -> None:
    body, ctype = encode_request(IMAGES, "jpeg")
    resp = client.post("/v1/jobs", content=body, headers={"content-type": ctype})
    assert resp.status_code == 202
    doc = resp.json()
    assert doc["status"] == "queued"
    assert resp.headers["location"] == f"/v1/jobs/{doc['job_id']}"
    assert queue.job_ids == [doc["job_id"]]
    job = queue.fetch_job(doc["job_id"])
    assert job is not None and job.func_name == TASK
    dtype, count = job.args
    data = queue.connection.get(input_key(queue.name, job.id))
    assert (dtype, count, len(data)) == ("uint8", 2, 2 * 32 * 32 * 3)  # raw bytes, not JSON
    assert 0 < queue.connection.ttl(input_key(queue.name, job.id)) <= 600 + 3 * 90
    stored = queue.connection.hget(job.key, "data")
    assert stored is not None and b"classify" in zlib_or_raw(stored)  # JSON, readable as text
    assert job.timeout == 30 and job.result_ttl == 600 and job.failure_ttl == 600
    assert job.ttl == 600 and job.retries_left == 2
    # Non-integral pixel values (allowed by the JSON encoding) are kept exactly as float32.
    body = orjson.dumps({"images": (IMAGES[:1].astype(np.float32) / 2).tolist()})
    resp = client.post("/v1/jobs", content=body, headers={"content-type": "application/json"})
    job = queue.fetch_job(resp.json()["job_id"])
    assert job is not None and job.args[0] == "float32"
    assert len(queue.connection.get(input_key(queue.name, job.id))) == 4 * 3072
    assert client.get(resp.headers["location"]).json()["status"] == "queued"


@pytest.mark.parametrize(
    ("body", "ctype", "status"),
    [
        (b"{", "application/json", 400),
        (b'{"images": [[1]]}', "application/json", 422),
        (b'{"images_b64": ["aGVsbG8="]}', "application/json", 422),
        (b"hello", "text/plain", 415),
        (b"", "application/json", 400),
        (b"x" * 70_000, "application/json", 413),  # over max_body_bytes
    ],
)
def test_bad_bodies_are_4xx_and_enqueue_nothing(
    client: TestClient, queue: Queue, body: bytes, ctype: str, status: int
) -> None:
    resp = client.post("/v1/jobs", content=body, headers={"content-type": ctype})
    assert resp.status_code == status
    assert "error" in resp.json()
    assert queue.count == 0 and not queue.connection.keys("rq:job:*")
    assert not queue.connection.keys(input_key(queue.name, "*"))


def test_batch_limit_is_413(settings: JobQueueSettings, queue: Queue) -> None:
    with TestClient(create_app(settings.model_copy(update={"max_batch": 1}))) as c:
        body, ctype = encode_request(IMAGES, "base64")
        assert c.post("/v1/jobs", content=body, headers={"content-type": ctype}).status_code == 413
    assert queue.count == 0


def test_unknown_job_is_404(client: TestClient) -> None:
    assert client.get("/v1/jobs/0b7d1d6e-0000-4000-8000-000000000000").status_code == 404
    assert client.get("/v1/jobs/bad:id").status_code == 404
    assert client.get("/v1/jobs/x?wait_s=5").status_code == 404  # no waiting for unknown ids
    assert client.get("/v1/jobs/x?wait_s=-1").status_code == 422


def test_long_poll_is_bounded(settings: JobQueueSettings, client: TestClient) -> None:
    job_id = submit(client)  # no worker: stays queued
    start = time.monotonic()
    assert client.get(f"/v1/jobs/{job_id}").status_code == 202
    assert time.monotonic() - start < 1.0
    start = time.monotonic()
    resp = client.get(f"/v1/jobs/{job_id}?wait_s=1")
    assert resp.status_code == 202 and resp.json()["status"] == "queued"
    assert 1.0 <= time.monotonic() - start < 2.5
    with TestClient(create_app(settings.model_copy(update={"long_poll_max_s": 0.3}))) as c:
        start = time.monotonic()
        assert c.get(f"/v1/jobs/{job_id}?wait_s=60").status_code == 202  # capped
        assert time.monotonic() - start < 2.0


def test_long_poll_wakes_when_the_job_is_done(
    settings: JobQueueSettings, client: TestClient
) -> None:
    job_id = submit(client)
    answer: dict[str, Any] = {}

    def poll() -> None:
        start = time.monotonic()
        resp = client.get(f"/v1/jobs/{job_id}?wait_s=10")
        answer.update(resp.json(), code=resp.status_code, took=time.monotonic() - start)

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.3)
    make_worker(settings, ConstantModel()).work(burst=True, logging_level="WARNING")
    thread.join(10)
    assert answer["code"] == 200 and answer["status"] == "finished"
    assert answer["classes"] == [3, 3] and len(answer["probabilities"][0]) == 10
    assert answer["took"] < 3  # woken by the done channel, not by the 10 s bound


def test_max_works_rejects_at_once_with_retry_after(
    settings: JobQueueSettings, queue: Queue
) -> None:
    with TestClient(create_app(settings.model_copy(update={"max_works": 2}))) as c:
        submit(c)
        submit(c)
        body, ctype = encode_request(IMAGES, "base64")
        start = time.monotonic()
        busy = c.post("/v1/jobs", content=body, headers={"content-type": ctype})
        assert time.monotonic() - start < 1.0  # at once, not after waiting for room
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert "max_works" in busy.json()["error"]
        assert queue.count == 2
        assert c.get("/v1/info").json()["queued"] == 2
        make_worker(settings, ConstantModel()).work(burst=True, logging_level="WARNING")
        assert c.post("/v1/jobs", content=body, headers={"content-type": ctype}).status_code == 202


def test_max_works_is_never_overshot_by_concurrent_submissions(
    settings: JobQueueSettings, queue: Queue
) -> None:
    """Admission and enqueue are one step: 24 simultaneous submissions against room for 5."""
    from targets.jobqueue.web import JobService

    service = JobService(settings.model_copy(update={"max_works": 5}))
    body, ctype = encode_request(IMAGES, "base64")
    start = threading.Barrier(24)
    codes: list[int] = []

    def post() -> None:
        start.wait()
        codes.append(service.submit(body, ctype).status)

    threads = [threading.Thread(target=post) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(codes) == [202] * 5 + [503] * 19
    assert queue.count == 5
    assert len(queue.connection.keys(input_key(queue.name, "*"))) == 5  # refused: nothing kept
    assert len(queue.connection.keys("rq:job:*")) == 5


def test_a_full_redis_is_503_and_keeps_nothing(settings: JobQueueSettings, queue: Queue) -> None:
    conn = queue.connection
    used = int(conn.info("memory")["used_memory"])
    conn.config_set("maxmemory-policy", "noeviction")
    conn.config_set("maxmemory", str(used))  # already full
    try:
        with TestClient(create_app(settings)) as c:
            body, ctype = encode_request(IMAGES, "base64")
            resp = c.post("/v1/jobs", content=body, headers={"content-type": ctype})
    finally:
        conn.config_set("maxmemory", "0")
    assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
    assert "out of memory" in resp.json()["error"]
    assert queue.count == 0 and not conn.keys("rq:job:*") and not conn.keys("servecap:*:input:*")


def test_finished_and_failed_jobs_drop_their_input(
    settings: JobQueueSettings, client: TestClient, queue: Queue
) -> None:
    good = submit(client)
    bad = enqueue_raw(queue, b"not images", "uint8", 1)
    assert queue.connection.exists(input_key(queue.name, good), input_key(queue.name, bad.id)) == 2
    make_worker(settings, ConstantModel()).work(burst=True, logging_level="WARNING")
    assert client.get(f"/v1/jobs/{good}").json()["status"] == "finished"
    assert client.get(f"/v1/jobs/{bad.id}").json()["status"] == "failed"
    assert not queue.connection.keys(input_key(queue.name, "*"))


class Planted:
    """What an attacker would pickle: unpickling it creates a file (it must never happen)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_a_pickled_job_runs_nothing(
    settings: JobQueueSettings, client: TestClient, queue: Queue, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    pickling = Queue(settings.queue_name, connection=queue.connection)  # RQ's default: pickle
    planted = pickling.enqueue_call(TASK, args=(Planted(marker),))
    good = submit(client)
    worker = make_worker(settings, ConstantModel())
    worker.work(burst=True, logging_level="WARNING")
    assert not marker.exists()
    assert client.get(f"/v1/jobs/{good}").json()["status"] == "finished"  # the worker went on
    assert client.get(f"/v1/jobs/{planted.id}").status_code in (200, 404)
    assert planted.id not in queue.job_ids


def test_health_needs_a_live_worker(settings: JobQueueSettings, client: TestClient) -> None:
    assert client.get("/healthz").status_code == 503
    worker = make_worker(settings, ConstantModel())
    worker.register_birth()
    assert client.get("/healthz").json() == {"status": "ok", "workers": 1}
    assert client.get("/healthz?min_workers=2").status_code == 503
    assert client.get("/v1/info").json()["workers"] == 1
    # A killed worker closes its connections: it stops counting at once, though RQ still
    # lists it until its key expires.
    worker.connection.connection_pool.disconnect()
    assert client.get("/healthz").status_code == 503
    other = redis.Redis(port=settings.redis_port, password=PASSWORD)
    assert registered_worker_names(Queue(settings.queue_name, connection=other)) == {worker.name}


def test_redis_down_is_503_health_and_502_submit(settings: JobQueueSettings) -> None:
    down = settings.model_copy(update={"redis_port": free_port()})
    with TestClient(create_app(down)) as c:
        assert c.get("/healthz").status_code == 503
        body, ctype = encode_request(IMAGES, "base64")
        assert c.post("/v1/jobs", content=body, headers={"content-type": ctype}).status_code == 502
        assert c.get("/v1/jobs/abc").status_code == 502


def test_a_job_that_cannot_run_is_failed_without_retries(
    settings: JobQueueSettings, client: TestClient, queue: Queue
) -> None:
    bad = enqueue_raw(queue, b"not images", "uint8", 1, retry=Retry(max=2))
    good = submit(client)
    worker = make_worker(settings, ConstantModel())
    worker.work(burst=True, logging_level="WARNING")
    doc = client.get(f"/v1/jobs/{bad.id}").json()
    assert doc["status"] == "failed" and "expected 3072" in doc["error"]
    assert client.get(f"/v1/jobs/{good}").json()["status"] == "finished"
    counts = queue.connection.hmget(worker.key, ["failed_job_count", "successful_job_count"])
    assert counts == [b"1", b"1"]  # one attempt each: bad input is not retried
