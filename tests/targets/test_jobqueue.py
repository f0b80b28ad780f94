"""Job-queue target: web API on a real Redis, batch workers with the real model, recovery of the
jobs of killed workers, and the full target started by the process launcher.

Web tests need only Redis (the web never loads a model); where a job must complete for a web
test, a :class:`~targets.jobqueue.worker.BatchWorker` runs in burst mode with ``ConstantModel``.
Worker tests use the real exported CNN (``tiny_model``).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil
import pytest
import redis
from fastapi.testclient import TestClient
from rq import Queue, Retry
from rq.job import Job

from targets.common.payload import encode_request
from targets.jobqueue.common import (
    SERIALIZER,
    TASK,
    JobQueueSettings,
    connect,
    input_key,
    job_queue,
    live_worker_names,
    registered_worker_names,
)
from targets.jobqueue.launch import worker_spec
from targets.jobqueue.redis_server import PASSWORD_ENV
from targets.jobqueue.web import create_app
from targets.jobqueue.worker import BatchWorker, recover_abandoned
from targets.launchers.process import ProcessLauncher, stop_process_group
from targets.registry import target_config
from tests.ports import free_port as free_block

IMAGES = np.random.default_rng(1).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
PASSWORD = "test-" + os.urandom(8).hex()
"""The test Redis asks for a password, as the launched target's does."""
pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed (make setup)"
)


def free_port(gap: int = 0) -> int:
    """A free loopback port whose ``port + gap`` is free too."""
    return free_block(gap + 1)


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--loglevel", "warning", "--dir", str(workdir),
         "--requirepass", PASSWORD],
        stdout=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    client = redis.Redis(port=port, password=PASSWORD)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


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


def enqueue_raw(queue: Queue, data: bytes, dtype: str, count: int, **kwargs: Any) -> Job:
    """A classify job whose stored input is ``data`` (bypassing the web's validation)."""
    job = queue.enqueue_call(TASK, args=(dtype, count), **kwargs)
    queue.connection.set(input_key(queue.name, job.id), data)
    return job


