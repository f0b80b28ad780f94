"""docker-compose.yml: profiles, conventions, variables, and the one command definition.

No Docker engine needed: the file is read as Compose reads it (targets.docker.compose). Every
servecap service runs ``serve <role>``, which execs the process of that role in the kind's
plan: the tests check each role exists in each kind's container plan, and that ``serve``
execs exactly that process, so the two launchers run the same servers. One test runs
`docker-compose config` when a compose CLI is installed.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from targets.docker import compose, entrypoint
from targets.docker.entrypoint import bind_reuse_port, decode_config, expand
from targets.docker.healthcheck import own_listener, probe, ready
from targets.launch_types import CONTAINER
from targets.launchers.docker import ContainerOptions, compose_env, container_env
from targets.launchers.docker.environment import cpu_limit_env, options_for
from targets.registry import get_kind, kinds, target_config
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
KINDS = sorted(k for k, kind in kinds().items() if kind.containers is not None)
SERVECAP_KINDS = [k for k in KINDS if k != "container"]
"""Kinds whose containers run servecap's images (``container`` runs the user's image)."""
USER_IMAGE = {"image": "team/classifier:1.4", "protocol": "image-upload"}


def config_for(kind: str, tmp_path: Path, **config: object):  # type: ignore[no-untyped-def]
    if kind == "container":
        return target_config(kind=kind, port=9101, **{**USER_IMAGE, **config})
    return target_config(kind=kind, port=9101, model_path=str(tmp_path), **config)


def env_for(kind: str, tmp_path: Path, **config: object) -> dict[str, str]:
    cfg = config_for(kind, tmp_path, **config)
    return compose_env("t", cfg, ContainerOptions(), "abcd1234", tmp_path / "c.env")


def containers(kind: str):  # type: ignore[no-untyped-def]
    layout = kinds()[kind].containers
    assert layout is not None
    return layout


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_profile_has_exactly_its_services(kind: str, tmp_path: Path) -> None:
    services = compose.services(env_for(kind, tmp_path), kind)
    assert set(services) == set(containers(kind).services)
    assert containers(kind).primary in services


def test_every_service_follows_the_conventions(tmp_path: Path) -> None:
    services = compose.services(env_for("fastapi", tmp_path))
    assert services
    for name, spec in services.items():
        assert spec["network_mode"] == "host", name
        assert spec["init"] is True, name
        if name != "container":  # the user's image keeps its own user and file system
            assert spec["user"] == "10001:10001", name
            assert spec["read_only"] is True, name
            assert any(t.startswith("/tmp:") for t in spec["tmpfs"]), name
        labels = spec["labels"]
        assert labels["io.servecap.managed"] == "true", name
        assert labels["io.servecap.target"] == "t" and labels["io.servecap.run"] == "abcd1234"
        assert labels["io.servecap.role"] == name
        assert "healthcheck" in spec, name
        assert "ports" not in spec and "networks" not in spec, name  # host network only


def test_limits_apply_to_the_model_serving_services_only(tmp_path: Path) -> None:
    services = compose.services(env_for("fastapi", tmp_path))
    primaries = {containers(kind).primary for kind in KINDS}
    for name, spec in services.items():
        assert ("cpus" in spec) == (name in primaries), name
        assert "cpuset" in spec, name  # placement: every container


def test_the_launcher_sets_every_variable_the_files_use(tmp_path: Path) -> None:
    """Nothing is left to the user's shell: a stray SERVECAP_CPUS cannot leak into a run."""
    gpu_services = compose.load(compose.GPU_FILE)["services"]
    for kind in KINDS:
        # The compose variables, and what each launch makes afresh (the job queue's password)
        env = {**env_for(kind, tmp_path),
               **get_kind(kind).launch_env(config_for(kind, tmp_path))}  # fmt: skip
        used = compose.variables(profile=kind)
        for service in compose.services(env, kind):
            used |= {m.group(1) for m in re.finditer(r"\$\{(\w+)", str(gpu_services.get(service)))}
        missing = used - set(env)
        assert not missing, (kind, missing)


