"""What the job-queue web and workers share: settings, Redis names, the job payload format.

Imports neither TensorFlow nor the model: the web process uses this module too.

**Trust.** Redis asks for a password generated for each launch (``SERVECAP_REDIS_PASSWORD``,
given by the launcher to every process of the target, never on a command line or in the
results). Jobs are stored with RQ's JSON serializer (:data:`SERIALIZER`), never pickle, so
whatever reaches the queue is data: a pickled job fails to decode and runs nothing. A job's
images are not in its arguments but in a key of their own (:func:`input_key`), written in the
same transaction as the job and deleted when the job finishes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import redis
from pydantic import Field, SecretStr
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue
from rq.serializers import JSONSerializer
from rq.worker import BaseWorker

from targets.common.payload import IMAGE_SHAPE, Shape
from targets.common.settings import ServerSettings

TASK = "targets.jobqueue.tasks.classify"
"""The job function, by name: the web enqueues it without importing it (or TensorFlow)."""
WEB_CLIENT_NAME = "servecap-web"
WORKER_NAME_PREFIX = "servecap-worker"
SERIALIZER = JSONSerializer
"""How jobs and results are stored: JSON (data only; RQ's default, pickle, runs code on load)."""
_DTYPES = {"uint8": np.uint8, "float32": np.float32}


class JobQueueSettings(ServerSettings):
    """ServerSettings plus the queue's: read from ``SERVECAP_*`` variables like the rest.

    ``max_works`` here is the most jobs waiting in the queue for the whole target (0 = no limit).
    """

    redis_host: str = Field(default="127.0.0.1", description="Redis address (loopback)")
    redis_port: int = Field(default=6379, ge=1, le=65535, description="Redis port")
    redis_password: SecretStr | None = Field(
        default=None, description="Redis AUTH password (the launcher makes one per launch)"
    )
    queue_name: str = Field(default="servecap", pattern=r"^[A-Za-z0-9_.-]+$")
    job_batch_max: int = Field(default=8, ge=1, le=256, description="jobs per model call")
    job_timeout_s: int = Field(default=30, ge=1, description="model call for a job or batch")
    queued_ttl_s: int = Field(default=600, ge=1, description="a job waiting longer is dropped")
    result_ttl_s: int = Field(default=600, ge=1, description="results kept after the job ends")
    failure_ttl_s: int = Field(default=600, ge=1, description="failures kept after the job ends")
    job_retries: int = Field(
        default=2, ge=0, description="re-runs after a worker died or the job raised"
    )
    long_poll_max_s: float = Field(default=30.0, ge=0, description="cap on GET ?wait_s")


def connect(
    settings: JobQueueSettings,
    client_name: str,
    timeout_s: float | None = 5.0,
    retries: int | None = None,
) -> redis.Redis:
    """A Redis client whose every connection carries ``client_name`` (liveness, see below).

    ``retries``: how often a failed command is retried at once (the web: 1, to fail fast when
    Redis is gone); None keeps redis-py's default (10, with backoff up to 1 s).
    """
    options: dict[str, Any] = {}
    if retries is not None:
        options["retry"] = Retry(NoBackoff(), retries)
    return redis.Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        password=password(settings),
        client_name=client_name,
        socket_connect_timeout=2.0,
        socket_timeout=timeout_s,
        **options,
    )


def password(settings: JobQueueSettings) -> str | None:
    secret = settings.redis_password
    return (secret.get_secret_value() or None) if secret is not None else None


def job_queue(settings: JobQueueSettings, connection: redis.Redis) -> Queue:
    """The target's RQ queue, with the JSON serializer."""
    return Queue(settings.queue_name, connection=connection, serializer=SERIALIZER)


def input_key(queue_name: str, job_id: str) -> str:
    """Where a job's packed images are kept, from its submission until it finishes."""
    return f"servecap:jobqueue:{queue_name}:input:{job_id}"


def done_channel(queue_name: str) -> str:
    """Pub/sub channel on which workers announce each job they have run (message: job id)."""
    return f"servecap:jobqueue:{queue_name}:done"


def recovery_lock_key(queue_name: str) -> str:
    return f"servecap:jobqueue:{queue_name}:recovery-lock"


# --------------------------------------------------------------------------- liveness


def live_client_names(connection: redis.Redis) -> set[str]:
    """Names of the clients connected to Redis right now.

    Every Redis connection a worker opens carries the worker's name, and a worker always holds
    at least one (its pub/sub subscription). The kernel closes a dead process's sockets, so a
    worker is alive exactly while some connection with its name is listed.
    """
    return {str(c["name"]) for c in connection.client_list() if c.get("name")}


def registered_worker_names(queue: Queue) -> set[str]:
    """Workers RQ has registered for ``queue`` (including dead ones not yet cleaned)."""
    prefix = BaseWorker.redis_worker_namespace_prefix
    return {key[len(prefix) :] for key in BaseWorker.all_keys(queue=queue)}


def live_worker_names(queue: Queue) -> set[str]:
    """Registered workers of ``queue`` that still have a connection open to Redis."""
    registered = registered_worker_names(queue)  # first: see recover_abandoned
    return registered & live_client_names(queue.connection)


# --------------------------------------------------------------------------- job payload


class JobInputError(ValueError):
    """A job's stored images cannot be decoded (never retried: it would fail again)."""


def pack_images(images: np.ndarray) -> tuple[bytes, str, int]:
    """float32 ``[n,h,w,c]`` pixel values -> (raw bytes, dtype name, n) for the job.

    uint8 (3 KB an image) when every value is an integer in 0..255, as with the base64 and
    JPEG encodings; float32 (12 KB) otherwise, so no value is ever altered.
    """
    array = np.ascontiguousarray(images)
    as_uint8 = array.astype(np.uint8)
    if np.array_equal(as_uint8, array):
        return as_uint8.tobytes(), "uint8", len(array)
    return array.astype(np.float32).tobytes(), "float32", len(array)


def unpack_images(
    data: object, dtype: object, count: object, shape: Shape = IMAGE_SHAPE
) -> np.ndarray:
    """The inverse of :func:`pack_images`: float32 ``[n, *shape]`` (the model's images);
    JobInputError if malformed.

    ``data`` is the job's input key's value (None once it expired or was deleted)."""
    if data is None:
        raise JobInputError("the job's images are gone (expired or already used)")
    if not isinstance(data, bytes) or dtype not in _DTYPES or not isinstance(count, int):
        raise JobInputError("job arguments must be ('uint8' | 'float32', int) with bytes input")
    kind = _DTYPES[str(dtype)]
    expected = count * shape[0] * shape[1] * shape[2] * np.dtype(kind).itemsize
    if count < 1 or len(data) != expected:
        raise JobInputError(f"job holds {len(data)} bytes, expected {expected} for {count} images")
    return np.frombuffer(data, dtype=kind).reshape(count, *shape).astype(np.float32)


def result_dict(probabilities: np.ndarray, model_version: object = None) -> dict[str, Any]:
    """A job's result, the same fields as the predict API's answer, and the version of the
    model that computed it (the web's poll answer names it as the predict API does)."""
    probs = np.asarray(probabilities, dtype=np.float32)
    out: dict[str, Any] = {"classes": probs.argmax(axis=1).tolist(),
                           "probabilities": probs.tolist()}  # fmt: skip
    if model_version is not None:
        out["model_version"] = str(model_version)
    return out
