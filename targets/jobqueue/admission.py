"""Admission and enqueue as one Redis transaction: a job is queued only if there is room.

A submission writes three things: the job's images (:func:`~targets.jobqueue.common.input_key`),
RQ's job hash, and the job id pushed on the queue list. All three go in one ``MULTI``/``EXEC``;
the push is a Lua script that first compares the queue's length with ``max_works``, so no
number of concurrent submissions can make the queue longer than the limit. A refused job's hash
and images are deleted at once. When Redis is out of memory (``maxmemory`` with ``noeviction``)
the whole transaction is refused and nothing is written: the caller answers 503 as for a full
queue. Admission also stops short of ``maxmemory``: once Redis uses
:data:`ADMISSION_MEMORY_SHARE` of it, jobs are refused (503) while the workers keep the rest
for claiming, running and answering what was admitted; without that reserve a backlog that
filled Redis left its own workers unable to claim a job, and nothing freed memory but the
results' expiry.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.utils import now

from targets.jobqueue.common import TASK, JobQueueSettings, input_key

ADMISSION_MEMORY_SHARE = 0.9
"""Share of Redis's ``maxmemory`` past which no job is admitted (the rest is the workers')."""
_ADMIT = """
local limit = tonumber(ARGV[2])
if limit > 0 and redis.call('LLEN', KEYS[1]) >= limit then
  return 0
end
local share = tonumber(ARGV[3])
if share > 0 then
  local info = redis.call('INFO', 'memory')
  local cap = tonumber(string.match(info, 'maxmemory:(%d+)'))
  local used = tonumber(string.match(info, 'used_memory:(%d+)'))
  if cap and used and cap > 0 and used >= cap * share then
    return -1
  end
end
redis.call('RPUSH', KEYS[1], ARGV[1])
return 1
"""


class QueueFull(Exception):
    """The job was refused: the queue holds ``max_works`` jobs, or Redis is out of memory."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Submission:
    data: bytes
    dtype: str
    count: int


def input_ttl_s(settings: JobQueueSettings) -> int:
    """How long a job's images are kept at most: its longest legitimate life (waiting, then every
    attempt running to its timeout plus RQ's 60 s grace). A job that finishes deletes them."""
    attempts = 1 + settings.job_retries
    return settings.queued_ttl_s + attempts * (settings.job_timeout_s + 60)


def is_out_of_memory(err: redis.exceptions.RedisError) -> bool:
    return isinstance(err, redis.exceptions.OutOfMemoryError) or "OOM" in str(err)


class Admission:
    """Enqueues classify jobs on ``queue`` within ``settings.max_works`` (0 = no limit)."""

    def __init__(self, queue: Queue, settings: JobQueueSettings) -> None:
        self.queue = queue
        self.settings = settings
        self._admit = queue.connection.register_script(_ADMIT)
        retries = settings.job_retries
        self.retry = Retry(max=retries, enqueue_at_front=True) if retries else None

    def enqueue(self, job: Submission) -> Job:
        """The queued job; :class:`QueueFull` when refused; RedisError when Redis fails."""
        s = self.settings
        created = self.queue.create_job(
            TASK,
            args=(job.dtype, job.count),
            timeout=s.job_timeout_s,
            result_ttl=s.result_ttl_s,
            failure_ttl=s.failure_ttl_s,
            ttl=s.queued_ttl_s,
            retry=self.retry,
            description=f"classify {job.count} images",
        )
        created.origin = self.queue.name
        created.enqueued_at = now()
        key = input_key(self.queue.name, created.id)
        conn = self.queue.connection
        try:
            with conn.pipeline(transaction=True) as pipe:
                pipe.set(key, job.data, ex=input_ttl_s(s))
                pipe.sadd(self.queue.redis_queues_keys, self.queue.key)
                created.set_status(JobStatus.QUEUED, pipeline=pipe)
                created.save(pipeline=pipe)
                created.cleanup(ttl=created.ttl, pipeline=pipe)
                self._admit(keys=[self.queue.key], client=pipe,
                            args=[created.id, s.max_works, ADMISSION_MEMORY_SHARE])  # fmt: skip
                admitted = pipe.execute()[-1]
        except (redis.exceptions.ResponseError, redis.exceptions.ExecAbortError) as err:
            if is_out_of_memory(err):
                raise QueueFull("the queue's Redis is out of memory (maxmemory)") from err
            raise
        if admitted != 1:
            conn.delete(created.key, key)
            if admitted == 0:
                raise QueueFull(f"{s.max_works} jobs queued (max_works)")
            raise QueueFull(f"the queue's Redis is {ADMISSION_MEMORY_SHARE:.0%} full (maxmemory); "
                            "the rest is kept for the workers")  # fmt: skip
        return created