def test_tf_serving_ports_and_batching_per_kind(tmp_path: Path) -> None:
    env = env_for("django-to-tfserving", tmp_path, batching="latency")
    tfs = compose.services(env, "django-to-tfserving")
    command = tfs["tfserving"]["command"]
    assert "--rest_api_port=9103" in command and "--port=9104" in command  # model_port, +3
    assert "--enable_batching=true" in command
    assert "--batching_parameters_file=/config/batching.txt" in command
    assert any(v.endswith("batching/latency.txt:/config/batching.txt:ro")
               for v in tfs["tfserving"]["volumes"])  # fmt: skip
    assert (REPO / "targets/tfserving/batching/latency.txt").is_file()
    standalone = compose.services(env_for("tfserving", tmp_path), "tfserving")["tfserving"]
    assert "--rest_api_port=9101" in standalone["command"]
    assert "--enable_batching=false" in standalone["command"]


def test_container_env_carries_the_config_with_container_paths(tmp_path: Path) -> None:
    cfg = target_config(kind="jobqueue", model_path=str(tmp_path), max_works=3,
                        env={"SERVECAP_JOB_TIMEOUT_S": "9"})  # fmt: skip
    env = container_env("jq", cfg)
    assert env["SERVECAP_JOB_TIMEOUT_S"] == "9"  # the target's own env, as is
    doc = decode_config(env)
    assert doc["model_path"] == "/models/cifar10_cnn" and doc["max_works"] == 3
    assert env["SERVECAP_TARGET"] == "jq"


