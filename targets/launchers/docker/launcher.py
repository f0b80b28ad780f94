"""Docker launcher: a target's containers from docker-compose.yml, nothing left behind.

Same interface as :class:`targets.launchers.process.ProcessLauncher`. For one launch::

    pre-flight   engine reachable, compose CLI, images present (official images: one pull
                 attempt), ports free, model folder present and readable by the container user
    up           <compose> -p servecap-<target>-<run> [-f docker-compose.gpu.yml]
                   --profile <kind> up -d --no-build [--scale <service>=N]
                 with every ${VARIABLE} of the compose file derived from the target's config
                 (:mod:`.environment`) and the config itself in an env file
    ready        every container running; each one's own healthcheck command passes (run by
                 the launcher with ``docker exec`` every 0.25 s, so time-to-ready is not rounded
                 up to Docker's 5 s health interval; Docker's own check is off within a run:
                 environment.MEASURED_HEALTH_INTERVAL); the kind's readiness probes pass from
                 the host
    yield        RunningTarget(containers=[ids], time_to_ready_s)
    tear down    (always: normal exit, exception, KeyboardInterrupt) container logs saved to
                 logs_dir, `down -v --remove-orphans`, then any container or network still
                 labelled with this run id is removed through the Docker API

The kind says which services its profile starts, which one holds the model (replicas, cpus and
memory limits apply to it), whether replicas can share its port, and its ports and probes
(:class:`targets.kind.Kind`). Compose subprocesses run in their own session, so a Ctrl-C
reaches the harness only and the teardown's ``down`` is never interrupted by it. If the
harness itself is killed (SIGKILL), containers stay: ``servecap clean`` removes everything
labelled ``io.servecap.managed=true``, and the next launch on the same port says so.

Remote engines (DOCKER_HOST=ssh://... or tcp://...) work for everything the engine does: the
compose CLI and the SDK both honour DOCKER_HOST. Two caveats: the model folder is a bind mount,
so the path must exist *on the engine host* (or use model-in-image); the targets
listen on the engine host's 127.0.0.1, which the harness reaches only through a tunnel
(e.g. ``ssh -L``). Host-side pre-flight checks (ports, model permissions) are skipped then.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from targets.common import loopback
from targets.config import ModelConfig, TargetConfig
from targets.docker import compose
from targets.kind import Containers, Kind
from targets.launch_types import LaunchError, Probe, resolve_model_path
from targets.launchers.base import (
    RunningTarget,
    held_signals,
    port_is_free,
    probe_tcp,
    with_fetched_model,
)
from targets.launchers.docker.control import DockerSupervisor
from targets.launchers.docker.engine import (
    APP_UID,
    PROJECT_LABEL,
    RUN_LABEL,
    SERVICE_LABEL,
    docker_client,
    ensure_images,
    healthy,
    log_tail,
    managed_containers,
    oom_note,
    remove_labelled,
    save_logs,
    unreadable_by_others,
)
from targets.launchers.docker.environment import (
    ContainerOptions,
    compose_env,
    container_env,
    options_for,
    project_name,
    remote_engine,
    write_env_file,
)
from targets.registry import get_kind

STOP_TIMEOUT_S = 10
POLL_S = 0.25


def layout_of(kind: Kind, config: TargetConfig, profile_services: list[str]) -> Containers:
    """The kind's containers; with ``compose_service`` (a profile of your own in
    docker-compose.yml), that profile's services, its first one holding the model."""
    if config.compose_service and config.compose_service != kind.name:
        if not profile_services:
            raise LaunchError(
                f"docker-compose.yml has no service in profile '{config.compose_service}'"
            )
        return Containers(tuple(profile_services))
    if kind.containers is None:
        raise LaunchError(f"target kind '{kind.name}' has no services in docker-compose.yml")
    return kind.containers


def scales(
    kind: Kind, config: TargetConfig, layout: Containers,
    specs: dict[str, dict[str, Any]] | None = None,
) -> dict[str, int]:  # fmt: skip
    """``--scale`` counts: the kind's, the target's replicas, or an override file's ``scale``
    of the model-serving service (``servecap plan --compose``)."""
    out = {s: n for s, n in kind.scales(config).items() if s in layout.services}
    planned = (specs or {}).get(layout.primary, {}).get("scale")
    replicas = int(planned) if planned is not None else config.replicas
    if replicas != 1:
        out[layout.primary] = replicas
    return out


