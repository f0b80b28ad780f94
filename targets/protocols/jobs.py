"""The job queue's API: submit a servecap predict body as a job, long-poll its result.

``POST /v1/jobs`` (the servecap predict body) -> ``202 {"job_id"}``;
``GET /v1/jobs/<id>?wait_s=N`` -> ``202`` while queued or running, ``200 {"status":
"finished", "classes", "probabilities"}`` or ``200 {"status": "failed", "error"}``.
Its Locust user is :class:`loadtests.jobusers.JobUser`, whose end-to-end ``job`` rows are the
headline figures.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import orjson

from targets.common.loopback import http_get, http_post
from targets.protocols.base import Endpoint, Headers, ProtocolError
from targets.protocols.servecap import ServecapProtocol
from targets.record_names import JOB_REQUEST

JOBS_PATH = "/v1/jobs"
POLL_WAIT_S = 10.0


class JobsProtocol(ServecapProtocol):
    name = "servecap-jobs"
    transport = "jobs"
    modes = frozenset({"ramp", "rate", "find-max"})
    primary_request = JOB_REQUEST

    def predict_path(self, endpoint: Endpoint) -> str:
        return JOBS_PATH

    def probabilities(self, answer: bytes, endpoint: Endpoint | None = None) -> np.ndarray:
        doc: Any = orjson.loads(answer)
        if not isinstance(doc, dict) or doc.get("status") != "finished":
            raise ValueError(f"not a finished job: {str(doc)[:200]}")
        return np.asarray(doc["probabilities"], dtype=np.float32)

    def classes(self, answer: bytes, endpoint: Endpoint | None = None) -> list[int]:
        return [int(c) for c in self.probabilities(answer, endpoint).argmax(axis=1)]

    def infer(
        self, endpoint: Endpoint, body: bytes, headers: Headers, timeout_s: float = 30.0
    ) -> bytes:
        """Submit, then long-poll until the job ends; the finished job's document."""
        status, answer = http_post(endpoint.base_url + JOBS_PATH, body, headers, timeout_s)
        if status != 202:
            raise ProtocolError(f"submit answered HTTP {status}: {answer[:300]!r}", status)
        job_id = orjson.loads(answer)["job_id"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            url = f"{endpoint.base_url}{JOBS_PATH}/{job_id}?wait_s={POLL_WAIT_S:g}"
            status, answer = http_get(url, timeout_s + POLL_WAIT_S)
            if status == 202:
                continue
            doc = orjson.loads(answer)
            if status == 200 and doc.get("status") == "finished":
                return answer
            raise ProtocolError(f"job {job_id} failed: HTTP {status} {answer[:200]!r}", status)
        raise ProtocolError(f"job {job_id} not finished after {timeout_s:.0f} s")
