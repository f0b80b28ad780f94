"""Docker engine access for the launcher: client, labels, images, health, logs, clean-up.

Everything here talks to the engine through the Docker SDK (``docker`` package), which honours
``DOCKER_HOST`` & co.; nothing starts containers (Compose does, :mod:`.launcher`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from targets.launch_types import LaunchError

MANAGED_LABEL = "io.servecap.managed"
TARGET_LABEL = "io.servecap.target"
RUN_LABEL = "io.servecap.run"
ROLE_LABEL = "io.servecap.role"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
APP_UID = 10001
"""The user every servecap container runs as."""


def docker_client(timeout_s: float = 60.0) -> Any:
    """A Docker SDK client (honours DOCKER_HOST & co.), or LaunchError naming the engine."""
    try:
        import docker
    except ImportError:
        raise LaunchError("the Docker launcher needs the `docker` Python package") from None
    try:
        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
    except Exception as err:  # docker.errors.DockerException, requests errors...
        where = os.environ.get("DOCKER_HOST") or "the local socket"
        raise LaunchError(
            f"Docker engine not reachable at {where} ({err}); is dockerd running?"
        ) from None
    return client


def managed_containers(client: Any, label: str = MANAGED_LABEL) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": label}))


def image_present(client: Any, ref: str) -> bool:
    import docker.errors

    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        return False
    return True


def ensure_images(client: Any, name: str, images: Sequence[str], pull: bool = True) -> None:
    """Every image present locally: servecap images must have been built; an official image
    (TF Serving) gets one pull attempt, or with ``pull=False`` is left for the launch to pull
    (so a run's pre-flight does not refuse the whole run for one unpullable image)."""
    for ref in dict.fromkeys(images):
        if image_present(client, ref):
            continue
        if ref.startswith("servecap/"):
            raise LaunchError(
                f"target '{name}': image {ref} is not built; run `servecap images build` "
                "(`--offline` where no registry is reachable)"
            )
        if not pull:
            continue
        repository, _, tag = ref.rpartition(":")
        try:
            client.images.pull(repository, tag=tag)
        except Exception as err:
            why = str(getattr(err, "explanation", None) or err).strip()
            raise LaunchError(
                f"target '{name}': image {ref} is not in the local engine and could not be "
                f"pulled (docker pull: {why[:160]}); build it (`docker build -t {ref} ...`) or "
                "pull it first; skipping this target"
            ) from None


def unreadable_by_others(path: Path) -> str | None:
    """None when uid 10001 can read the model folder, else the first path it cannot."""
    current = Path("/")
    for part in path.parts[1:]:
        current = current / part
        if not os.stat(current).st_mode & 0o001:
            return str(current)
    for root, dirs, files in os.walk(path):
        for entry in dirs:
            if os.stat(Path(root) / entry).st_mode & 0o005 != 0o005:
                return str(Path(root) / entry)
        for entry in files:
            if not os.stat(Path(root) / entry).st_mode & 0o004:
                return str(Path(root) / entry)
    return None


def healthy(container: Any) -> bool:
    """The container's own healthcheck passes: Docker says so, or running it now does."""
    state = container.attrs.get("State", {})
    if state.get("Health", {}).get("Status") == "healthy":
        return True
    test = (container.attrs.get("Config", {}).get("Healthcheck") or {}).get("Test") or []
    if not test or test[0] == "NONE":
        return True
    cmd = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:])
    try:
        # With no stream attached (stdout=False, stderr=False) the SDK starts the command and
        # returns at once with exit_code None: the check never passed, and checks piled up.
        result = container.exec_run(cmd, stdout=True, stderr=True)
    except Exception:
        return False
    return bool(result.exit_code == 0)


def containers_health(client: Any, container_ids: Sequence[str]) -> str | None:
    """RunningTarget.health for containers: None while all run, else which one stopped and
    why (exit code, OOM kill)."""
    for cid in container_ids:
        try:
            container = client.containers.get(cid)
        except Exception as err:
            return f"container {cid[:12]} is gone ({err})"
        if container.status != "running":
            state = container.attrs.get("State", {})
            return (
                f"container {container.name} {container.status}, exit code "
                f"{state.get('ExitCode')}{oom_note(container)}; its last lines:\n"
                f"{log_tail(container)}"
            )
    return None


def oom_note(container: Any, limit_mb: int | None = None) -> str:
    """' (OOM-killed: memory limit ...)' when the kernel killed it for memory, else ''."""
    if not container.attrs.get("State", {}).get("OOMKilled"):
        return ""
    limit = f" of {limit_mb} MB" if limit_mb else ""
    return f" (OOM-killed: memory limit{limit}; raise memory_limit_mb)"


def log_tail(container: Any, lines: int = 20) -> str:
    try:
        text = container.logs(tail=lines).decode("utf-8", errors="replace").rstrip()
    except Exception as err:
        return f"(no logs: {err})"
    return text or "(empty log)"


def save_logs(container: Any, path: Path) -> None:
    data = container.logs(stdout=True, stderr=True, timestamps=False)
    path.write_bytes(data)


def remove_labelled(client: Any, label: str) -> list[str]:
    """Force-remove every container (with its anonymous volumes) and network with ``label``."""
    removed: list[str] = []
    for c in client.containers.list(all=True, filters={"label": label}):
        with contextlib.suppress(Exception):
            c.remove(force=True, v=True)
            removed.append(c.name)
    for n in client.networks.list(filters={"label": label}):
        with contextlib.suppress(Exception):
            n.remove()
            removed.append(f"network {n.name}")
    return removed


def clean(client: Any | None = None) -> list[str]:
    """``servecap clean``: remove every container and network labelled io.servecap.managed."""
    return remove_labelled(client or docker_client(), MANAGED_LABEL)
