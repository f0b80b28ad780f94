"""Docker launcher: a target's containers from docker-compose.yml, nothing left behind.

Same interface as :class:`targets.launchers.process.ProcessLauncher`. For one launch::

    pre-flight   engine reachable, compose CLI, images present (TF Serving: one pull attempt),
                 ports free, model folder present and readable by the container user
    up           <compose> -p servecap-<target>-<run> [-f docker-compose.gpu.yml]
                   --profile <kind> up -d --no-build [--scale <service>=N]
                 with every ${VARIABLE} of the compose file derived from the TargetConfig
                 (:func:`compose_env`) and the SERVECAP_* server settings in an env file
    ready        every container running; each one's own healthcheck command passes (run by
                 the launcher with ``docker exec`` every 0.25 s, so time-to-ready is not rounded
                 up to Docker's 5 s health interval); the readiness URL answers from the host
    yield        RunningTarget(containers=[ids], time_to_ready_s)
    tear down    (always: normal exit, exception, KeyboardInterrupt) container logs saved to
                 logs_dir, `down -v --remove-orphans`, then any container or network still
                 labelled with this run id is removed through the Docker API

Containers are found by their Compose labels through the Docker SDK (``docker`` package).
Compose subprocesses run in their own session, so a Ctrl-C reaches the harness only and the
teardown's ``down`` is never interrupted by it. If the harness itself is killed (SIGKILL),
containers stay: ``servecap clean`` (:func:`clean`) removes everything labelled
``io.servecap.managed=true``, and the next launch on the same port says so.

Scenario overrides (:class:`ContainerOptions`): replicas, cpus, memory, cpuset, gpu, image
tag, model-in-image: the target's fields of those names in scenarios.yaml (memory is
``memory_limit_mb``). Replicas share the target's port on the host network
through SO_REUSEPORT (see docker-compose.yml): the kernel spreads connections over them.

Remote engines (DOCKER_HOST=ssh://... or tcp://...) work for everything the engine does: the
compose CLI and the SDK both honour DOCKER_HOST. Two caveats: the model folder is a bind mount,
so the path must exist *on the engine host* (or use model-in-image / model_url); the targets
listen on the engine host's 127.0.0.1, which the harness reaches only through a tunnel
(e.g. ``ssh -L``). Host-side pre-flight checks (ports, model permissions) are skipped then.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from targets.config import TargetConfig
from targets.docker import compose
from targets.docker.images import TFSERVING_IMAGE, TFSERVING_TAG
from targets.launchers.base import LaunchError, RunningTarget, port_is_free, probe_tcp
from targets.registry import REPO_ROOT, resolve_model_path, server_env

MANAGED_LABEL = "io.servecap.managed"
TARGET_LABEL = "io.servecap.target"
RUN_LABEL = "io.servecap.run"
ROLE_LABEL = "io.servecap.role"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"

CONTAINER_MODEL_BASE = "/models/cifar10_cnn"
NO_MODEL_DIR = REPO_ROOT / "targets" / "docker" / "no-model"
APP_UID = 10001
STOP_TIMEOUT_S = 10
POLL_S = 0.25
COMPOSE_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class KindLayout:
    """A kind's services in docker-compose.yml and which one holds the model."""

    services: tuple[str, ...]
    primary: str
    """The model-serving service: replicas, cpus and memory limits apply to it."""
    scalable: bool = True
    """Whether replicas > 1 can share its port (TF Serving cannot set SO_REUSEPORT)."""


LAYOUTS: dict[str, KindLayout] = {
    "fastapi": KindLayout(("fastapi",), "fastapi"),
    "flask": KindLayout(("flask",), "flask"),
    "django-embedded": KindLayout(("django-embedded", "nginx"), "django-embedded"),
    "django-to-flask": KindLayout(("flask", "django-forward", "nginx"), "flask"),
    "django-to-fastapi": KindLayout(("fastapi", "django-forward", "nginx"), "fastapi"),
    "django-to-tfserving": KindLayout(
        ("tfserving", "django-forward", "nginx"), "tfserving", scalable=False
    ),
    "tfserving": KindLayout(("tfserving",), "tfserving", scalable=False),
    "jobqueue": KindLayout(
        ("redis", "jobqueue-worker", "jobqueue-web"), "jobqueue-worker", scalable=False
    ),
}


