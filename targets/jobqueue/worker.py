"""Job-queue worker process: loads the model once, then runs queued jobs in batches, no fork.

Run as ``python -m targets.jobqueue.worker`` (settings from ``SERVECAP_*`` variables).

**No fork.** RQ's default ``Worker`` forks a work horse per job; TensorFlow is not fork-safe
and the model would be reloaded or copied per job. :class:`BatchWorker` extends
:class:`rq.SimpleWorker`, which runs jobs in its own process, and is registered with Redis only
after the model is loaded and warmed up, so a registered worker is a ready one.

**Batching** (:meth:`BatchWorker.execute_job`). The worker blocks on the queue as usual (RQ's
``BLMOVE`` into the queue's intermediate list); with one job in hand it takes, without
waiting, up to ``job_batch_max - 1`` more jobs that are already queued. It then

1. claims them all in one Redis transaction: an RQ ``Execution`` per job (the started-job
   registry, owned by this worker's name), status ``started``, out of the intermediate list;
2. decodes each job's images (a job that cannot be decoded gets its own error and is not
   retried), concatenates them and runs **one** model call; row offsets split the output back,
   so each job gets exactly its own rows (if the joint call raises, each job is run alone, so
   one bad job cannot fail the others);
3. completes each job through RQ's ordinary per-job path (``perform_job``: result saved with
   its ``result_ttl``, finished/failed registries, retries), the job function
   (:func:`targets.jobqueue.tasks.classify`) only handing over the precomputed outcome;
4. publishes the job id on the done channel, which wakes the web's long polls.

Nothing waits for a batch to fill: under light load a batch is one job.

**Killed workers.** What RQ alone does with the jobs of a worker killed by SIGKILL: jobs it had
claimed stay in the started-job registry until their entry expires (a SimpleWorker's entry
lasts the job timeout + 60 s, 90 s here) and a later maintenance pass (every 10 min by default)
moves them to ``failed`` with ``AbandonedJobError``, or re-enqueues them when the job has
retries left (``Retry(max=...)``); a job dequeued but not yet claimed sits in the intermediate
list and is handled the same way after at least a minute. With RQ defaults, accepted jobs are
lost (failed) after about 1.5-10 minutes.

Here: jobs are enqueued with ``Retry(max=job_retries, enqueue_at_front=True)``, and every live
worker runs :func:`~targets.jobqueue.recovery.recover_abandoned` with RQ's maintenance, at its
start and then every
:data:`MAINTENANCE_INTERVAL_S` seconds at its next pause between batches or dequeue waits
(so within about 10 s). A worker is dead when no Redis connection carries its name (the kernel
closes the sockets of a killed process at once), so its claimed jobs are found within seconds,
not minutes, and handed to RQ's own abandoned-job path at once: re-enqueued at the front with
one retry fewer, or failed when none is left. A frozen worker (SIGSTOP) still holds its
connections and keeps its jobs. The dead worker is also unregistered. What remains
is RQ's slow path for the narrow window between ``BLMOVE`` and the claim (milliseconds): such a
job is retried by RQ's intermediate-list cleanup after a minute or more. A job whose run kills
every worker that takes it fails after ``1 + job_retries`` attempts.

**A full Redis** (``maxmemory``, ``noeviction``: Redis refuses writes that need memory).
RQ's loop took that refusal for a fatal error and the worker exited. Here a worker rides it
out, pausing with a backoff and losing no job: a dequeue that is refused is tried again (the
job stays queued); a claim that is refused gives the batch back to the head of the queue in
one script that runs even when Redis is full (:func:`~targets.jobqueue.recovery.give_back`);
once a batch is claimed, every write that completes it (RQ's bookkeeping, the results) is sent
again until Redis takes it (:class:`~targets.jobqueue.recovery.OutOfMemoryRetry`: a refused
command or transaction
changes nothing, so sending it again is safe). Admission keeps the last tenth of ``maxmemory``
for this (:data:`targets.jobqueue.admission.ADMISSION_MEMORY_SHARE`) and answers 503 meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import redis
from rq import Queue, SimpleWorker, worker_registration
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.timeouts import JobTimeoutException
from rq.worker import WorkerStatus

from targets.common.payload import IMAGE_SHAPE, Shape
from targets.common.service import Model
from targets.jobqueue import tasks
from targets.jobqueue.common import (
    SERIALIZER,
    TASK,
    WORKER_NAME_PREFIX,
    JobInputError,
    JobQueueSettings,
    connect,
    done_channel,
    input_key,
    result_dict,
    unpack_images,
)
from targets.jobqueue.recovery import (
    STRANDED_AFTER_S,
    OutOfMemoryRetry,
    backoff_s,
    give_back,
    recover_abandoned,
    requeue_stranded,
)

WORKER_TTL_S = 20
"""RQ's worker TTL; a blocking dequeue waits ``WORKER_TTL_S - 15`` s between maintenance checks."""
MAINTENANCE_INTERVAL_S = 5
STOP_CHECK_S = 1
"""Longest single wait for a job: a stop request is honoured between waits."""
log = logging.getLogger("servecap.jobqueue.worker")


