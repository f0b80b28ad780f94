"""Locust users for the asynchronous job-queue target: submit, long-poll, record the whole job.

One job (:meth:`JobPredict.send_predict`) is:

1. ``POST predict_path`` (the servecap predict body) -> 202 + job id; recorded as ``submit``.
2. ``GET /v1/jobs/<id>?wait_s=...`` long polls until the job is finished or failed, or
   ``timeout_s`` after the submit started; each poll is recorded as ``poll``. A poll answered
   502 or 503 (the queue's store unavailable: Redis restarting) or not answered at all is
   retried after :data:`POLL_RETRY_S`, as a client of a job queue would (a poll changes
   nothing), and recorded as a failed poll; a job is lost only when the server says it is
   gone (404), failed, or not done within ``timeout_s``.
3. One extra request event ``job`` (request type ``JOB``) per attempt: its response time is
   the end-to-end latency from the start of the submit to the result; status 200 when
   finished; 503 when the submit was refused (max_works: a rejection, with the submit's
   latency); 0 with the exception otherwise (submit error, failed job, poll error, timeout).

So the ``job`` rows are the headline: every attempt once, with the target's throughput,
end-to-end latency, error and rejection rates; ``submit`` shows admission, ``poll`` the
long-poll traffic.

:class:`JobUser` sends jobs closed-loop (ramp: one job at a time per user);
:class:`JobArrivalUser` open-loop (rate, find-max: Poisson or constant submissions, each
job's latency from its *scheduled* submit to its result, :class:`loadtests.users.OpenLoop`).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import orjson
from locust import FastHttpUser, constant, task

from analysis.contract import JOB_POLL_REQUEST, JOB_REQUEST, JOB_SUBMIT_REQUEST
from loadtests import clock
from loadtests.users import OpenLoop, _BodyCycle, _Protocol, answer_error
from targets.common.loopback import MAX_REDIRECTS
from targets.protocols.jobs import JOBS_PATH as JOB_PATH
from targets.protocols.servecap import MODEL_VERSION_HEADER

POLL_WAIT_MAX_S = 10.0
"""Longest single long poll (the server caps it at 30 s)."""
POLL_RETRY_S = 0.2
"""Pause before polling again after a poll the server could not answer (502, 503, no answer)."""
TRANSIENT_POLL_STATUSES = (0, 502, 503)


class JobFailed(Exception):
    """A job that did not finish: failed, lost, or not done within ``timeout_s``."""


class _JobResponse:
    """Carries an HTTP-like status for the recorder (200: finished; 0: did not finish), and
    the version of the model that computed the result, as a predict answer's header."""

    def __init__(self, status_code: int, model_version: str | None = None) -> None:
        self.status_code = status_code
        self.headers = {MODEL_VERSION_HEADER: model_version} if model_version else {}


class JobPredict(_Protocol, _BodyCycle, FastHttpUser):
    """Submits servecap predict bodies as jobs and waits for each result (the transport)."""

    abstract = True  # made concrete by the locustfile once configured
    headers: ClassVar[dict[str, str]] = {"Content-Type": "application/json"}
    predict_path: ClassVar[str] = JOB_PATH
    timeout_s: ClassVar[float] = 30.0
    """Give up on a job this long after its submit started."""
    wait_time = constant(0)
    max_redirects = MAX_REDIRECTS  # a redirect is an error (targets.common.loopback)

    def on_start(self) -> None:
        self._bodies = self._cycle()

    def send_predict(self, context: dict[str, Any] | None = None) -> dict[str, float]:
        """One job, recorded as ``job``; returns its submit time (``sent_ts``) for the
        open-loop pacer."""
        body = next(self._bodies)
        start_time = clock.now()
        start = time.perf_counter()
        job_id, status, answered = self._submit(body)
        result: bytes = b""
        error: Exception | None = None
        if job_id is not None:
            result, error = self._wait(job_id, start)
            status = 200 if error is None else 0
        elif status != 503:
            error = JobFailed(f"submit answered {answered}")
        version = _field(result, "model_version") if status == 200 else None
        self.environment.events.request.fire(
            request_type="JOB",
            name=JOB_REQUEST,
            response_time=(time.perf_counter() - start) * 1000,
            response_length=len(result),
            response=_JobResponse(status, version),
            exception=error if status != 503 else JobFailed("rejected (503)"),
            context={**(context or {}), "job_id": job_id},
            start_time=start_time,
            url=f"{self.host}{JOB_PATH}/{job_id or ''}",
        )
        return {"sent_ts": start_time}

    def _submit(self, body: bytes) -> tuple[str | None, int, str]:
        """POST the body: (job id, 202, "") when accepted, else (None, status, what it
        answered) (recorded as submit)."""
        with self.client.post(
            self.predict_path,
            data=body,  # type: ignore[arg-type]  # bytes are sent as-is at runtime
            headers=self.headers,
            name=JOB_SUBMIT_REQUEST,
            catch_response=True,
        ) as resp:
            if resp.status_code == 503:
                resp.failure("rejected (503)")
                return None, 503, "HTTP 503"
            if resp.status_code != 202:
                resp.failure(answer_error(resp))
                return None, resp.status_code, answer_error(resp)
            job_id = _field(resp.content, "job_id")
            if not job_id:
                resp.failure("202 without a job_id")
                return None, 0, "202 without a job_id"
            resp.success()
            return job_id, 202, ""

    def _wait(self, job_id: str, start: float) -> tuple[bytes, Exception | None]:
        """Long-poll until the job ends; (final body, None) if finished, else the error."""
        path = f"{JOB_PATH}/{job_id}"
        limit = max(1.0, float(getattr(self, "network_timeout", None) or 60.0) - 1.0)
        while True:
            remaining = self.timeout_s - (time.perf_counter() - start)
            if remaining <= 0:
                return b"", JobFailed(f"job not done after {self.timeout_s:g} s")
            wait = min(remaining, POLL_WAIT_MAX_S, limit)
            with self.client.get(
                f"{path}?wait_s={wait:.3f}", name=JOB_POLL_REQUEST, catch_response=True
            ) as resp:
                content = resp.content or b""
                if resp.status_code == 202:
                    resp.success()
                    continue
                if resp.status_code in TRANSIENT_POLL_STATUSES:
                    resp.failure(f"HTTP {resp.status_code}")
                    time.sleep(min(POLL_RETRY_S, max(0.0, remaining)))
                    continue
                if resp.status_code != 200:
                    resp.failure(answer_error(resp))
                    return content, JobFailed(f"poll answered {answer_error(resp)}")
                resp.success()
                status = _field(content, "status")
                if status == "finished":
                    return content, None
                error = _field(content, "error") or "no error given"
                return content, JobFailed(f"job {status}: {error}")


class JobUser(JobPredict):
    """ramp mode: each user sends one job at a time."""

    abstract = True

    @task
    def job(self) -> None:
        self.send_predict()


class JobArrivalUser(OpenLoop, JobPredict):
    """rate and find-max modes: jobs submitted on a schedule, whatever the earlier ones do."""

    abstract = True
    concurrency = 1000  # connections in FastHttpSession's pool

    @task
    def drive(self) -> None:
        self.run_open_loop()


def _field(content: bytes | None, key: str) -> str | None:
    try:
        doc: Any = orjson.loads(content or b"")
    except orjson.JSONDecodeError:
        return None
    value = doc.get(key) if isinstance(doc, dict) else None
    return str(value) if value is not None else None