@dataclass(frozen=True)
class ContainerOptions:
    """Container-only knobs of a target (from its TargetConfig fields, :func:`options_for`)."""

    replicas: int = 1
    cpus: float | None = None
    """CPU quota per model-serving container (each replica), e.g. 2.0; None = no limit."""
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
        memory=f"{limit}m" if limit is not None else None,
        cpuset=config.cpuset,
        gpu=config.gpu,
        image_tag=config.image_tag or "latest",
        model_in_image=config.model_in_image,
    )


def layout_for(kind: str) -> KindLayout:
    try:
        return LAYOUTS[kind]
    except KeyError:
        raise LaunchError(f"target kind '{kind}' has no services in docker-compose.yml") from None


def profile_layout(config: TargetConfig, services: Sequence[str]) -> KindLayout:
    """The kind's layout; with ``compose_service`` (a profile of your own in
    docker-compose.yml), that profile's services, its first one holding the model."""
    if not config.compose_service or config.compose_service == config.kind:
        return layout_for(config.kind)
    if not services:
        raise LaunchError(
            f"docker-compose.yml has no service in profile '{config.compose_service}'"
        )
    return KindLayout(tuple(services), services[0], scalable=True)


def remote_engine() -> bool:
    host = os.environ.get("DOCKER_HOST", "")
    return bool(host) and not host.startswith("unix://")


def project_name(name: str, run_id: str) -> str:
    safe = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "target"
    return f"servecap-{safe}-{run_id}"


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ModelMount:
    host_dir: Path
    mount: str


def model_mount(config: TargetConfig, options: ContainerOptions) -> ModelMount:
    """Which host folder is mounted where. Model base -> /models/cifar10_cnn; one version dir
    -> /models/cifar10_cnn/<version> (so TF Serving also sees a base); nothing to mount
    (model in the image, or fetched from model_url) -> the empty no-model folder."""
    if options.model_in_image or config.model_url:
        return ModelMount(NO_MODEL_DIR, "/models/none")
    path = resolve_model_path(config)
    if (path / "saved_model.pb").exists():
        version = path.name if path.name.isdigit() else "1"
        return ModelMount(path, f"{CONTAINER_MODEL_BASE}/{version}")
    return ModelMount(path, CONTAINER_MODEL_BASE)


def container_env(config: TargetConfig) -> dict[str, str]:
    """The SERVECAP_* server settings, as the process launcher gives them, for the containers
    (model path inside the container; no PYTHONPATH: the image has the code in /app)."""
    inside = config.model_copy(update={"model_path": CONTAINER_MODEL_BASE})
    if config.kind == "jobqueue":
        from targets.jobqueue.launch import queue_env

        env = queue_env(inside)
    else:
        env = server_env(inside)
    env.pop("PYTHONPATH", None)
    env.update(config.env)
    return env