@pytest.mark.parametrize(
    ("env", "message"),
    [({"A\nSERVECAP_TARGET_CONFIG_B64": "e30="}, "env key 'A\\\\nSERVECAP.* not a variable name"),
     ({"A": "x\nSERVECAP_TARGET_CONFIG_B64=e30="}, "env value of A holds a line break"),
     ({"A": "x\rB=1"}, "env value of A holds a line break"), ({"9LIVES": "1"}, "not a variable"),
     ({"A=B": "1"}, "not a variable name"), ({"": "1"}, "not a variable name")],
)  # fmt: skip
def test_env_entries_that_would_not_be_one_env_file_line_are_refused(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    from pydantic import ValidationError

    from targets.launchers.base import LaunchError
    from targets.launchers.docker.environment import write_env_file

    with pytest.raises(ValidationError, match=message):
        target_config(kind="fastapi", env=env)
    with pytest.raises(LaunchError, match=message):  # the writer refuses it too
        write_env_file(tmp_path / "container.env", {"SERVECAP_TARGET": "t", **env})
    assert not (tmp_path / "container.env").exists()
    good = {"OMP_NUM_THREADS": "2", "_X1": "a=b c"}
    path = write_env_file(
        tmp_path / "ok.env", container_env("t", target_config(kind="fastapi", env=good))
    )
    lines = path.read_text().splitlines()
    assert "OMP_NUM_THREADS=2" in lines and "_X1=a=b c" in lines
    assert sum(line.startswith("SERVECAP_TARGET_CONFIG_B64=") for line in lines) == 1


# ------------------------------------------------------------------ one command definition


@pytest.mark.parametrize("kind", SERVECAP_KINDS)
def test_every_service_runs_a_role_of_its_kinds_container_plan(
    kind: str, tmp_path: Path, tiny_model: Path
) -> None:
    # plans resolve the version and read the model's input from its signature
    cfg = target_config(kind=kind, port=9101, model_path=str(tiny_model))
    roles = {spec.role for spec in kinds()[kind].process_plan("t", cfg, CONTAINER)}
    for name, spec in compose.services(env_for(kind, tmp_path), kind).items():
        if spec.get("entrypoint"):  # an official image with its own program (TF Serving)
            continue
        assert spec["command"] == ["serve", name], name
        assert name in roles, (kind, name, roles)


@pytest.mark.parametrize("dockerfile", sorted(REPO.glob("targets/*/Dockerfile")))
def test_image_commands_name_a_role(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    match = re.search(r"^CMD\s+(\[.*\])\s*$", text, re.M)
    assert match, dockerfile
    command = json.loads(match.group(1))
    assert command[0] == "serve" and len(command) == 2
    services = compose.load()["services"]
    assert command[1] in services


def test_a_user_image_runs_with_its_command_as_written_and_the_target_limits(
    tmp_path: Path,
) -> None:
    from targets.launchers.docker.launcher import write_overrides

    cfg = config_for("container", tmp_path, command=["serve", "--port", "{port}", "$HOME"],
                     cpus=0.5, memory_limit_mb=256)  # fmt: skip
    options = options_for(cfg)
    env = compose_env("t", cfg, options, "abcd1234", tmp_path / "c.env")
    (spec,) = compose.services(env, "container").values()
    assert spec["image"] == "team/classifier:1.4"
    assert spec["cpus"] == "0.5" and spec["mem_limit"] == "256m"
    assert spec["labels"]["io.servecap.managed"] == "true"
    assert spec["healthcheck"] == {"disable": True}  # readiness: its health path, from the host
    override = write_overrides(get_kind("container"), cfg, tmp_path)
    assert override is not None
    doc = yaml.safe_load(override.read_text())
    # {port} is the target's; $ is escaped so Compose passes it on as written
    assert doc["services"]["container"]["command"] == ["serve", "--port", "9101", "$$HOME"]
    assert write_overrides(get_kind("container"), config_for("container", tmp_path), tmp_path) \
        is None  # fmt: skip


def test_a_user_image_gets_no_capability_unless_its_target_gives_some_back(
    tmp_path: Path,
) -> None:
    from pydantic import ValidationError

    from targets.launchers.docker.launcher import write_overrides

    cfg = config_for("container", tmp_path, capabilities=["cap_setuid", "SETGID"])
    env = compose_env("t", cfg, options_for(cfg), "abcd1234", tmp_path / "c.env")
    (spec,) = compose.services(env, "container").values()
    assert spec["cap_drop"] == ["ALL"] and spec["security_opt"] == ["no-new-privileges:true"]
    override = write_overrides(get_kind("container"), cfg, tmp_path)
    assert override is not None
    assert yaml.safe_load(override.read_text())["services"]["container"]["cap_add"] == [
        "SETUID", "SETGID"]  # fmt: skip
    with pytest.raises(ValidationError, match="SYS_ADMIN cannot be given back"):
        config_for("container", tmp_path, capabilities=["SYS_ADMIN"])


def test_serve_execs_the_process_of_its_role_with_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a container, ``serve django-forward`` of a chain runs what the process launcher runs
    for that process (plus a shared port); the readiness check is left for healthcheck.py."""
    cfg = target_config(kind="django-to-fastapi", port=9101, model_path=str(tmp_path),
                        workers=2, threads=3)  # fmt: skip
    env = container_env("t", cfg)
    ran: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(entrypoint.os, "execve", lambda *a: ran.append(a))
    monkeypatch.setattr(entrypoint, "READY_FILE", tmp_path / "ready")
    entrypoint.serve("django-forward", env)
    ((_, argv, environ),) = ran
    host = next(s for s in kinds()["django-to-fastapi"].process_plan("t", cfg)
                if s.role == "django-forward")  # fmt: skip
    assert [a for a in argv if a != "--reuse-port"] == list(host.argv)
    assert environ["SERVECAP_UPSTREAM_URL"] == "http://127.0.0.1:9103"
    assert environ["SERVECAP_MODEL_PATH"] == "/models/cifar10_cnn"
    assert (tmp_path / "ready").read_text().split() == ["http", "9102", "/healthz"]
    with pytest.raises(SystemExit, match="no process 'redis'"):
        entrypoint.serve("redis", env)


def test_the_healthcheck_reads_what_serve_wrote(tmp_path: Path) -> None:
    import http.server
    import threading

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz?min_workers=2" else 404)
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        line = entrypoint.ready_line(f"http://127.0.0.1:{port}/healthz?min_workers=2", None)
        (tmp_path / "ready").write_text(line)
        assert ready(str(tmp_path / "ready"))
        (tmp_path / "ready").write_text(f"http {port} /other")
        assert not ready(str(tmp_path / "ready"))
        assert not ready(str(tmp_path / "missing"))
        (tmp_path / "ready").write_text(entrypoint.ready_line(None, None))
        assert ready(str(tmp_path / "ready"))
    finally:
        server.shutdown()
        server.server_close()


def test_gpu_override_reserves_gpus_and_switches_tf_serving_image() -> None:
    doc = compose.load(compose.GPU_FILE)
    services = doc["services"]
    assert services["tfserving"]["image"].endswith("-gpu")
    for name, spec in services.items():
        devices = spec["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}], name
    assert set(services) <= set(compose.load()["services"])


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A:-x}", {}, "x"),
        ("${A:-x}", {"A": ""}, "x"),
        ("${A-x}", {"A": ""}, ""),
        ("${A}-$B", {"A": "1", "B": "2"}, "1-2"),
        ("$${A}", {"A": "1"}, "${A}"),
        ("${A:-}", {}, ""),
    ],
)
def test_interpolation(text: str, env: dict[str, str], expected: str) -> None:
    assert compose.interpolate(text, env) == expected


def test_required_variable_error() -> None:
    with pytest.raises(compose.ComposeError, match="needed"):
        compose.interpolate("${A:?needed}", {})


# ------------------------------------------------------------------ in-container helpers


def test_healthcheck_http_and_own_listener(tmp_path: Path) -> None:
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert probe("tcp", port)
        assert not probe("http", port)  # BaseHTTPRequestHandler answers 501 to GET
        assert own_listener(port)  # this process listens on it
        assert not own_listener(free_port())
    finally:
        server.shutdown()
        server.server_close()


def test_reuse_port_sockets_share_a_port_and_do_not_listen_until_asked() -> None:
    port = free_port()
    first = bind_reuse_port("127.0.0.1", port)
    second = bind_reuse_port("127.0.0.1", port)  # a second replica: no EADDRINUSE
    try:
        assert not probe("tcp", port)  # bound, not listening: not yet part of the group
        second.listen(8)
        assert probe("tcp", port)
    finally:
        first.close()
        second.close()


def test_reuse_port_socket_gives_accepted_connections_tcp_nodelay() -> None:
    """uvicorn --fd wraps the socket as AF_UNIX, so asyncio never sets TCP_NODELAY itself:
    the listening socket must carry it for Linux to copy it to each accepted connection
    (without it, Nagle + delayed ACKs add ~40 ms to keep-alive answers)."""
    port = free_port()
    listener = bind_reuse_port("127.0.0.1", port)
    listener.listen(8)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            conn, _ = listener.accept()
            with conn:
                assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        listener.close()


def test_expand_refuses_unset_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SET_ONE", "1")
    monkeypatch.delenv("UNSET_ONE", raising=False)
    assert expand(["--w", "${SET_ONE}"]) == ["--w", "1"]
    with pytest.raises(SystemExit, match="UNSET_ONE"):
        expand(["${UNSET_ONE}"])


def test_compose_cli_accepts_the_files(tmp_path: Path) -> None:
    try:
        cli = compose.compose_command()
    except compose.ComposeError:
        pytest.skip("no compose CLI installed")
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", **env_for("django-to-fastapi", tmp_path)}
    (tmp_path / "c.env").write_text("SERVECAP_MAX_WORKS=0\n")
    proc = subprocess.run(
        [*cli, "-f", str(compose.COMPOSE_FILE), "-f", str(compose.GPU_FILE),
         "--profile", "django-to-fastapi", "config"],
        capture_output=True, text=True, timeout=60, env=env, cwd=REPO, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "capabilities" in proc.stdout


def test_a_quota_over_its_own_cfs_period() -> None:
    """Docker refuses `cpus` beside a CFS period: with cpu_period_ms the quota is a period and
    a quota (Compose reads both as durations); without, `cpus` over the engine's 100 ms."""
    short = options_for(target_config(kind="fastapi", cpus=0.33, cpu_period_ms=10))
    assert cpu_limit_env(short) == {"SERVECAP_CPUS": "0", "SERVECAP_CPU_PERIOD": "10000us",
                                    "SERVECAP_CPU_QUOTA": "3300us"}  # fmt: skip
    tiny = options_for(target_config(kind="fastapi", cpus=0.05, cpu_period_ms=2))
    assert cpu_limit_env(tiny)["SERVECAP_CPU_QUOTA"] == "1000us"  # the kernel's least quota
    plain = options_for(target_config(kind="fastapi", cpus=0.5))
    assert cpu_limit_env(plain) == {"SERVECAP_CPUS": "0.5", "SERVECAP_CPU_PERIOD": "0us",
                                    "SERVECAP_CPU_QUOTA": "0us"}  # fmt: skip
    assert cpu_limit_env(ContainerOptions())["SERVECAP_CPUS"] == "0"
    with pytest.raises(ValueError, match="set cpus too"):
        target_config(kind="fastapi", cpu_period_ms=10)
    with pytest.raises(ValueError, match="cpu_period_ms"):
        target_config(kind="fastapi", cpus=0.5, cpu_period_ms=0.5)