class DockerLauncher:
    name = "docker"

    def __init__(
        self, compose_file: Path = compose.COMPOSE_FILE, stop_timeout_s: int = STOP_TIMEOUT_S,
        overrides: tuple[Path, ...] = (),
    ) -> None:  # fmt: skip
        self.compose_file = compose_file
        self.stop_timeout_s = stop_timeout_s
        self.overrides = tuple(p.resolve() for p in overrides)
        """Override files given by the user (``servecap run --compose-override``)."""

    def preflight(self, name: str, config: TargetConfig) -> None:
        """Before a run starts anything: engine, compose CLI, servecap images built, replicas
        possible, ports free, model readable. An official image that is not here yet (TF
        Serving) is not an error here: the launch tries to pull it and fails that target
        alone."""
        client = docker_client()
        _compose_cli()
        options = options_for(config)
        variables = compose_env(name, config, options, "preflight", Path(os.devnull))
        specs, layout = self._profile(config, variables, options)
        self._check(name, config, options, layout, specs, client, pull=False)

    @contextlib.contextmanager
    def launch(self, name: str, config: TargetConfig, logs_dir: Path) -> Iterator[RunningTarget]:
        fetch_t0 = time.monotonic()
        config = with_fetched_model(name, config)  # mounted like model_path; part of the start
        fetch_s = time.monotonic() - fetch_t0
        kind = get_kind(config.kind)
        options = options_for(config)
        client = docker_client()
        cli = _compose_cli()
        run_id = secrets.token_hex(4)
        project = project_name(name, run_id)
        logs_dir.mkdir(parents=True, exist_ok=True)
        env_file = write_env_file(logs_dir / "container.env", container_env(name, config))
        variables = compose_env(name, config, options, run_id, env_file)
        specs, layout = self._profile(config, variables, options)
        self._check(name, config, options, layout, specs, client)

        env = {**os.environ, **variables, **kind.launch_env(config)}  # secrets: no file
        files = self._files(options, write_overrides(kind, config, logs_dir))
        base = [*cli, "-p", project, *files, "--profile", _profile_name(config)]
        up = [*base, "up", "-d", "--no-build"]
        for service, count in scales(kind, config, layout, specs).items():
            up += ["--scale", f"{service}={count}"]
        t0 = time.monotonic()
        try:
            self._compose(up, env, logs_dir / "compose-up.log", config.ready_timeout_s + 60)
            containers = self._wait_ready(name, config, kind, layout, specs, client, project, t0)
            ids = [c.id for c in containers]
            supervisor = DockerSupervisor(client, kind, ids)
            yield RunningTarget(
                name=name,
                config=config,
                base_url=config.base_url,
                launcher=self.name,
                time_to_ready_s=fetch_s + time.monotonic() - t0,
                containers=ids,
                logs_dir=logs_dir,
                health=supervisor.health,
                control=supervisor,
            )
        finally:
            with held_signals():
                self._teardown(base, env, client, project, run_id, logs_dir)

    # ------------------------------------------------------------------ steps

    def _files(self, options: ContainerOptions, overrides: Path | None = None) -> list[str]:
        files = ["-f", str(self.compose_file)]
        if options.gpu:
            files += ["-f", str(self.compose_file.with_name(compose.GPU_FILE.name))]
        for path in self.overrides:
            files += ["-f", str(path)]
        if overrides is not None:
            files += ["-f", str(overrides)]
        return files

    def _profile(
        self, config: TargetConfig, variables: dict[str, str], options: ContainerOptions
    ) -> tuple[dict[str, dict[str, Any]], Containers]:
        profile = _profile_name(config)
        specs = compose.services(variables, profile, self.compose_file)
        if options.gpu:  # the GPU file's overrides (images, device reservations)
            gpu = compose.services(
                variables, None, self.compose_file.with_name(compose.GPU_FILE.name)
            )
            specs = {n: {**s, **gpu.get(n, {})} for n, s in specs.items()}
        for path in self.overrides:
            try:
                given = compose.services(variables, None, path)
            except compose.ComposeError as err:
                raise LaunchError(str(err)) from None
            specs = {n: {**s, **given.get(n, {})} for n, s in specs.items()}
        overrides = get_kind(config.kind).compose_overrides(config)
        specs = {n: {**s, **overrides.get(n, {})} for n, s in specs.items()}
        return specs, layout_of(get_kind(config.kind), config, list(specs))

    def _check(
        self, name: str, config: TargetConfig, options: ContainerOptions, layout: Containers,
        specs: dict[str, dict[str, Any]], client: Any, pull: bool = True,
    ) -> None:  # fmt: skip
        kind = get_kind(config.kind)
        missing = [s for s in layout.services if s not in specs]
        if missing:
            raise LaunchError(
                f"target '{name}': docker-compose.yml has no service {', '.join(missing)} in "
                f"profile '{_profile_name(config)}'"
            )
        if scales(kind, config, layout, specs).get(layout.primary, 1) > 1 and not layout.scalable:
            raise LaunchError(
                f"target '{name}': {config.kind} cannot run replicas on the host network "
                f"({layout.primary} cannot share its port); use one replica"
            )
        problems = kind.problems(name, config)
        if problems:
            raise LaunchError("; ".join(problems))
        ensure_images(client, name, [str(specs[s]["image"]) for s in layout.services], pull)
        if remote_engine():
            return
        self._check_ports(name, kind, config, client)
        self._check_model(name, config)

    @staticmethod
    def _check_ports(name: str, kind: Kind, config: TargetConfig, client: Any) -> None:
        for field, (host, port) in kind.ports(config).items():
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

    @staticmethod
    def _check_model(name: str, config: TargetConfig) -> None:
        if not isinstance(config, ModelConfig) or config.model_in_image or config.model_url:
            return
        path = resolve_model_path(config)
        blocked = unreadable_by_others(path) if path.exists() else None
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
        self, name: str, config: TargetConfig, kind: Kind, layout: Containers,
        specs: dict[str, dict[str, Any]], client: Any, project: str, t0: float,
    ) -> list[Any]:  # fmt: skip
        expected = {s: 1 for s in layout.services} | scales(kind, config, layout, specs)
        probes = kind.readiness(config)
        ready: set[str] = set()
        deadline = t0 + config.ready_timeout_s
        while True:
            containers = client.containers.list(
                all=True, filters={"label": f"{PROJECT_LABEL}={project}"}
            )
            for c in containers:
                if c.status in ("exited", "dead", "removing"):
                    raise LaunchError(
                        f"target '{name}': container {c.name} {c.status}"
                        f"{oom_note(c, config.memory_limit_mb)} before the target was ready; "
                        f"its last lines:\n{log_tail(c)}"
                    )
            counts: dict[str, int] = {}
            for c in containers:
                service = c.labels.get(SERVICE_LABEL, "")
                counts[service] = counts.get(service, 0) + 1
            for c in containers:
                if c.id not in ready and c.status == "running" and healthy(c):
                    ready.add(c.id)
            complete = counts == expected and all(c.id in ready for c in containers)
            if complete and all(_probe(p) for p in probes):
                return sorted(containers, key=lambda c: c.name)
            if time.monotonic() > deadline:
                waiting = [c.name for c in containers if c.id not in ready]
                what = ", ".join(p.url or f"port {p.tcp_port}" for p in probes)
                raise LaunchError(
                    f"target '{name}': not ready after {config.ready_timeout_s:.0f} s "
                    f"(containers {counts} of {expected}; not healthy yet: "
                    f"{', '.join(waiting) or 'none'}; waiting for {what}); raise "
                    f"targets.{name}.ready_timeout_s if it is only slow"
                    + "".join(
                        f"\n--- {c.name}:\n{log_tail(c)}" for c in containers if c.id not in ready
                    )
                )
            time.sleep(POLL_S)

    def _teardown(
        self, base: list[str], env: dict[str, str], client: Any, project: str, run_id: str,
        logs_dir: Path,
    ) -> None:  # fmt: skip
        with contextlib.suppress(Exception):
            for c in client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"}):
                save_logs(c, logs_dir / f"{c.name}.log")
        down = [*base, "down", "-v", "--remove-orphans", "--timeout", str(self.stop_timeout_s)]
        with contextlib.suppress(LaunchError, OSError):
            self._compose(down, env, logs_dir / "compose-down.log", 120)
        remove_labelled(client, f"{RUN_LABEL}={run_id}")


