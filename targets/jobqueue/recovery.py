"""The job queue's jobs when something goes wrong: a worker died, or Redis is full.

* :func:`recover_abandoned`: the jobs claimed by workers that died (no Redis connection left
  carries their name) handed to RQ's abandoned-job path at once (re-enqueued at the front with
  one retry fewer, or failed), and the dead unregistered;
* :func:`requeue_stranded`: jobs a worker dequeued but died before claiming, put back at the
  head of the queue;
* :func:`give_back`: jobs taken from the queue and not claimed put back at its head in one
  script that runs when Redis is full (a claim refused for want of memory);
* :class:`OutOfMemoryRetry`: the worker's connection sends again, after a backoff, a write Redis
  refused for want of memory, while the worker completes a claimed batch.

Every live worker runs the first two with RQ's maintenance (:mod:`targets.jobqueue.worker`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from rq import Queue, SimpleWorker

from targets.jobqueue.common import (
    live_client_names,
    recovery_lock_key,
    registered_worker_names,
)

STRANDED_AFTER_S = 5.0
"""A job dequeued but unclaimed this long belonged to a worker that died (requeue_stranded)."""
OOM_BACKOFF_S = (0.05, 1.0)
"""First and longest pause before a write Redis refused for want of memory is sent again."""
GIVE_BACK = """#!lua flags=allow-oom
-- Jobs taken from the queue (into its intermediate list) put back at its head, in one step:
-- one LREM and one LPUSH each, no memory gained, so it runs when Redis is full (allow-oom).
local moved = {}
for i = 1, #ARGV do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) == 1 then
    redis.call('LPUSH', KEYS[2], ARGV[i])
    table.insert(moved, ARGV[i])
  end
end
return moved
"""
"""KEYS: the intermediate list, the queue; ARGV: job ids, the last to be put at the head first."""

log = logging.getLogger("servecap.jobqueue.recovery")
T = TypeVar("T")


def backoff_s(failures: int) -> float:
    """The pause after ``failures`` refusals in a row (exponential, capped)."""
    first, longest = OOM_BACKOFF_S
    return float(min(longest, first * 2 ** max(0, failures - 1)))


class OutOfMemoryRetry(Retry):
    """redis-py's retry of a worker's connection (connection errors, as before) and, while
    :attr:`riding_out`, of commands Redis refused for want of memory: sent again after
    :func:`backoff_s` until taken. Redis applies nothing of a refused command (nor of a
    transaction holding one), so sending it again is safe. One object for all connections of
    the pool (redis-py copies a connection's retry: this one is shared on purpose)."""

    def __init__(self, base: Retry | None = None) -> None:
        if base is None:
            super().__init__(ExponentialBackoff(), 3)
        else:
            super().__init__(base._backoff, base._retries, base._supported_errors)
        self.riding_out = False
        self.refused = 0
        """Refusals in a row (reset by the next command Redis takes)."""
        self.refusals = 0
        """Writes refused for want of memory, in all (for logs and tests)."""

    def __deepcopy__(self, memo: dict[int, Any]) -> OutOfMemoryRetry:
        return self

    def call_with_retry(
        self, do: Callable[[], T], fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None, with_failure_count: bool = False,
    ) -> T:  # fmt: skip
        while True:
            try:
                result = super().call_with_retry(do, fail, is_retryable, with_failure_count)
            except redis.exceptions.OutOfMemoryError as err:
                if not self.riding_out:
                    raise
                self.refused += 1
                self.refusals += 1
                if self.refused == 1:
                    log.warning("Redis is full (maxmemory): waiting to complete the batch")
                time.sleep(backoff_s(self.refused))
                # a WATCHed transaction raises WatchError here: its caller (RQ) redoes it
                fail(err, 1) if with_failure_count else fail(err)
                continue
            self.refused = 0
            return result


def give_back(queue: Queue, job_ids: Sequence[str]) -> list[str]:
    """Jobs taken into the queue's intermediate list and not claimed, back at the head of the
    queue in their order (:data:`GIVE_BACK`); returns those that were still there."""
    script = queue.connection.register_script(GIVE_BACK)
    moved = script(keys=[queue.intermediate_queue_key, queue.key], args=list(reversed(job_ids)))
    return [_text(m) for m in moved or []]


def requeue_stranded(queue: Queue, after_s: float) -> list[str]:
    """Put back at the head of the queue the jobs that sat in its intermediate list, never
    claimed, for ``after_s`` seconds: a worker died between dequeuing and claiming them (a
    claim takes milliseconds). RQ itself fails such jobs after a minute, by when every client
    waiting on them has given up (seen: one job lost when a worker was SIGKILLed under load).
    Returns the ids put back; of two maintainers, only the one whose LREM removes a job
    re-queues it."""
    inter = queue.intermediate_queue
    started = queue.started_job_registry
    moved: list[str] = []
    for job_id in inter.get_job_ids():
        if job_id in started:
            continue
        inter.set_first_seen(job_id)
        first = inter.get_first_seen(job_id)
        if first is None or (datetime.now(UTC) - first).total_seconds() < after_s:
            continue
        moved += give_back(queue, [job_id])  # one step: a job is never out of both lists
    return moved


def recover_abandoned(queue: Queue) -> list[str]:
    """Hand the jobs claimed by dead workers to RQ's abandoned-job handling; unregister the dead.

    A job in the started-job registry whose execution belongs to a worker with no Redis
    connection left is marked expired and passed to ``StartedJobRegistry.cleanup``: RQ then
    re-enqueues it (``Retry``, at the front) or, with no retry left, fails it with
    ``AbandonedJobError``. One worker at a time (a short lock). Returns the job ids handled.
    """
    conn = queue.connection
    lock = recovery_lock_key(queue.name)
    token = uuid.uuid4().hex
    if not conn.set(lock, token, nx=True, px=10_000):
        return []
    try:
        # Read who is registered and who owns what first, who is connected last: a worker that
        # registered or claimed a job before the client list was taken is in it if alive.
        registered = registered_worker_names(queue)
        registry = queue.started_job_registry
        owned: list[tuple[str, str]] = []
        for raw in conn.zrange(registry.key, 0, -1):
            member = _text(raw)
            owner = conn.hget(f"rq:execution:{member}", "worker_name")
            if ":" in member and owner is not None:  # else expired: RQ's TTL cleanup handles it
                owned.append((member, _text(owner)))
        live = live_client_names(conn)
        orphans = [member for member, owner in owned if owner not in live]
        recovered: list[str] = []
        if orphans:
            job_ids = [m.partition(":")[0] for m in orphans]
            with conn.pipeline() as pipe:
                for job_id in job_ids:
                    pipe.lrem(queue.intermediate_queue_key, 0, job_id)
                pipe.zadd(registry.key, dict.fromkeys(orphans, 1), xx=True)
                pipe.execute()
            registry.cleanup(timestamp=1)  # only the entries just marked have score <= 1
            recovered = job_ids
        for name in registered - live:
            _unregister(conn, name, queue.name)
        return recovered
    finally:
        if conn.get(lock) == token.encode():
            conn.delete(lock)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _unregister(conn: redis.Redis, name: str, queue_name: str) -> None:
    """RQ's register_death for a worker that could not do it itself."""
    key = SimpleWorker.redis_worker_namespace_prefix + name
    with conn.pipeline() as pipe:
        pipe.srem(SimpleWorker.redis_workers_keys, key)
        pipe.srem(f"rq:workers:{queue_name}", key)
        pipe.hset(key, "death", "unregistered by a live worker: no connection left")
        pipe.expire(key, 60)
        pipe.execute()
