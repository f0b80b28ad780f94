"""How the job-queue target starts as local processes: Redis, the workers, then the web.

* ``<name>-redis``: ``redis-server`` on ``127.0.0.1:<model_port>`` (port + 2 unless
  ``upstream_port``), no persistence; ready when the port accepts connections.
* ``<name>-worker-<i>``, ``queue_workers`` of them: no readiness of their own (a worker's
  model load must never block the launch forever); the web's readiness covers them.
* ``<name>``: uvicorn with ``workers`` processes; ready when
  ``/healthz?min_workers=<queue_workers>`` answers 200, i.e. when every worker has loaded the
  model, warmed it up and registered with Redis.
"""

from __future__ import annotations

import shutil

from targets.config import TargetConfig
from targets.launchers.base import LaunchError, ProcessSpec, port_is_free
from targets.registry import PYTHON, server_env

REDIS_SERVER = "redis-server"


def queue_env(config: TargetConfig) -> dict[str, str]:
    """What the web and the workers read (targets.jobqueue.common.JobQueueSettings)."""
    env = server_env(config)
    own = {
        "SERVECAP_REDIS_HOST": "127.0.0.1",
        "SERVECAP_REDIS_PORT": str(config.model_port),
        "SERVECAP_JOB_BATCH_MAX": str(config.job_batch_max),
    }
    return {**env, **own, **config.env}


def worker_spec(name: str, config: TargetConfig, index: int) -> ProcessSpec:
    """One worker process (also how to start a replacement for a worker that died)."""
    argv = (PYTHON, "-m", "targets.jobqueue.worker")
    return ProcessSpec(name=f"{name}-worker-{index}", argv=argv, env=queue_env(config))


def process_plan(name: str, config: TargetConfig) -> list[ProcessSpec]:
    redis_bin = shutil.which(REDIS_SERVER)
    if redis_bin is None:
        raise LaunchError(
            f"target '{name}' ({config.kind}) needs {REDIS_SERVER} on PATH; install Redis "
            "(`make setup` installs it; Debian: apt-get install redis-server)"
        )
    port = config.model_port
    if not port_is_free("127.0.0.1", port):
        raise LaunchError(
            f"target '{name}': Redis port {port} on 127.0.0.1 is already in use; "
            f"set targets.{name}.upstream_port"
        )
    redis = ProcessSpec(
        name=f"{name}-redis",
        argv=(
            redis_bin, "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--loglevel", "warning",
        ),
        ready_port=port,
    )  # fmt: skip
    env = queue_env(config)
    workers = [worker_spec(name, config, i) for i in range(1, config.queue_workers + 1)]
    web = ProcessSpec(
        name=name,
        argv=(
            PYTHON, "-m", "uvicorn", "targets.jobqueue.web:create_app", "--factory",
            "--host", config.host, "--port", str(config.port),
            "--workers", str(config.workers),
            "--no-access-log", "--log-level", "warning",
        ),
        env=env,
        ready_url=f"{config.base_url}/healthz?min_workers={config.queue_workers}",
    )  # fmt: skip
    return [redis, *workers, web]