def compose_env(
    name: str, config: TargetConfig, options: ContainerOptions, run_id: str, env_file: Path
) -> dict[str, str]:
    """Every variable docker-compose.yml refers to, from the target's config."""
    from targets.flask.launch import KEEPALIVE_S, effective_threads

    kind = config.kind
    mount = model_mount(config, options)
    chain = kind.startswith("django-to-")
    model_tag = f"{options.image_tag}-model" if options.model_in_image else options.image_tag
    tfs_image, tfs_tag = TFSERVING_IMAGE, TFSERVING_TAG
    if options.model_in_image:
        tfs_image, tfs_tag = f"{options.image_repo}/tfserving", f"{TFSERVING_TAG}-model"
    overrides = {k: v for k, v in config.env.items() if k.startswith("SERVECAP_")}
    env = {
        "SERVECAP_TARGET": name,
        "SERVECAP_RUN_ID": run_id,
        "SERVECAP_ENV_FILE": str(env_file.resolve()),
        "SERVECAP_IMAGE_REPO": options.image_repo,
        "SERVECAP_IMAGE_TAG": options.image_tag,
        "SERVECAP_MODEL_IMAGE_TAG": model_tag,
        "TFSERVING_IMAGE": tfs_image,
        "TFSERVING_TAG": tfs_tag,
        "SERVECAP_MODEL_DIR": str(mount.host_dir),
        "SERVECAP_MODEL_MOUNT": mount.mount,
        "SERVECAP_CPUS": f"{options.cpus:g}" if options.cpus else "0",
        "SERVECAP_MEM_LIMIT": options.memory or "0",
        "SERVECAP_CPUSET": options.cpuset or "",
        "SERVECAP_TMPFS_SIZE": "2g",
        "SERVECAP_START_PERIOD": f"{max(1, int(config.ready_timeout_s))}s",
        "SERVECAP_HOST": config.host,
        "SERVECAP_PORT": str(config.port),
        "SERVECAP_APP_PORT": str(config.app_port),
        "SERVECAP_MODEL_PORT": str(config.model_port),
        "SERVECAP_FASTAPI_HOST": config.host if kind == "fastapi" else "127.0.0.1",
        "SERVECAP_FASTAPI_PORT": str(config.port if kind == "fastapi" else config.model_port),
        "SERVECAP_FLASK_HOST": config.host if kind == "flask" else "127.0.0.1",
        "SERVECAP_FLASK_PORT": str(config.port if kind == "flask" else config.model_port),
        "SERVECAP_TFSERVING_REST_PORT": str(
            config.port if kind == "tfserving" else config.model_port
        ),
        "SERVECAP_TFSERVING_GRPC_PORT": str(config.tf_grpc_port),
        "SERVECAP_TFSERVING_ENABLE_BATCHING": "true" if config.batching else "false",
        "SERVECAP_TFSERVING_BATCHING_FILE": "/config/batching.txt" if config.batching else "",
        "SERVECAP_BATCHING": config.batching or "default",
        "SERVECAP_REDIS_PORT": str(config.model_port),
        "SERVECAP_QUEUE_WORKERS": str(config.queue_workers),
        "SERVECAP_WORKERS": str(config.workers),
        "SERVECAP_THREADS": str(effective_threads(config)),
        "SERVECAP_KEEPALIVE_S": str(KEEPALIVE_S if chain else 5),
        "SERVECAP_MAX_BODY_BYTES": str(config.max_body_bytes),
        "SERVECAP_NGINX_WORKERS": "1",
        "SERVECAP_UPSTREAM_KIND": "tfserving-rest" if kind == "django-to-tfserving" else "servecap",
        "SERVECAP_UPSTREAM_POOL_SIZE": str(effective_threads(config)),
    }
    for key in ("SERVECAP_UPSTREAM_KIND", "SERVECAP_UPSTREAM_POOL_SIZE", "SERVECAP_NGINX_WORKERS",
                "SERVECAP_KEEPALIVE_S"):  # fmt: skip
        if key in overrides:
            env[key] = overrides[key]
    return env


def write_env_file(path: Path, env: dict[str, str]) -> Path:
    """KEY=VALUE lines (Compose env_file syntax: no quoting, one variable a line)."""
    lines = []
    for key, value in sorted(env.items()):
        if "\n" in value:
            raise LaunchError(f"environment variable {key} holds a newline; not supported")
        lines.append(f"{key}={value}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def scales(
    config: TargetConfig, options: ContainerOptions, layout: KindLayout | None = None
) -> dict[str, int]:
    layout = layout or layout_for(config.kind)
    out: dict[str, int] = {}
    if config.kind == "jobqueue" and "jobqueue-worker" in layout.services:
        out["jobqueue-worker"] = config.queue_workers
    if options.replicas != 1:
        out[layout.primary] = options.replicas
    return out


def readiness(config: TargetConfig) -> tuple[str, str | None]:
    """(URL the host polls, text its body must contain) once every container is up."""
    from targets.tfserving import protocol as tfs

    if config.kind == "tfserving":
        return f"{config.base_url}{tfs.rest_status_path()}", "AVAILABLE"
    if config.kind == "jobqueue":
        return f"{config.base_url}/healthz?min_workers={config.queue_workers}", None
    return f"{config.base_url}/healthz", None


