"""What the job-queue tests share besides fixtures (those are in conftest.py beside this)."""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

import numpy as np
import redis
from fastapi.testclient import TestClient
from rq import Queue
from rq.job import Job

from targets.common.payload import encode_request
from targets.jobqueue.common import (
    TASK,
    JobQueueSettings,
    connect,
    input_key,
)
from targets.jobqueue.worker import BatchWorker
from tests.ports import free_port as free_block

IMAGES = np.random.default_rng(1).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
PASSWORD = "test-" + os.urandom(8).hex()
"""The test Redis asks for a password, as the launched target's does."""


def wait_for_redis(proc: subprocess.Popen[bytes], port: int, password: str) -> None:
    """Until the Redis just started answers (killed, RuntimeError, after 5 s)."""
    client = redis.Redis(port=port, password=password)
    for _ in range(100):
        try:
            client.ping()
            return
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def free_port(gap: int = 0) -> int:
    """A free loopback port whose ``port + gap`` is free too."""
    return free_block(gap + 1)


def enqueue_raw(queue: Queue, data: bytes, dtype: str, count: int, **kwargs: Any) -> Job:
    """A classify job whose stored input is ``data`` (bypassing the web's validation)."""
    job = queue.enqueue_call(TASK, args=(dtype, count), **kwargs)
    queue.connection.set(input_key(queue.name, job.id), data)
    return job


class ConstantModel:
    """Web tests only need jobs to complete: class 3 for every image."""

    version = 1

    def predict(self, images: np.ndarray) -> np.ndarray:
        probs = np.zeros((len(images), 10), dtype=np.float32)
        probs[:, 3] = 1.0
        return probs


class CountingModel:
    """Wraps a model, recording the batch size of every call."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.version = model.version
        self.calls: list[int] = []

    def predict(self, images: np.ndarray) -> np.ndarray:
        self.calls.append(len(images))
        result: np.ndarray = self.model.predict(images)
        return result


def make_worker(settings: JobQueueSettings, model: Any, batch_max: int = 8) -> BatchWorker:
    name = f"servecap-worker-test-{os.urandom(3).hex()}"
    conn = connect(settings, name, timeout_s=None)
    return BatchWorker([settings.queue_name], connection=conn, predictor=model,
                       batch_max=batch_max, name=name)  # fmt: skip


def zlib_or_raw(data: bytes) -> bytes:
    """A job hash's ``data`` field as RQ reads it (zlib-compressed or not)."""
    import zlib

    try:
        return zlib.decompress(data)
    except zlib.error:
        return data


def submit(c: TestClient, images: np.ndarray = IMAGES, encoding: str = "base64") -> str:
    body, ctype = encode_request(images, encoding)
    resp = c.post("/v1/jobs", content=body, headers={"content-type": ctype})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["job_id"])
