"""Fixtures of the job-queue tests: a real Redis per test module (with a password, as the
launched target's), the web app on it, the real exported CNN."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from rq import Queue

from targets.jobqueue.common import (
    JobQueueSettings,
    connect,
    job_queue,
)
from targets.jobqueue.web import create_app
from targets.launchers.process import stop_process_group
from tests.targets.jobqueue.helpers import PASSWORD, free_port, wait_for_redis


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--loglevel", "warning", "--dir", str(workdir),
         "--requirepass", PASSWORD],
        stdout=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    wait_for_redis(proc, port, PASSWORD)
    return proc


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    proc = start_redis(port, tmp_path_factory.mktemp("redis"))
    yield port
    stop_process_group(proc, 5)


@pytest.fixture
def settings(redis_port: int) -> JobQueueSettings:
    redis.Redis(port=redis_port, password=PASSWORD).flushall()
    return JobQueueSettings(
        redis_port=redis_port, redis_password=PASSWORD, max_body_bytes=64 * 1024
    )


@pytest.fixture
def queue(settings: JobQueueSettings) -> Queue:
    return job_queue(settings, connect(settings, "test"))


@pytest.fixture
def client(settings: JobQueueSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def predictor(tiny_model: Path) -> Any:
    from targets.common.model import Predictor

    model = Predictor(tiny_model)
    model.warm_up()
    return model


@pytest.fixture(scope="module")
def cifar_images(cifar_dir: Path) -> np.ndarray:
    from targets.common.dataset import load_split

    return load_split("test", str(cifar_dir), limit=16, seed=0).images