def worker_name() -> str:
    return f"{WORKER_NAME_PREFIX}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class BatchWorker(SimpleWorker):
    """A non-forking RQ worker that runs up to ``batch_max`` queued jobs per model call."""

    log_result_lifespan = False

    def __init__(
        self,
        queues: Sequence[str] | Sequence[Queue],
        *,
        connection: redis.Redis,
        predictor: Model,
        batch_max: int = 8,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("worker_ttl", WORKER_TTL_S)
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL_S)
        kwargs.setdefault("log_job_description", False)
        kwargs.setdefault("serializer", SERIALIZER)
        name = name or worker_name()
        # Every connection of this worker carries its name: that is how liveness is told.
        # ... and rides out a full Redis (OutOfMemoryRetry): both set on new connections.
        pool = connection.connection_pool
        current = pool.connection_kwargs.get("retry")
        retry = current if isinstance(current, OutOfMemoryRetry) else OutOfMemoryRetry(current)
        if pool.connection_kwargs.get("client_name") != name or (
            pool.connection_kwargs.get("retry") is not retry
        ):
            pool.connection_kwargs.update(client_name=name, retry=retry)
            pool.disconnect()
        self.memory_retry = retry
        """Rides out a full Redis while a claimed batch completes."""
        self._refused = 0
        """Dequeues or claims refused in a row for want of memory."""
        super().__init__(queues, name=name, connection=connection, **kwargs)
        self.predictor = predictor
        self._version = getattr(predictor, "version", None)
        self.shape: Shape = getattr(getattr(predictor, "input", None), "shape", IMAGE_SHAPE)
        """The images the model takes (jobs of another size fail as bad input)."""
        self.batch_max = batch_max
        self.batches = 0
        """Model calls made for batches (for tests and logs)."""

    # ------------------------------------------------------------------ warm shutdown

    def _shutdown(self) -> None:
        """SIGTERM while idle: stop at the next pause between dequeues, never inside one.

        RQ raises StopRequested from the signal handler when the worker is idle; arriving just
        after a blocking dequeue moved a job to the queue's intermediate list but before the
        job was claimed, it stranded that job until the job timed out (seen: one job lost per
        worker in a rolling model update). Here the dequeue waits at most
        :data:`STOP_CHECK_S` at a time and the stop is honoured between waits; a job dequeued
        meanwhile is run first (a warm shutdown)."""
        if self.get_state() == WorkerStatus.BUSY:
            super()._shutdown()
            return
        self._stop_requested = True

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        while not self._stop_requested:
            try:
                if timeout is None:  # burst: one non-blocking look
                    return super().dequeue_job_and_maintain_ttl(None, max_idle_time)
                result = super().dequeue_job_and_maintain_ttl(
                    STOP_CHECK_S, max_idle_time=STOP_CHECK_S
                )
            except redis.exceptions.OutOfMemoryError:
                self._pause_for_memory("a dequeue")  # the job stays queued
                continue
            if result is not None:
                return result
        return None  # the work loop then stops

    def _pause_for_memory(self, what: str) -> None:
        self._refused += 1
        if self._refused == 1:
            log.warning("Redis is full (maxmemory): %s was refused; pausing (no job is lost)",
                        what)  # fmt: skip
        time.sleep(backoff_s(self._refused))

    @contextlib.contextmanager
    def _riding_out_memory(self) -> Iterator[None]:
        self.memory_retry.riding_out = True
        try:
            yield
        finally:
            self.memory_retry.riding_out = False

    # ------------------------------------------------------------------ batch execution

    def execute_job(self, job: Job, queue: Queue) -> None:
        batch = [(job, queue), *self._take_queued(self.batch_max - 1)]
        try:
            executions = self._claim(batch)
        except redis.exceptions.OutOfMemoryError:
            for q in {id(q): q for _, q in batch}.values():
                give_back(q, [j.id for j, jq in batch if jq is q])
            self._pause_for_memory(f"the claim of {len(batch)} job(s)")
            return
        self._refused = 0
        with self._riding_out_memory():
            self._complete(batch, executions, queue)
            self.set_state(WorkerStatus.IDLE)

    def _complete(self, batch: list[tuple[Job, Queue]], executions: dict[str, Execution],
                  queue: Queue) -> None:  # fmt: skip
        """One model call for the claimed batch, then each job finished through RQ."""
        outcomes = self._infer([j for j, _ in batch])
        channel = done_channel(queue.name)
        for j, q in batch:
            outcome = outcomes.get(j.id)
            if outcome is not None:
                tasks.PRECOMPUTED[j.id] = outcome
                if isinstance(outcome, JobInputError):
                    j.retries_left = 0  # bad input fails again: no retry
            self.execution = executions[j.id]
            try:
                self.perform_job(j, q)
            finally:
                tasks.PRECOMPUTED.pop(j.id, None)
            with contextlib.suppress(redis.exceptions.RedisError):  # waiters re-check anyway
                self._drop_input_if_done(j, q)
                self.connection.publish(channel, j.id)

    def _drop_input_if_done(self, job: Job, queue: Queue) -> None:
        """Delete the job's images once no attempt is left to need them (a retried job keeps
        them; a job that is never finished loses them with their TTL)."""
        if job.get_status(refresh=True) in (JobStatus.FINISHED, JobStatus.FAILED):
            self.connection.delete(input_key(queue.name, job.id))

    def _take_queued(self, limit: int) -> list[tuple[Job, Queue]]:
        """Up to ``limit`` more jobs that are queued right now (RQ's non-blocking dequeue)."""
        taken: list[tuple[Job, Queue]] = []
        while len(taken) < limit:
            try:
                found = self.queue_class.dequeue_any(
                    self._ordered_queues,
                    None,
                    connection=self.connection,
                    job_class=self.job_class,
                    serializer=self.serializer,
                    death_penalty_class=self.death_penalty_class,
                )
            except redis.exceptions.OutOfMemoryError:
                break  # Redis is full: the batch is what was taken
            if found is None:
                break
            taken.append(found)
        return taken

    def _claim(self, batch: list[tuple[Job, Queue]]) -> dict[str, Execution]:
        """Register every job of the batch as started by this worker, atomically."""
        executions: dict[str, Execution] = {}
        with self.connection.pipeline() as pipe:
            for job, queue in batch:
                ttl = self.get_heartbeat_ttl(job)
                execution = Execution.create(job, ttl, pipeline=pipe, worker_name=self.name)
                executions[job.id] = execution
                job.prepare_for_execution(self.name, pipeline=pipe)
                pipe.lrem(queue.intermediate_queue_key, 1, job.id)
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            pipe.execute()
        return executions

    def _infer(self, jobs: list[Job]) -> dict[str, tasks.Outcome]:
        """Each classify job's outcome (result or exception), from one model call if possible."""
        outcomes: dict[str, tasks.Outcome] = {}
        decoded: list[tuple[str, np.ndarray]] = []
        mine = [job for job in jobs if _is_classify(job)]  # others: RQ runs (or fails) them
        if not mine:
            return outcomes
        keys = [input_key(job.origin, job.id) for job in mine]
        for job, data in zip(mine, self.connection.mget(keys), strict=True):
            try:
                dtype, count = job.args  # a malformed job raises here: failed as bad input
                decoded.append((job.id, unpack_images(data, dtype, count, self.shape)))
            except Exception as err:  # a malformed job, whatever the cause
                outcomes[job.id] = JobInputError(f"cannot decode the job's images: {err}")
        if not decoded:
            return outcomes
        timeout = max(int(job.timeout or self.queue_class.DEFAULT_TIMEOUT) for job in jobs)
        try:
            probs = self._predict(np.concatenate([images for _, images in decoded]), timeout)
        except JobTimeoutException:
            for job_id, _ in decoded:
                outcomes[job_id] = JobTimeoutException(f"model call exceeded {timeout} s")
            return outcomes
        except Exception as err:
            if len(decoded) == 1:
                outcomes[decoded[0][0]] = RuntimeError(f"model call failed: {err!r}")
                return outcomes
            log.exception("batch model call failed; running its %d jobs one by one", len(decoded))
            return {**outcomes, **self._infer_one_by_one(decoded, timeout)}
        self.batches += 1
        offset = 0
        for job_id, images in decoded:
            outcomes[job_id] = result_dict(probs[offset : offset + len(images)], self._version)
            offset += len(images)
        return outcomes

    def _infer_one_by_one(
        self, decoded: list[tuple[str, np.ndarray]], timeout: int
    ) -> dict[str, tasks.Outcome]:
        outcomes: dict[str, tasks.Outcome] = {}
        for job_id, images in decoded:
            try:
                outcomes[job_id] = result_dict(self._predict(images, timeout), self._version)
            except Exception as err:
                outcomes[job_id] = RuntimeError(f"model call failed: {err!r}")
        return outcomes

    def _predict(self, images: np.ndarray, timeout: int) -> np.ndarray:
        with self.death_penalty_class(timeout, JobTimeoutException):
            return self.predictor.predict(images)

    # ------------------------------------------------------------------ maintenance

    def run_maintenance_tasks(self) -> None:
        if self.birth_date is not None:  # registered: make sure no one took it for dead
            with contextlib.suppress(redis.exceptions.RedisError):
                self._reassert_registration()
        for queue in self.queues:
            try:
                recovered = recover_abandoned(queue)
            except redis.exceptions.RedisError:
                log.exception("recovery of abandoned jobs failed")
                continue
            if recovered:
                log.warning("re-queued jobs of dead workers (or failed them): %s", recovered)
            with contextlib.suppress(redis.exceptions.RedisError):
                stranded = requeue_stranded(queue, STRANDED_AFTER_S)
                if stranded:
                    log.warning("re-queued jobs dequeued by a worker that died before claiming "
                                "them: %s", stranded)  # fmt: skip
        try:
            super().run_maintenance_tasks()
        except redis.exceptions.OutOfMemoryError:
            log.warning("Redis is full (maxmemory): RQ's maintenance skipped this time")

    def _reassert_registration(self) -> None:
        if self.connection.sismember(self.redis_workers_keys, self.key):
            return
        log.warning("worker %s was unregistered while alive; registering again", self.name)
        with self.connection.pipeline() as pipe:
            pipe.hdel(self.key, "death")
            worker_registration.register(self, pipe)
            pipe.execute()


def _is_classify(job: Job) -> bool:
    try:
        return job.func_name == TASK
    except Exception:  # undecodable job data (not JSON): RQ's own path fails the job
        return False


def main() -> None:
    settings = JobQueueSettings()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    from targets.common.model import Predictor  # TensorFlow
    from targets.common.service import freeze_heap

    predictor = Predictor(settings.model_path, settings.input_range)
    predictor.warm_up((1, settings.job_batch_max))
    freeze_heap()
    tasks.set_predictor(predictor)
    name = worker_name()
    worker = BatchWorker(
        [settings.queue_name],
        connection=connect(settings, name, timeout_s=None),
        predictor=predictor,
        batch_max=settings.job_batch_max,
        name=name,
    )
    log.warning(
        "worker %s ready: model %s (loaded in %.1f s), batch max %d",
        name,
        predictor.version_dir,
        predictor.load_duration_s,
        settings.job_batch_max,
    )
    worker.work(logging_level="WARNING")


if __name__ == "__main__":
    main()