@pytest.fixture
def client(settings: JobQueueSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


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


# --------------------------------------------------------------------------- web


def test_submit_is_202_with_location_and_compact_job(client: TestClient, queue: Queue) -> None:
    body, ctype = encode_request(IMAGES, "jpeg")
    resp = client.post("/v1/jobs", content=body, headers={"content-type": ctype})
    assert resp.status_code == 202
    doc = resp.json()
    assert doc["status"] == "queued"
    assert resp.headers["location"] == f"/v1/jobs/{doc['job_id']}"
    assert queue.job_ids == [doc["job_id"]]
    job = queue.fetch_job(doc["job_id"])
    assert job is not None and job.func_name == TASK
    dtype, count = job.args
    data = queue.connection.get(input_key(queue.name, job.id))
    assert (dtype, count, len(data)) == ("uint8", 2, 2 * 32 * 32 * 3)  # raw bytes, not JSON
    assert 0 < queue.connection.ttl(input_key(queue.name, job.id)) <= 600 + 3 * 90
    stored = queue.connection.hget(job.key, "data")
    assert stored is not None and b"classify" in zlib_or_raw(stored)  # JSON, readable as text
    assert job.timeout == 30 and job.result_ttl == 600 and job.failure_ttl == 600
    assert job.ttl == 600 and job.retries_left == 2
    # Non-integral pixel values (allowed by the JSON encoding) are kept exactly as float32.
    body = orjson.dumps({"images": (IMAGES[:1].astype(np.float32) / 2).tolist()})
    resp = client.post("/v1/jobs", content=body, headers={"content-type": "application/json"})
    job = queue.fetch_job(resp.json()["job_id"])
    assert job is not None and job.args[0] == "float32"
    assert len(queue.connection.get(input_key(queue.name, job.id))) == 4 * 3072
    assert client.get(resp.headers["location"]).json()["status"] == "queued"


@pytest.mark.parametrize(
    ("body", "ctype", "status"),
    [
        (b"{", "application/json", 400),
        (b'{"images": [[1]]}', "application/json", 422),
        (b'{"images_b64": ["aGVsbG8="]}', "application/json", 422),
        (b"hello", "text/plain", 415),
        (b"", "application/json", 400),
        (b"x" * 70_000, "application/json", 413),  # over max_body_bytes
    ],
)
def test_bad_bodies_are_4xx_and_enqueue_nothing(
    client: TestClient, queue: Queue, body: bytes, ctype: str, status: int
) -> None:
    resp = client.post("/v1/jobs", content=body, headers={"content-type": ctype})
    assert resp.status_code == status
    assert "error" in resp.json()
    assert queue.count == 0 and not queue.connection.keys("rq:job:*")
    assert not queue.connection.keys(input_key(queue.name, "*"))


def test_batch_limit_is_413(settings: JobQueueSettings, queue: Queue) -> None:
    with TestClient(create_app(settings.model_copy(update={"max_batch": 1}))) as c:
        body, ctype = encode_request(IMAGES, "base64")
        assert c.post("/v1/jobs", content=body, headers={"content-type": ctype}).status_code == 413
    assert queue.count == 0


def test_unknown_job_is_404(client: TestClient) -> None:
    assert client.get("/v1/jobs/0b7d1d6e-0000-4000-8000-000000000000").status_code == 404
    assert client.get("/v1/jobs/bad:id").status_code == 404
    assert client.get("/v1/jobs/x?wait_s=5").status_code == 404  # no waiting for unknown ids
    assert client.get("/v1/jobs/x?wait_s=-1").status_code == 422


def test_long_poll_is_bounded(settings: JobQueueSettings, client: TestClient) -> None:
    job_id = submit(client)  # no worker: stays queued
    start = time.monotonic()
    assert client.get(f"/v1/jobs/{job_id}").status_code == 202
    assert time.monotonic() - start < 1.0
    start = time.monotonic()
    resp = client.get(f"/v1/jobs/{job_id}?wait_s=1")
    assert resp.status_code == 202 and resp.json()["status"] == "queued"
    assert 1.0 <= time.monotonic() - start < 2.5
    with TestClient(create_app(settings.model_copy(update={"long_poll_max_s": 0.3}))) as c:
        start = time.monotonic()
        assert c.get(f"/v1/jobs/{job_id}?wait_s=60").status_code == 202  # capped
        assert time.monotonic() - start < 2.0


def test_long_poll_wakes_when_the_job_is_done(
    settings: JobQueueSettings, client: TestClient
) -> None:
    job_id = submit(client)
    answer: dict[str, Any] = {}

    def poll() -> None:
        start = time.monotonic()
        resp = client.get(f"/v1/jobs/{job_id}?wait_s=10")
        answer.update(resp.json(), code=resp.status_code, took=time.monotonic() - start)

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.3)
    make_worker(settings, ConstantModel()).work(burst=True, logging_level="WARNING")
    thread.join(10)
    assert answer["code"] == 200 and answer["status"] == "finished"
    assert answer["classes"] == [3, 3] and len(answer["probabilities"][0]) == 10
    assert answer["took"] < 3  # woken by the done channel, not by the 10 s bound


def test_max_works_rejects_at_once_with_retry_after(
    settings: JobQueueSettings, queue: Queue
) -> None:
    with TestClient(create_app(settings.model_copy(update={"max_works": 2}))) as c:
        submit(c)
        submit(c)
        body, ctype = encode_request(IMAGES, "base64")
        start = time.monotonic()
        busy = c.post("/v1/jobs", content=body, headers={"content-type": ctype})
        assert time.monotonic() - start < 1.0  # at once, not after waiting for room
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert "max_works" in busy.json()["error"]
        assert queue.count == 2
        assert c.get("/v1/info").json()["queued"] == 2
        make_worker(settings, ConstantModel()).work(burst=True, logging_level="WARNING")
        assert c.post("/v1/jobs", content=body, headers={"content-type": ctype}).status_code == 202


