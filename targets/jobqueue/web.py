"""The job-queue web API (FastAPI): validate and enqueue, report status, long-poll results.

Never loads the model: it needs only Redis. Run with uvicorn's factory mode::

    uvicorn targets.jobqueue.web:create_app --factory --host 127.0.0.1 --port 8101

Long polls (``GET /v1/jobs/<id>?wait_s=N``) cost no Redis polling: each web process keeps one
pub/sub subscription to the workers' done channel and wakes the requests waiting for the
announced job; every waiting request still re-reads its job's status once a second, so a
missed announcement (a Redis reconnect) delays an answer by a second at most. Redis being
unreachable is answered 502 (503 stays reserved for max_works admission control).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis
from fastapi import FastAPI, Query, Request, Response
from rq.exceptions import DeserializationError, InvalidJobOperation
from rq.job import Job, JobStatus
from rq.results import Result
from starlette.concurrency import run_in_threadpool

from targets.common.asgi import read_limited, to_response
from targets.common.payload import Decoder, PayloadError, error_body
from targets.common.service import Reply
from targets.jobqueue.admission import Admission, QueueFull, Submission
from targets.jobqueue.common import (
    SERIALIZER,
    WEB_CLIENT_NAME,
    JobQueueSettings,
    connect,
    done_channel,
    job_queue,
    live_worker_names,
    pack_images,
    password,
)
from targets.protocols.jobs import JOBS_PATH
from targets.protocols.servecap import HEALTH_PATH, INFO_PATH

RECHECK_S = 1.0
"""A waiting GET re-reads its job's status at least this often, announcement or not."""
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_WAITING = {JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED}
_FAILED = {JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}

log = logging.getLogger("servecap.jobqueue.web")


def _json(status: int, doc: dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, orjson.dumps(doc), headers or {})


class JobService:
    """The web's Redis side, framework-free and blocking (FastAPI calls it in a thread)."""

    def __init__(self, settings: JobQueueSettings, connection: redis.Redis | None = None) -> None:
        self.settings = settings
        self.connection = connection or connect(settings, WEB_CLIENT_NAME, retries=1)
        self.queue = job_queue(settings, self.connection)
        self.admission = Admission(self.queue, settings)
        self.decode = Decoder(settings.max_batch, settings.max_decodes, settings.input_shape)

    def busy(self, reason: str) -> Reply:
        return Reply(
            503,
            error_body(f"server busy: {reason}, try again later"),
            {"Retry-After": str(self.settings.retry_after_s)},
        )

    def body_too_large(self) -> Reply:
        return Reply(413, error_body(f"body exceeds {self.settings.max_body_bytes} bytes"))

    def submit(self, body: bytes, content_type: str | None) -> Reply:
        """Validation, then admission and enqueue in one step: 202 with the job id, or the
        error to answer (503 when the queue is full, before or after decoding)."""
        try:
            if self.settings.max_works and self.queue.count >= self.settings.max_works:
                return self.busy(f"{self.settings.max_works} jobs queued (max_works)")  # cheap
            try:
                images = self.decode(body, content_type)
            except PayloadError as err:
                return Reply(err.status, error_body(err.message))
            job = self.admission.enqueue(Submission(*pack_images(images)))
        except QueueFull as full:
            return self.busy(full.reason)
        except redis.exceptions.RedisError as err:
            return self.unavailable(err)
        location = f"{JOBS_PATH}/{job.id}"
        return _json(202, {"job_id": job.id, "status": "queued"}, {"Location": location})

    def job_reply(self, job_id: str) -> Reply:
        """The job's current state: 200 finished/failed, 202 queued/started, 404 unknown."""
        if not _JOB_ID.fullmatch(job_id):
            return self.unknown(job_id)
        job = Job(job_id, connection=self.connection, serializer=SERIALIZER)
        try:
            status = job.get_status(refresh=True)
            if status in _WAITING:
                return _json(202, {"job_id": job_id, "status": "queued"})
            if status == JobStatus.STARTED:
                return _json(202, {"job_id": job_id, "status": "started"})
            result = job.latest_result()
        except (InvalidJobOperation, DeserializationError):
            return self.unknown(job_id)
        except redis.exceptions.RedisError as err:
            return self.unavailable(err)
        if status == JobStatus.FINISHED:
            if result is None or result.type != Result.Type.SUCCESSFUL:
                return self.unknown(job_id)  # the result expired
            value = result.return_value if isinstance(result.return_value, dict) else {}
            return _json(200, {"job_id": job_id, "status": "finished", **value})
        if status in _FAILED:
            error = _error_line(result, status)
            return _json(200, {"job_id": job_id, "status": "failed", "error": error})
        return _json(202, {"job_id": job_id, "status": "queued"})

    def unknown(self, job_id: str) -> Reply:
        return Reply(404, error_body(f"no job {job_id!r} (never submitted, or its result expired)"))

    def unavailable(self, err: Exception) -> Reply:
        return Reply(502, error_body(f"job queue unavailable: {err}"))

    def health(self, min_workers: int) -> Reply:
        try:
            self.connection.ping()
            workers = len(live_worker_names(self.queue))
        except redis.exceptions.RedisError as err:
            return _json(503, {"status": "unavailable", "error": f"redis: {err}"})
        if workers < min_workers:
            doc = {"status": "unavailable", "error": f"{workers} live workers, need {min_workers}"}
            return _json(503, {**doc, "workers": workers})
        return _json(200, {"status": "ok", "workers": workers})

    def info(self) -> Reply:
        try:
            doc = {
                "queue": self.queue.name,
                "queued": self.queue.count,
                "started": self.queue.started_job_registry.get_job_count(cleanup=False),
                "failed": self.queue.failed_job_registry.get_job_count(cleanup=False),
                "workers": len(live_worker_names(self.queue)),
            }
        except redis.exceptions.RedisError as err:
            return self.unavailable(err)
        s = self.settings
        doc.update(
            max_works=s.max_works,
            job_batch_max=s.job_batch_max,
            job_timeout_s=s.job_timeout_s,
            queued_ttl_s=s.queued_ttl_s,
            result_ttl_s=s.result_ttl_s,
            failure_ttl_s=s.failure_ttl_s,
            job_retries=s.job_retries,
            long_poll_max_s=s.long_poll_max_s,
            pid=os.getpid(),
        )
        return _json(200, doc)


