"""How the job-queue target starts: Redis, the workers, then the web.

* ``<name>-redis``: ``redis-server`` on ``127.0.0.1:<model_port>``
  (:class:`targets.config.UpstreamConfig`) with the launch's password, a memory cap and an
  append-only file (``redis_persistence``; :mod:`targets.jobqueue.redis_server`): a restarted
  Redis comes back with every accepted job; ready when the port accepts connections.
* ``<name>-worker-<i>``, ``queue_workers`` of them: no readiness of their own (a worker's
  model load must never block the launch forever); the web's readiness covers them.
* ``<name>``: uvicorn with ``workers`` processes; ready when
  ``/healthz?min_workers=<queue_workers>`` answers 200, i.e. when every worker has loaded the
  model, warmed it up and registered with Redis.

In containers each process is a service of its own (``redis``, ``jobqueue-worker`` scaled to
``queue_workers``, ``jobqueue-web``), running the same commands.
"""

from __future__ import annotations

import secrets
import shutil
from typing import Literal

from pydantic import Field

from targets.common.launch import PYTHON, server_env
from targets.common.settings import settings_env
from targets.common.uvicorn import uvicorn_spec
from targets.config import PythonServerConfig, UpstreamConfig
from targets.jobqueue.common import JobQueueSettings
from targets.jobqueue.redis_server import (
    DEFAULT_PERSISTENCE,
    PASSWORD_ENV,
    REDIS_SERVER,
    Persistence,
)
from targets.launch_types import HOST, LaunchError, Placement, ProcessSpec
from targets.protocols.servecap import HEALTH_PATH

WEB_APP = "targets.jobqueue.web:create_app"
CONTAINER_REDIS_DATA = "/home/app/redis-data"
"""Redis's data folder in its container: inside the service's volume at /home/app (a volume
there takes the image folder's owner, the app user), so a restarted container keeps it."""
LOOPBACK = "127.0.0.1"


class JobQueueConfig(PythonServerConfig, UpstreamConfig):
    """The web on ``port``, Redis on ``model_port``."""

    kind: Literal["jobqueue"] = "jobqueue"
    queue_workers: int = Field(default=2, ge=1, le=64, description="worker processes")
    job_batch_max: int = Field(
        default=8, ge=1, le=256, description="queued jobs a worker runs as one batch"
    )
    redis_maxmemory_mb: int = Field(
        default=256, ge=16, le=65536,
        description="Redis memory cap; when full, submissions are answered 503 (noeviction)",
    )  # fmt: skip
    redis_persistence: Persistence = Field(
        default=DEFAULT_PERSISTENCE,
        description="Redis append-only file, fsynced every second or at every write (a Redis "
        "restart loses no accepted job), or off (a restart loses the queue)",
    )  # fmt: skip
    redis_host: str = Field(
        default=LOOPBACK, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="where the web and the workers reach Redis: 127.0.0.1, Redis runs beside "
        "them (`servecap plan --kubernetes` sets its Service's name)",
    )  # fmt: skip


def launch_env() -> dict[str, str]:
    """A fresh Redis password, shared by every process of one launch."""
    return {PASSWORD_ENV: secrets.token_urlsafe(32)}


def queue_env(config: JobQueueConfig) -> dict[str, str]:
    """What the web and the workers read (:class:`JobQueueSettings`)."""
    own = settings_env(JobQueueSettings, {
        "redis_host": config.redis_host,
        "redis_port": config.model_port,
        "job_batch_max": config.job_batch_max,
    })  # fmt: skip
    return server_env(config, own)


def worker_spec(name: str, config: JobQueueConfig, index: int) -> ProcessSpec:
    """One worker process (also how to start a replacement for a worker that died)."""
    argv = (PYTHON, "-m", "targets.jobqueue.worker")
    return ProcessSpec(
        name=f"{name}-worker-{index}", role="jobqueue-worker", argv=argv, env=queue_env(config)
    )


def redis_spec(name: str, config: JobQueueConfig, placement: Placement = HOST) -> ProcessSpec:
    redis_bin = shutil.which(REDIS_SERVER)
    if redis_bin is None:
        raise LaunchError(
            f"target '{name}' ({config.kind}) needs {REDIS_SERVER} on PATH; install Redis "
            "(`make setup` installs it; Debian: apt-get install redis-server)"
        )
    port = config.model_port
    argv: tuple[str, ...] = (PYTHON, "-m", "targets.jobqueue.redis_server", "--port", str(port),
                             "--maxmemory-mb", str(config.redis_maxmemory_mb),
                             "--persistence", config.redis_persistence)  # fmt: skip
    if config.redis_host != LOOPBACK:  # deployed apart: reached through its Service
        argv += ("--bind", "0.0.0.0")
    if placement.container:
        argv += ("--data-dir", CONTAINER_REDIS_DATA)
    return ProcessSpec(name=f"{name}-redis", role="redis", argv=argv, ready_port=port)


def ready_path(config: JobQueueConfig) -> str:
    """Ready when every queue worker has loaded the model and registered."""
    return f"{HEALTH_PATH}?min_workers={config.queue_workers}"


def process_plan(
    name: str, config: JobQueueConfig, placement: Placement = HOST
) -> list[ProcessSpec]:
    workers = [worker_spec(name, config, i) for i in range(1, config.queue_workers + 1)]
    web = uvicorn_spec(name, "jobqueue-web", WEB_APP, queue_env(config), config.host, config.port,
                       config.workers, placement,
                       health_path=ready_path(config))  # fmt: skip
    return [redis_spec(name, config, placement), *workers, web]