# --------------------------------------------------------------------------- Docker access


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


def _image_present(client: Any, ref: str) -> bool:
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
        if _image_present(client, ref):
            continue
        if ref.startswith("servecap/") or "/" not in ref.split(":")[0]:
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
                f"target '{name}': image {ref} not available and no registry reachable "
                f"(docker pull: {why[:160]}); skipping this target"
            ) from None


def _safe_readable_by_others(path: Path) -> str | None:
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


# --------------------------------------------------------------------------- the launcher


class DockerLauncher:
    name = "docker"

    def __init__(
        self, compose_file: Path = compose.COMPOSE_FILE, stop_timeout_s: int = STOP_TIMEOUT_S
    ) -> None:
        self.compose_file = compose_file
        self.stop_timeout_s = stop_timeout_s

    def preflight(self, name: str, config: TargetConfig) -> None:
        """Before a run starts anything: engine, compose CLI, servecap images built, replicas
        possible, ports free, model readable. An official image that is not here yet (TF
        Serving) is not an error here: the launch tries to pull it and fails that target
        alone."""
        client = docker_client()
        _compose_cli()
        options = options_for(config)
        variables = compose_env(name, config, options, "preflight", Path(os.devnull))
        specs, layout = self._profile(config, variables)
        self._check(name, config, options, layout, specs, client, pull=False)

    @contextlib.contextmanager
    def launch(self, name: str, config: TargetConfig, logs_dir: Path) -> Iterator[RunningTarget]:
        options = options_for(config)
        client = docker_client()
        cli = _compose_cli()
        run_id = secrets.token_hex(4)
        project = project_name(name, run_id)
        logs_dir.mkdir(parents=True, exist_ok=True)
        env_file = write_env_file(logs_dir / "container.env", container_env(config))
        variables = compose_env(name, config, options, run_id, env_file)
        specs, layout = self._profile(config, variables)
        profile = config.compose_service or config.kind
        self._check(name, config, options, layout, specs, client)

        env = {**os.environ, **variables}
        files = ["-f", str(self.compose_file)]
        if options.gpu:
            files += ["-f", str(self.compose_file.with_name(compose.GPU_FILE.name))]
        base = [*cli, "-p", project, *files, "--profile", profile]
        up = [*base, "up", "-d", "--no-build"]
        for service, count in scales(config, options, layout).items():
            up += ["--scale", f"{service}={count}"]
        t0 = time.monotonic()
        try:
            self._compose(up, env, logs_dir / "compose-up.log", config.ready_timeout_s + 60)
            containers = self._wait_ready(name, config, options, layout, client, project, t0)
            yield RunningTarget(
                name=name,
                config=config,
                base_url=config.base_url,
                launcher=self.name,
                time_to_ready_s=time.monotonic() - t0,
                containers=[c.id for c in containers],
                logs_dir=logs_dir,
                health=functools.partial(containers_health, client, [c.id for c in containers]),
            )
        finally:
            with _deferred_interrupts():
                self._teardown(base, env, client, project, run_id, logs_dir)

    # ------------------------------------------------------------------ steps

    def _profile(
        self, config: TargetConfig, variables: dict[str, str]
    ) -> tuple[dict[str, dict[str, Any]], KindLayout]:
        profile = config.compose_service or config.kind
        specs = compose.services(variables, profile, self.compose_file)
        return specs, profile_layout(config, list(specs))

    def _check(
        self, name: str, config: TargetConfig, options: ContainerOptions, layout: KindLayout,
        specs: dict[str, dict[str, Any]], client: Any, pull: bool = True,
    ) -> None:  # fmt: skip
        missing = [s for s in layout.services if s not in specs]
        if missing:
            raise LaunchError(
                f"target '{name}': docker-compose.yml has no service {', '.join(missing)} in "
                f"profile '{config.kind}'"
            )
        if options.replicas < 1:
            raise LaunchError(f"target '{name}': replicas must be at least 1")
        if options.replicas > 1 and not layout.scalable:
            raise LaunchError(
                f"target '{name}': {config.kind} cannot run replicas on the host network "
                f"({layout.primary} cannot share its port); use one replica"
                + (" and queue_workers" if config.kind == "jobqueue" else "")
            )
        images = [str(specs[s]["image"]) for s in layout.services]
        if options.gpu:
            images = [
                f"{i}-gpu" if specs[s].get("entrypoint") == ["tensorflow_model_server"] else i
                for s, i in zip(layout.services, images, strict=True)
            ]
        ensure_images(client, name, images, pull=pull)
        if remote_engine():
            return
        self._check_ports(name, config, client)
        self._check_model(name, config, options)

    def _check_ports(self, name: str, config: TargetConfig, client: Any) -> None:
        kind = config.kind
        ports = {"port": config.port}
        if kind.startswith("django"):
            ports["internal_port"] = config.app_port
        if kind.startswith("django-to-") or kind == "jobqueue":
            ports["upstream_port"] = config.model_port
        if kind.endswith("tfserving"):
            ports["grpc_port"] = config.tf_grpc_port
        for field, port in ports.items():
            host = config.host if field == "port" else "127.0.0.1"
            if port_is_free(host, port):
                continue
            hint = ""
            if managed_containers(client):
                hint = (
                    " (servecap containers from an earlier run are still there: `servecap clean`)"
                )
            raise LaunchError(
                f"target '{name}': {field} {port} on {host} is already in use{hint}; stop that "
                f"process or set targets.{name}.{field}"
            )

    def _check_model(self, name: str, config: TargetConfig, options: ContainerOptions) -> None:
        if options.model_in_image or config.model_url:
            return
        path = resolve_model_path(config)
        if not any(path.glob("saved_model.pb")) and not any(path.glob("*/saved_model.pb")):
            raise LaunchError(
                f"target '{name}': model not found at {path}; train and export it with "
                f"`servecap model train` or set targets.{name}.model_path"
            )
        blocked = _safe_readable_by_others(path)
        if blocked is not None:
            raise LaunchError(
                f"target '{name}': the containers run as uid {APP_UID} and cannot read the "
                f"model at {path} ({blocked} is not readable by others); `chmod -R o+rX` it "
                "or use a model-in-image build"
            )

    def _compose(self, cmd: list[str], env: dict[str, str], log: Path, timeout_s: float) -> None:
        with log.open("ab") as out:
            out.write(f"$ {' '.join(cmd)}\n".encode())
            out.flush()
            try:
                proc = subprocess.run(cmd, env=env, cwd=self.compose_file.parent, stdout=out,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      timeout=timeout_s, check=False,
                                      start_new_session=True)  # fmt: skip
            except subprocess.TimeoutExpired:
                raise LaunchError(f"`{' '.join(cmd[-4:])}` still running after "
                                  f"{timeout_s:.0f} s; see {log}") from None  # fmt: skip
        if proc.returncode != 0:
            text = log.read_text(errors="replace").strip().splitlines()[-15:]
            raise LaunchError(f"compose failed (exit {proc.returncode}):\n" + "\n".join(text))

    def _wait_ready(
        self, name: str, config: TargetConfig, options: ContainerOptions, layout: KindLayout,
        client: Any, project: str, t0: float,
    ) -> list[Any]:  # fmt: skip
        expected = {s: 1 for s in layout.services} | scales(config, options, layout)
        url, needle = readiness(config)
        ready: set[str] = set()
        deadline = t0 + config.ready_timeout_s
        while True:
            containers = client.containers.list(
                all=True, filters={"label": f"{PROJECT_LABEL}={project}"}
            )
            for c in containers:
                if c.status in ("exited", "dead", "removing"):
                    raise LaunchError(
                        f"target '{name}': container {c.name} {c.status}{_oom(c, config)} "
                        f"before the target was ready; its last lines:\n{_log_tail(c)}"
                    )
            counts: dict[str, int] = {}
            for c in containers:
                service = c.labels.get(SERVICE_LABEL, "")
                counts[service] = counts.get(service, 0) + 1
            for c in containers:
                if c.id not in ready and c.status == "running" and _healthy(c):
                    ready.add(c.id)
            complete = counts == expected and all(c.id in ready for c in containers)
            if complete and _probe(url, needle) and self._grpc_ready(config):
                return sorted(containers, key=lambda c: c.name)
            if time.monotonic() > deadline:
                waiting = [c.name for c in containers if c.id not in ready]
                raise LaunchError(
                    f"target '{name}': not ready after {config.ready_timeout_s:.0f} s "
                    f"(containers {counts} of {expected}; not healthy yet: "
                    f"{', '.join(waiting) or 'none'}; {url} not answering); raise "
                    f"targets.{name}.ready_timeout_s if it is only slow"
                    + "".join(
                        f"\n--- {c.name}:\n{_log_tail(c)}" for c in containers if c.id not in ready
                    )
                )
            time.sleep(POLL_S)

    @staticmethod
    def _grpc_ready(config: TargetConfig) -> bool:
        return not config.kind.endswith("tfserving") or probe_tcp(config.tf_grpc_port)

    def _teardown(
        self, base: list[str], env: dict[str, str], client: Any, project: str, run_id: str,
        logs_dir: Path,
    ) -> None:  # fmt: skip
        with contextlib.suppress(Exception):
            for c in client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"}):
                _save_logs(c, logs_dir / f"{c.name}.log")
        down = [*base, "down", "-v", "--remove-orphans", "--timeout", str(self.stop_timeout_s)]
        with contextlib.suppress(LaunchError, OSError):
            self._compose(down, env, logs_dir / "compose-down.log", 120)
        remove_labelled(client, f"{RUN_LABEL}={run_id}")