def _error_line(result: Result | None, status: JobStatus) -> str:
    text = (result.exc_string or "").strip() if result is not None else ""
    return text.splitlines()[-1] if text else f"job {status.value}"


class Waiters:
    """Requests waiting for a job, woken by the done channel (one event per request)."""

    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = {}

    def add(self, job_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._events.setdefault(job_id, set()).add(event)
        return event

    def remove(self, job_id: str, event: asyncio.Event) -> None:
        events = self._events.get(job_id)
        if events is not None:
            events.discard(event)
            if not events:
                del self._events[job_id]

    def notify(self, job_id: str) -> None:
        for event in self._events.get(job_id, ()):
            event.set()

    def notify_all(self) -> None:
        for events in self._events.values():
            for event in events:
                event.set()

    def __len__(self) -> int:
        return sum(len(events) for events in self._events.values())


async def listen(settings: JobQueueSettings, waiters: Waiters) -> None:
    """Forward the workers' done announcements to the waiters, reconnecting for ever."""
    channel = done_channel(settings.queue_name)
    while True:
        client = aioredis.Redis(
            host=settings.redis_host,
            port=settings.redis_port,
            password=password(settings),
            client_name=f"{WEB_CLIENT_NAME}-pubsub",
            socket_connect_timeout=2.0,
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            waiters.notify_all()  # anything announced while unsubscribed: re-check
            while True:
                message = await pubsub.get_message(timeout=5.0)
                if message is not None:
                    data = message.get("data")
                    waiters.notify(data.decode() if isinstance(data, bytes) else str(data))
        except asyncio.CancelledError:
            raise
        except Exception as err:  # Redis gone: retry; the waiters' re-checks cover the gap
            log.warning("done-channel subscription lost (%s); retrying", err)
            await asyncio.sleep(1.0)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
                await client.aclose()


def create_app(
    settings: JobQueueSettings | None = None, connection: redis.Redis | None = None
) -> FastAPI:
    """Build the app from ``SERVECAP_*`` settings unless given; connects to Redis lazily."""
    svc = JobService(settings or JobQueueSettings(), connection)
    waiters = Waiters()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(listen(svc.settings, waiters))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(
        title="servecap job-queue target", docs_url=None, redoc_url=None, lifespan=lifespan
    )
    app.state.service = svc
    app.state.waiters = waiters

    @app.get(HEALTH_PATH)
    async def healthz(min_workers: int = Query(1, ge=0, le=1024)) -> Response:
        return to_response(await run_in_threadpool(svc.health, min_workers))

    @app.get(INFO_PATH)
    async def info() -> Response:
        return to_response(await run_in_threadpool(svc.info))

    @app.post(JOBS_PATH)
    async def submit(request: Request) -> Response:
        body = await read_limited(request, svc.settings.max_body_bytes)
        if body is None:
            return to_response(svc.body_too_large())
        ctype = request.headers.get("content-type")
        return to_response(await run_in_threadpool(svc.submit, body, ctype))

    @app.get(JOBS_PATH + "/{job_id}")
    async def job(job_id: str, wait_s: float = Query(0.0, ge=0.0)) -> Response:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(wait_s, svc.settings.long_poll_max_s)
        event = waiters.add(job_id)  # before the first read: no announcement can slip by
        try:
            while True:
                reply = await run_in_threadpool(svc.job_reply, job_id)
                remaining = deadline - loop.time()
                if reply.status != 202 or remaining <= 0:
                    return to_response(reply)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout=min(remaining, RECHECK_S))
                event.clear()
        finally:
            waiters.remove(job_id, event)

    return app
