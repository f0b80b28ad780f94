"""What the Docker launcher gives Compose for one target: variables, the env file, options.

docker-compose.yml refers to ``${VARIABLE}``s; :func:`compose_env` sets every one of them
from the target's config: the generic ones here (run labels, images, limits, the model mount)
and the kind's own (:meth:`targets.kind.Kind.compose_env`). The containers' environment is an
env file (:func:`container_env`): the target's config for ``entrypoint serve`` (which computes
each container's command from the kind, as the process launcher does) plus the target's own
``env``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from targets.config import ModelConfig, TargetConfig, check_env
from targets.docker.entrypoint import (
    CONFIG_ENV,
    CONTAINER_MODEL_BASE,
    NAME_ENV,
    encode_config,
)
from targets.docker.images import IMAGE_REPO
from targets.launch_types import LaunchError, resolve_model_path
from targets.registry import REPO_ROOT, get_kind

NO_MODEL_DIR = REPO_ROOT / "targets" / "docker" / "no-model"
TMPFS_SIZE = "2g"
MEASURED_HEALTH_INTERVAL = "24h"
"""Docker's health interval for launched targets: never within a run. Docker runs each check
inside the container, in its cgroup: a Python probe every 5 s took ~100 ms from a third of a
core and held every request then in the server (p99 143 ms at 25 requests/s, 505 ms at 36).
The launcher runs the check itself until ready, and watches the containers after that."""


@dataclass(frozen=True)
class ContainerOptions:
    """Container-only knobs of a target (from its TargetConfig fields, :func:`options_for`)."""

    replicas: int = 1
    cpus: float | None = None
    """CPU quota per model-serving container (each replica), e.g. 2.0; None = no limit."""
    cpu_period_ms: float | None = None
    """The CFS period the quota is enforced over; None = the engine's (100 ms)."""
    memory: str | None = None
    """Memory limit per model-serving container, Docker syntax (``2g``, ``512m``)."""
    cpuset: str | None = None
    """CPUs every container of the target may run on (``0-1``); None = any."""
    gpu: bool = False
    image_tag: str = "latest"
    model_in_image: bool = False
    """Run ``<image>:<tag>-model`` (built by images.build_model_image) instead of mounting."""
    image_repo: str = "servecap"


def options_for(config: TargetConfig) -> ContainerOptions:
    """The container options of a target, from its fields in scenarios.yaml
    (``memory_limit_mb`` is the memory limit)."""
    limit = config.memory_limit_mb
    return ContainerOptions(
        replicas=config.replicas,
        cpus=config.cpus,
        cpu_period_ms=config.cpu_period_ms,
        memory=f"{limit}m" if limit is not None else None,
        cpuset=config.cpuset,
        gpu=config.gpu,
        image_tag=config.image_tag or "latest",
        model_in_image=isinstance(config, ModelConfig) and config.model_in_image,
        image_repo=IMAGE_REPO,
    )


def remote_engine() -> bool:
    host = os.environ.get("DOCKER_HOST", "")
    return bool(host) and not host.startswith("unix://")


def project_name(name: str, run_id: str) -> str:
    safe = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "target"
    return f"servecap-{safe}-{run_id}"


@dataclass(frozen=True)
class ModelMount:
    host_dir: Path
    mount: str


def model_mount(config: TargetConfig) -> ModelMount:
    """Which host folder is mounted where. Model base -> /models/cifar10_cnn; one version dir
    -> /models/cifar10_cnn/<version> (so TF Serving also sees a base); nothing to mount (no
    model, model in the image, or a model_url not fetched yet: pre-flight) -> the empty no-model
    folder. The launcher fetches a model_url archive first and mounts the unpacked folder."""
    if not isinstance(config, ModelConfig) or config.model_in_image or config.model_url:
        return ModelMount(NO_MODEL_DIR, "/models/none")
    path = resolve_model_path(config)
    if (path / "saved_model.pb").exists():
        version = path.name if path.name.isdigit() else "1"
        return ModelMount(path, f"{CONTAINER_MODEL_BASE}/{version}")
    return ModelMount(path, CONTAINER_MODEL_BASE)


def inside(config: TargetConfig) -> TargetConfig:
    """The config as the containers see it: the model at its container path."""
    if isinstance(config, ModelConfig):
        return config.model_copy(update={"model_path": CONTAINER_MODEL_BASE})
    return config


def container_env(name: str, config: TargetConfig) -> dict[str, str]:
    """The containers' env file: the target's config for ``entrypoint serve``, its ``env``."""
    doc = inside(config).model_dump(mode="json")
    return {NAME_ENV: name, CONFIG_ENV: encode_config(doc), **config.env}


def compose_env(
    name: str, config: TargetConfig, options: ContainerOptions, run_id: str, env_file: Path
) -> dict[str, str]:
    """Every variable docker-compose.yml refers to, from the target's config."""
    mount = model_mount(config)
    model_tag = f"{options.image_tag}-model" if options.model_in_image else options.image_tag
    return {
        "SERVECAP_TARGET": name,
        "SERVECAP_RUN_ID": run_id,
        "SERVECAP_KIND": config.kind,
        "SERVECAP_ENV_FILE": str(env_file.resolve()),
        "SERVECAP_IMAGE_REPO": options.image_repo,
        "SERVECAP_IMAGE_TAG": options.image_tag,
        "SERVECAP_MODEL_IMAGE_TAG": model_tag,
        "SERVECAP_MODEL_DIR": str(mount.host_dir),
        "SERVECAP_MODEL_MOUNT": mount.mount,
        **cpu_limit_env(options),
        "SERVECAP_MEM_LIMIT": options.memory or "0",
        "SERVECAP_CPUSET": options.cpuset or "",
        "SERVECAP_TMPFS_SIZE": TMPFS_SIZE,
        "SERVECAP_START_PERIOD": f"{max(1, int(config.ready_timeout_s))}s",
        "SERVECAP_HEALTH_INTERVAL": MEASURED_HEALTH_INTERVAL,
        **get_kind(config.kind).compose_env(config),
    }


def cfs_quota_us(cpus: float, period_us: int) -> int:
    """``cpus`` of CPU time per period of ``period_us``, as a CFS quota in microseconds (at
    least the kernel's least quota, 1 ms)."""
    return max(1000, round(cpus * period_us))


def cpu_limit_env(options: ContainerOptions) -> dict[str, str]:
    """The quota as ``cpus`` (Docker's 100 ms period), or with its own period as a CFS
    period and quota (Docker refuses both forms at once; Compose reads these as durations)."""
    if options.cpus and options.cpu_period_ms:
        period_us = round(options.cpu_period_ms * 1000)
        return {"SERVECAP_CPUS": "0", "SERVECAP_CPU_PERIOD": f"{period_us}us",
                "SERVECAP_CPU_QUOTA": f"{cfs_quota_us(options.cpus, period_us)}us"}  # fmt: skip
    cpus = f"{options.cpus:g}" if options.cpus else "0"
    return {"SERVECAP_CPUS": cpus, "SERVECAP_CPU_PERIOD": "0us", "SERVECAP_CPU_QUOTA": "0us"}


def write_env_file(path: Path, env: dict[str, str]) -> Path:
    """KEY=VALUE lines (Compose env_file syntax: no quoting, one variable a line)."""
    try:
        check_env(env)  # validated with the target already; written only if each is one line
    except ValueError as err:
        raise LaunchError(str(err)) from None
    lines = [f"{key}={value}" for key, value in sorted(env.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
