"""The job queue when Redis is full (``maxmemory``, ``noeviction``): admission refuses (503)
before the workers run short, and a worker rides out a full Redis, losing no job.

Runs on a real Redis (the fixtures of this folder's conftest) whose ``maxmemory``
is set, for one test, to what it already uses: every write that needs memory is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from rq import Queue
from rq.job import Job, JobStatus

from targets.common.payload import encode_request
from targets.jobqueue.admission import ADMISSION_MEMORY_SHARE
from targets.jobqueue.common import JobQueueSettings
from targets.jobqueue.web import create_app
from targets.jobqueue.worker import BatchWorker
from tests.targets.jobqueue.helpers import IMAGES, ConstantModel, enqueue_raw, make_worker


@pytest.fixture
def conn(queue: Queue) -> Iterator[redis.Redis]:
    connection = queue.connection
    connection.config_set("maxmemory-policy", "noeviction")
    yield connection
    connection.config_set("maxmemory", "0")


def fill(conn: redis.Redis, share: float = 1.05) -> None:
    """Set ``maxmemory`` so that what Redis uses now is ``share`` of it (default: past full,
    so a connection closing does not make room), with 4 MB of ballast first, so that a share
    under 1 leaves room for a job or two."""
    for i in range(256):  # small values: no big query buffer to shrink away later
        conn.set(f"test:ballast:{i}", b"\0" * 16 * 2**10)
    used = int(conn.info("memory")["used_memory"])
    conn.config_set("maxmemory", str(int(used / share)))


def status(queue: Queue, job_id: str) -> JobStatus | None:
    return Job.fetch(job_id, connection=queue.connection).get_status(refresh=True)


def test_admission_keeps_the_last_tenth_of_redis_for_the_workers(
    settings: JobQueueSettings, conn: redis.Redis
) -> None:
    body, ctype = encode_request(IMAGES, "base64")
    with TestClient(create_app(settings)) as c:
        fill(conn, share=(1 + 2 * ADMISSION_MEMORY_SHARE) / 3)  # 93%: past the share
        refused = c.post("/v1/jobs", content=body, headers={"content-type": ctype})
        conn.config_set("maxmemory", "0")
        accepted = c.post("/v1/jobs", content=body, headers={"content-type": ctype})
    assert refused.status_code == 503 and "kept for the workers" in refused.json()["error"]
    assert accepted.status_code == 202


def test_a_refused_claim_gives_the_batch_back_in_order(
    settings: JobQueueSettings, queue: Queue, conn: redis.Redis
) -> None:
    ids = [enqueue_raw(queue, IMAGES.tobytes(), "uint8", len(IMAGES)).id for _ in range(3)]
    worker = make_worker(settings, ConstantModel())
    first = worker.dequeue_job_and_maintain_ttl(None)  # into the intermediate list
    assert first is not None
    fill(conn)
    worker.execute_job(*first)  # the claim is refused: no exception, nothing lost
    assert queue.job_ids == ids and queue.intermediate_queue.get_job_ids() == []
    assert queue.started_job_registry.get_job_count(cleanup=False) == 0
    conn.config_set("maxmemory", "0")
    make_worker(settings, ConstantModel()).work(burst=True, logging_level="WARNING")
    assert {status(queue, i) for i in ids} == {JobStatus.FINISHED}


class FillingModel(ConstantModel):
    """Its first call fills Redis, and memory comes back ``full_s`` later: what the worker then
    has to write (results, RQ's bookkeeping, the next dequeues) meets a full Redis."""

    def __init__(self, conn: redis.Redis, queue: Queue, full_s: float = 1.0) -> None:
        self.conn, self.queue, self.full_s = conn, queue, full_s
        self.seen: dict[str, object] = {}
        """What the test checks, taken just before memory came back."""
        self.worker: BatchWorker | None = None
        self.ids: list[str] = []
        self.filled = False
        self.lifted = threading.Event()

    def predict(self, images: np.ndarray) -> np.ndarray:
        if not self.filled:
            self.filled = True
            fill(self.conn)
            threading.Timer(self.full_s, self._lift).start()
        return super().predict(images)

    def _lift(self) -> None:
        assert self.worker is not None
        self.seen = {"refusals": self.worker.memory_retry.refusals,
                     "statuses": [status(self.queue, i) for i in self.ids]}  # fmt: skip
        self.conn.config_set("maxmemory", "0")
        self.lifted.set()


def test_a_worker_rides_out_a_full_redis_and_loses_no_job(
    settings: JobQueueSettings, queue: Queue, conn: redis.Redis
) -> None:
    ids = [enqueue_raw(queue, IMAGES.tobytes(), "uint8", len(IMAGES)).id for _ in range(3)]
    model = FillingModel(conn, queue)
    worker = make_worker(settings, model, batch_max=1)  # the later jobs meet a full Redis
    model.worker, model.ids = worker, ids
    worker.work(burst=True, logging_level="WARNING")  # returns once the queue is empty
    assert model.lifted.wait(5)
    # while Redis was full: writes refused again and again, the running job still started
    assert model.seen["refusals"] >= 2, model.seen  # type: ignore[operator]
    assert model.seen["statuses"] == [JobStatus.STARTED, JobStatus.QUEUED, JobStatus.QUEUED]
    assert {status(queue, i) for i in ids} == {JobStatus.FINISHED}
    assert queue.count == 0 and queue.intermediate_queue.get_job_ids() == []