# --------------------------------------------------------------------------- helpers


def _compose_cli() -> tuple[str, ...]:
    try:
        return compose.compose_command()
    except compose.ComposeError as err:
        raise LaunchError(str(err)) from None


def _healthy(container: Any) -> bool:
    """The container's own healthcheck passes: Docker says so, or running it now does."""
    state = container.attrs.get("State", {})
    if state.get("Health", {}).get("Status") == "healthy":
        return True
    test = (container.attrs.get("Config", {}).get("Healthcheck") or {}).get("Test") or []
    if not test or test[0] == "NONE":
        return True
    cmd = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:])
    try:
        result = container.exec_run(cmd, stdout=False, stderr=False)
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
                f"{state.get('ExitCode')}{_oom(container)}; its last lines:\n"
                f"{_log_tail(container)}"
            )
    return None


def _oom(container: Any, config: TargetConfig | None = None) -> str:
    """' (OOM-killed: memory limit ...)' when the kernel killed it for memory, else ''."""
    if not container.attrs.get("State", {}).get("OOMKilled"):
        return ""
    limit = f" of {config.memory_limit_mb} MB" if config and config.memory_limit_mb else ""
    return f" (OOM-killed: memory limit{limit}; raise memory_limit_mb)"


def _probe(url: str, needle: str | None) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2.0) as resp:
            body = resp.read(65536)
            return resp.status == 200 and (needle is None or needle.encode() in body)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _log_tail(container: Any, lines: int = 20) -> str:
    try:
        text = container.logs(tail=lines).decode("utf-8", errors="replace").rstrip()
    except Exception as err:
        return f"(no logs: {err})"
    return text or "(empty log)"


def _save_logs(container: Any, path: Path) -> None:
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


@contextlib.contextmanager
def _deferred_interrupts() -> Iterator[None]:
    """Let a teardown finish: a Ctrl-C during it is held and raised afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received and callable(previous):
        previous(signal.SIGINT, None)
    elif received:
        raise KeyboardInterrupt


__all__ = [
    "LAYOUTS",
    "MANAGED_LABEL",
    "RUN_LABEL",
    "ContainerOptions",
    "DockerLauncher",
    "clean",
    "compose_env",
    "container_env",
    "options_for",
]
