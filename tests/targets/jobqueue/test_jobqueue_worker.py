"""The job queue's batch workers with the real model (``tiny_model``) on a real Redis, and
the recovery of the jobs of dead workers."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from rq import Queue
from rq.job import Job

from targets.jobqueue.common import (
    SERIALIZER,
    JobQueueSettings,
    connect,
    live_worker_names,
    registered_worker_names,
)
from targets.jobqueue.recovery import recover_abandoned
from tests.machine import needs_redis
from tests.targets.jobqueue.helpers import (
    IMAGES,
    ConstantModel,
    CountingModel,
    enqueue_raw,
    make_worker,
    submit,
)

pytestmark = needs_redis()


def test_batch_gives_each_job_its_own_rows(
    settings: JobQueueSettings, client: TestClient, predictor: Any, cifar_images: np.ndarray
) -> None:
    sizes = [1, 3, 2, 4, 1]
    offsets = np.cumsum([0, *sizes])
    chunks = [cifar_images[a:b] for a, b in itertools.pairwise(offsets)]
    ids = [submit(client, chunk, "jpeg" if i % 2 else "base64") for i, chunk in enumerate(chunks)]
    model = CountingModel(predictor)
    worker = make_worker(settings, model, batch_max=8)
    worker.work(burst=True, logging_level="WARNING")
    assert model.calls == [11] and worker.batches == 1  # five jobs, one model call
    for job_id, chunk in zip(ids, chunks, strict=True):
        doc = client.get(f"/v1/jobs/{job_id}").json()
        assert doc["status"] == "finished"
        alone = predictor.predict(chunk.astype(np.float32))
        assert doc["classes"] == alone.argmax(axis=1).tolist()
        np.testing.assert_allclose(doc["probabilities"], alone, atol=1e-5)
    # A smaller batch_max splits the queue into several model calls.
    for chunk in chunks:
        submit(client, chunk)
    model.calls.clear()
    make_worker(settings, model, batch_max=2).work(burst=True, logging_level="WARNING")
    assert model.calls == [4, 6, 1]


class PickyModel(ConstantModel):
    """Raises when an all-black image is in the batch, as a model might on bad input."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, images: np.ndarray) -> np.ndarray:
        self.calls.append(len(images))
        if (images.reshape(len(images), -1).max(axis=1) == 0).any():
            raise ValueError("cannot classify an all-black image")
        return super().predict(images)


def test_one_bad_job_does_not_fail_its_batch(
    settings: JobQueueSettings, client: TestClient
) -> None:
    bad = submit(client, np.zeros((1, 32, 32, 3), np.uint8))
    good = submit(client, IMAGES)
    model = PickyModel()
    make_worker(settings, model).work(burst=True, logging_level="WARNING")
    assert model.calls == [3, 1, 2, 1, 1]  # the batch, each alone, then the bad one's retries
    assert client.get(f"/v1/jobs/{good}").json()["classes"] == [3, 3]
    doc = client.get(f"/v1/jobs/{bad}").json()
    assert doc["status"] == "failed" and "all-black" in doc["error"]


def test_the_job_function_also_runs_on_a_plain_rq_worker(
    settings: JobQueueSettings, client: TestClient
) -> None:
    from rq import SimpleWorker

    from targets.jobqueue import tasks

    job_id = submit(client)
    tasks.set_predictor(ConstantModel())
    try:
        conn = connect(settings, "plain")
        SimpleWorker([settings.queue_name], connection=conn, serializer=SERIALIZER).work(
            burst=True, logging_level="WARNING"
        )
    finally:
        tasks.set_predictor(None)
    assert client.get(f"/v1/jobs/{job_id}").json()["classes"] == [3, 3]


def test_jobs_of_a_dead_worker_are_requeued_and_finish(
    settings: JobQueueSettings, client: TestClient, queue: Queue, predictor: Any
) -> None:
    ids = [submit(client) for _ in range(3)]
    doomed = make_worker(settings, predictor)
    doomed.register_birth()
    claimed = doomed._take_queued(3)
    doomed._claim(claimed)  # ... and dies before running them
    assert [j.id for j, _ in claimed] == ids
    assert {client.get(f"/v1/jobs/{i}").json()["status"] for i in ids} == {"started"}
    survivor = make_worker(settings, predictor)
    survivor.register_birth()
    assert recover_abandoned(queue) == []  # its owner is still connected: not abandoned

    doomed.connection.connection_pool.disconnect()  # what SIGKILL does to its sockets
    assert sorted(recover_abandoned(queue)) == sorted(ids)
    assert queue.started_job_registry.get_job_count(cleanup=False) == 0
    assert sorted(queue.job_ids) == sorted(ids)  # back in the queue, one retry fewer
    assert {Job.fetch(i, connection=queue.connection).retries_left for i in ids} == {1}
    assert live_worker_names(queue) == {survivor.name} == registered_worker_names(queue)
    survivor.register_death()
    survivor.work(burst=True, logging_level="WARNING")
    assert {client.get(f"/v1/jobs/{i}").json()["status"] for i in ids} == {"finished"}


def test_a_job_that_outlives_its_retries_is_failed_as_abandoned(
    settings: JobQueueSettings, client: TestClient, queue: Queue, predictor: Any
) -> None:
    job = enqueue_raw(queue, IMAGES.tobytes(), "uint8", 2, retry=None)
    doomed = make_worker(settings, predictor)
    doomed._claim(doomed._take_queued(1))
    doomed.connection.connection_pool.disconnect()
    assert recover_abandoned(queue) == [job.id]
    doc = client.get(f"/v1/jobs/{job.id}").json()
    assert doc["status"] == "failed" and "AbandonedJobError" in doc["error"]


def test_a_live_worker_is_never_left_unregistered(settings: JobQueueSettings, queue: Queue) -> None:
    worker = make_worker(settings, ConstantModel())
    worker.register_birth()
    recover_abandoned(queue)  # it is connected: stays registered
    assert registered_worker_names(queue) == {worker.name}
    queue.connection.srem(worker.redis_workers_keys, worker.key)  # as if taken for dead
    queue.connection.srem(f"rq:workers:{queue.name}", worker.key)
    worker.run_maintenance_tasks()
    assert live_worker_names(queue) == {worker.name}


def test_a_job_stranded_by_a_worker_that_died_before_claiming_it_is_queued_again(
    settings: JobQueueSettings, queue: Queue
) -> None:
    """A worker killed between dequeuing (the job moved to the intermediate list) and
    claiming it: the job goes back to the head of the queue, not to RQ's one-minute failure."""
    from targets.jobqueue.recovery import requeue_stranded

    job = enqueue_raw(queue, IMAGES.tobytes(), "uint8", len(IMAGES))
    conn = queue.connection
    inter = queue.intermediate_queue
    assert conn.lmove(queue.key, inter.key, "LEFT", "RIGHT") is not None  # dequeued, then died
    assert queue.count == 0
    assert requeue_stranded(queue, after_s=3600) == []  # seen now: not yet stranded
    assert requeue_stranded(queue, after_s=0) == [job.id]
    assert queue.job_ids == [job.id] and inter.get_job_ids() == []
    assert requeue_stranded(queue, after_s=0) == []  # nothing left to move, nothing moved twice