def write_overrides(kind: Kind, config: TargetConfig, folder: Path) -> Path | None:
    """The kind's compose overrides as a file in ``folder`` (None when it has none). ``$`` is
    escaped: a command is passed as written, never interpolated by Compose."""
    overrides = kind.compose_overrides(config)
    if not overrides:
        return None

    def escape(node: Any) -> Any:
        if isinstance(node, str):
            return node.replace("$", "$$")
        if isinstance(node, list | tuple):
            return [escape(n) for n in node]
        if isinstance(node, dict):
            return {k: escape(v) for k, v in node.items()}
        return node

    path = folder / "compose-override.yml"
    text = yaml.safe_dump({"services": escape(overrides)}, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def _profile_name(config: TargetConfig) -> str:
    return config.compose_service or config.kind


def _compose_cli() -> tuple[str, ...]:
    try:
        return compose.compose_command()
    except compose.ComposeError as err:
        raise LaunchError(str(err)) from None


def _probe(probe: Probe) -> bool:
    """One readiness probe from the host (loopback URLs only)."""
    if probe.tcp_port is not None:
        return probe_tcp(probe.tcp_port)
    if probe.url is None:
        return True
    try:
        with loopback.urlopen(probe.url, 2.0) as resp:
            body = resp.read(65536)
            return resp.status == 200 and (probe.needle is None or probe.needle.encode() in body)
    except (urllib.error.URLError, OSError, ValueError):
        return False