def test_max_works_is_never_overshot_by_concurrent_submissions(
    settings: JobQueueSettings, queue: Queue
) -> None:
    """Admission and enqueue are one step: 24 simultaneous submissions against room for 5."""
    from targets.jobqueue.web import JobService

    service = JobService(settings.model_copy(update={"max_works": 5}))
    body, ctype = encode_request(IMAGES, "base64")
    start = threading.Barrier(24)
    codes: list[int] = []

    def post() -> None:
        start.wait()
        codes.append(service.submit(body, ctype).status)

    threads = [threading.Thread(target=post) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(codes) == [202] * 5 + [503] * 19
    assert queue.count == 5
    assert len(queue.connection.keys(input_key(queue.name, "*"))) == 5  # refused: nothing kept
    assert len(queue.connection.keys("rq:job:*")) == 5


def test_a_full_redis_is_503_and_keeps_nothing(settings: JobQueueSettings, queue: Queue) -> None:
    conn = queue.connection
    used = int(conn.info("memory")["used_memory"])
    conn.config_set("maxmemory-policy", "noeviction")
    conn.config_set("maxmemory", str(used))  # already full
    try:
        with TestClient(create_app(settings)) as c:
            body, ctype = encode_request(IMAGES, "base64")
            resp = c.post("/v1/jobs", content=body, headers={"content-type": ctype})
    finally:
        conn.config_set("maxmemory", "0")
    assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
    assert "out of memory" in resp.json()["error"]
    assert queue.count == 0 and not conn.keys("rq:job:*") and not conn.keys("servecap:*:input:*")


def test_finished_and_failed_jobs_drop_their_input(
    settings: JobQueueSettings, client: TestClient, queue: Queue
) -> None:
    good = submit(client)
    bad = enqueue_raw(queue, b"not images", "uint8", 1)
    assert queue.connection.exists(input_key(queue.name, good), input_key(queue.name, bad.id)) == 2
    make_worker(settings, ConstantModel()).work(burst=True, logging_level="WARNING")
    assert client.get(f"/v1/jobs/{good}").json()["status"] == "finished"
    assert client.get(f"/v1/jobs/{bad.id}").json()["status"] == "failed"
    assert not queue.connection.keys(input_key(queue.name, "*"))


class Planted:
    """What an attacker would pickle: unpickling it creates a file (it must never happen)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_a_pickled_job_runs_nothing(
    settings: JobQueueSettings, client: TestClient, queue: Queue, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    pickling = Queue(settings.queue_name, connection=queue.connection)  # RQ's default: pickle
    planted = pickling.enqueue_call(TASK, args=(Planted(marker),))
    good = submit(client)
    worker = make_worker(settings, ConstantModel())
    worker.work(burst=True, logging_level="WARNING")
    assert not marker.exists()
    assert client.get(f"/v1/jobs/{good}").json()["status"] == "finished"  # the worker went on
    assert client.get(f"/v1/jobs/{planted.id}").status_code in (200, 404)
    assert planted.id not in queue.job_ids


def test_health_needs_a_live_worker(settings: JobQueueSettings, client: TestClient) -> None:
    assert client.get("/healthz").status_code == 503
    worker = make_worker(settings, ConstantModel())
    worker.register_birth()
    assert client.get("/healthz").json() == {"status": "ok", "workers": 1}
    assert client.get("/healthz?min_workers=2").status_code == 503
    assert client.get("/v1/info").json()["workers"] == 1
    # A killed worker closes its connections: it stops counting at once, though RQ still
    # lists it until its key expires.
    worker.connection.connection_pool.disconnect()
    assert client.get("/healthz").status_code == 503
    other = redis.Redis(port=settings.redis_port, password=PASSWORD)
    assert registered_worker_names(Queue(settings.queue_name, connection=other)) == {worker.name}


def test_redis_down_is_503_health_and_502_submit(settings: JobQueueSettings) -> None:
    down = settings.model_copy(update={"redis_port": free_port()})
    with TestClient(create_app(down)) as c:
        assert c.get("/healthz").status_code == 503
        body, ctype = encode_request(IMAGES, "base64")
        assert c.post("/v1/jobs", content=body, headers={"content-type": ctype}).status_code == 502
        assert c.get("/v1/jobs/abc").status_code == 502


def test_a_job_that_cannot_run_is_failed_without_retries(
    settings: JobQueueSettings, client: TestClient, queue: Queue
) -> None:
    bad = enqueue_raw(queue, b"not images", "uint8", 1, retry=Retry(max=2))
    good = submit(client)
    worker = make_worker(settings, ConstantModel())
    worker.work(burst=True, logging_level="WARNING")
    doc = client.get(f"/v1/jobs/{bad.id}").json()
    assert doc["status"] == "failed" and "expected 3072" in doc["error"]
    assert client.get(f"/v1/jobs/{good}").json()["status"] == "finished"
    counts = queue.connection.hmget(worker.key, ["failed_job_count", "successful_job_count"])
    assert counts == [b"1", b"1"]  # one attempt each: bad input is not retried


# --------------------------------------------------------------------------- workers


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


# --------------------------------------------------------------------------- full target


def target_processes(port: int) -> list[psutil.Process]:
    """This target's processes (by its Redis port: other job queues may run on the host)."""
    from targets.common.settings import env_name

    redis_port = str(port + 2)
    port_env = env_name(JobQueueSettings, "redis_port")
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmd = " ".join(proc.info["cmdline"] or [])
        if "targets.jobqueue" not in cmd:
            continue
        try:
            ours = proc.environ().get(port_env) == redis_port or f"--port {redis_port}" in cmd
        except psutil.Error:
            continue
        if ours:
            found.append(proc)
    return found


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def owners(conn: redis.Redis, registry_key: str) -> list[tuple[str, str]]:
    """(job id, owning worker) of each entry of the started-job registry."""
    found = []
    for raw in conn.zrange(registry_key, 0, -1):
        member = _text(raw)
        found.append(
            (member.partition(":")[0], _text(conn.hget(f"rq:execution:{member}", "worker_name")))
        )
    return found


def http(method: str, url: str, body: bytes | None = None, ctype: str = "") -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": ctype} if ctype else {})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=40) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read() or b"null")


def freeze_and_kill(conn: redis.Redis, registry_key: str, worker: str) -> list[str]:
    """SIGSTOP ``worker``, read the jobs it has claimed, SIGKILL it; returns those jobs."""
    pid = int(_text(conn.hget(f"rq:worker:{worker}", "pid")) or 0)
    assert pid > 0, worker
    os.kill(pid, signal.SIGSTOP)
    claimed = [job for job, owner in owners(conn, registry_key) if owner == worker]
    os.kill(pid, signal.SIGKILL)
    return claimed


@pytest.mark.integration
def test_full_target_survives_killed_workers(
    tiny_model: Path, cifar_dir: Path, tmp_path: Path
) -> None:
    """SIGKILL one worker while it holds jobs, then the other: the web keeps accepting and
    answering; a worker started afterwards re-runs the jobs they held, and every accepted job
    finishes."""
    from loadtests.image_files import load_jpeg_bytes

    port = free_port(gap=2)
    config = target_config(kind="jobqueue", port=port, model_path=str(tiny_model),
                          ready_timeout_s=90)  # fmt: skip
    files, _ = load_jpeg_bytes("test", str(cifar_dir), limit=32, seed=0)
    body, ctype = encode_request(np.zeros((32, 32, 32, 3), np.uint8), "jpeg", files)
    replacement: subprocess.Popen[bytes] | None = None
    with ProcessLauncher(stop_grace_s=5).launch("jq", config, tmp_path / "logs") as target:
        base = target.base_url
        assert http("GET", f"{base}/healthz")[1]["workers"] == 2  # both loaded before ready
        # Redis refuses anyone without the launch's password: no job can be planted.
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=config.model_port).rpush("rq:queue:servecap", "planted")
        password = psutil.Process(target.pids[-1]).environ()[PASSWORD_ENV]  # the harness's
        assert len(password) >= 32
        procs = target_processes(port)
        assert len(procs) >= 3  # two workers and the web (Redis runs as redis-server)
        for proc in procs:
            assert password not in " ".join(proc.cmdline())  # not visible to other users
        rq_conn = redis.Redis(port=config.model_port, client_name="test", password=password)
        queue = Queue("servecap", connection=rq_conn, serializer=SERIALIZER)
        registry_key = queue.started_job_registry.key
        accepted = [http("POST", f"{base}/v1/jobs", body, ctype)[1]["job_id"] for _ in range(60)]

        # Catch a worker while it holds claimed jobs: freeze, read what it holds, kill.
        in_flight: dict[str, list[str]] = {}
        deadline = time.monotonic() + 20
        while not in_flight and time.monotonic() < deadline:
            busy = next((owner for _, owner in owners(rq_conn, registry_key) if owner), "")
            if busy:
                pid = int(_text(rq_conn.hget(f"rq:worker:{busy}", "pid")) or 0)
                os.kill(pid, signal.SIGSTOP)
                held = [job for job, owner in owners(rq_conn, registry_key) if owner == busy]
                os.kill(pid, signal.SIGKILL if held else signal.SIGCONT)
                if held:
                    in_flight[busy] = held
            time.sleep(0.005)
        assert in_flight, "no worker was caught with jobs in flight"
        for other in registered_worker_names(queue) - set(in_flight):
            in_flight[other] = freeze_and_kill(rq_conn, registry_key, other)
        lost_with_workers = [job for jobs in in_flight.values() for job in jobs]
        print(f"killed {len(in_flight)} workers holding {lost_with_workers}")

        # The web is unaffected: accepts, answers; unhealthy only because no worker is alive.
        accepted += [http("POST", f"{base}/v1/jobs", body, ctype)[1]["job_id"] for _ in range(5)]
        code, doc = http("GET", f"{base}/v1/jobs/{lost_with_workers[0]}?wait_s=0.5")
        assert code == 202 and doc["status"] == "started"  # claimed by a dead worker, not lost
        health = http("GET", f"{base}/healthz")
        assert health[0] == 503 and health[1]["workers"] == 0
        assert http("GET", f"{base}/v1/info")[1]["queued"] > 0

        # A replacement worker, started as the launcher would, recovers and finishes all.
        spec = worker_spec("jq", config, 3)
        restarted = time.monotonic()
        with (tmp_path / "replacement.log").open("wb") as log:
            env = {**os.environ, PASSWORD_ENV: password, **spec.env}
            replacement = subprocess.Popen(spec.argv, env=env,
                                           stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            statuses: dict[str, str] = {}
            for job_id in accepted:
                while statuses.get(job_id) != "finished" and time.monotonic() < deadline:
                    code, doc = http("GET", f"{base}/v1/jobs/{job_id}?wait_s=5")
                    statuses[job_id] = doc.get("status", str(code))
                    assert statuses[job_id] != "failed", doc
            assert set(statuses.values()) == {"finished"}, statuses
            print(f"all {len(accepted)} jobs finished {time.monotonic() - restarted:.1f} s "
                  "after the replacement worker was started")  # fmt: skip
            # The dead workers' jobs ran again: requeued once (Retry) by the new worker.
            retries = {
                _text(rq_conn.hget(f"rq:job:{j}", "retries_left")) for j in lost_with_workers
            }
            assert retries == {"1"}
            assert http("GET", f"{base}/v1/info")[1]["workers"] == 1
            assert len(registered_worker_names(queue)) == 1  # the dead were unregistered
        finally:
            stop_process_group(replacement, 5)
    assert not target_processes(port)


def test_a_job_stranded_by_a_worker_that_died_before_claiming_it_is_queued_again(
    settings: JobQueueSettings, queue: Queue
) -> None:
    """A worker killed between dequeuing (the job moved to the intermediate list) and
    claiming it: the job goes back to the head of the queue, not to RQ's one-minute failure."""
    from targets.jobqueue.worker import requeue_stranded

    job = enqueue_raw(queue, IMAGES.tobytes(), "uint8", len(IMAGES))
    conn = queue.connection
    inter = queue.intermediate_queue
    assert conn.lmove(queue.key, inter.key, "LEFT", "RIGHT") is not None  # dequeued, then died
    assert queue.count == 0
    assert requeue_stranded(queue, after_s=3600) == []  # seen now: not yet stranded
    assert requeue_stranded(queue, after_s=0) == [job.id]
    assert queue.job_ids == [job.id] and inter.get_job_ids() == []
    assert requeue_stranded(queue, after_s=0) == []  # nothing left to move, nothing moved twice
