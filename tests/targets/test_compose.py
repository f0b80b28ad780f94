"""docker-compose.yml: profiles, conventions, variables, and commands that match the process plans.

No Docker engine needed: the file is read as Compose reads it (targets.docker.compose), and the
Dockerfile commands are compared flag for flag with what the process launcher runs, so the two
launchers measure the same servers. One test runs `docker-compose config` when a compose CLI
is installed.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path

import pytest

from targets.config import TargetConfig
from targets.docker import compose
from targets.docker.entrypoint import bind_reuse_port, expand
from targets.docker.healthcheck import own_listener, probe
from targets.launchers.docker import (
    LAYOUTS,
    ContainerOptions,
    compose_env,
    container_env,
)
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
KINDS = sorted(LAYOUTS)


def env_for(kind: str, tmp_path: Path, **config: object) -> dict[str, str]:
    cfg = TargetConfig(kind=kind, port=9101, model_path=str(tmp_path), **config)  # type: ignore[arg-type]
    return compose_env("t", cfg, ContainerOptions(), "abcd1234", tmp_path / "c.env")


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_profile_has_exactly_its_services(kind: str, tmp_path: Path) -> None:
    services = compose.services(env_for(kind, tmp_path), kind)
    assert set(services) == set(LAYOUTS[kind].services)
    assert LAYOUTS[kind].primary in services


def test_every_service_follows_the_conventions(tmp_path: Path) -> None:
    services = compose.services(env_for("fastapi", tmp_path))
    assert services
    for name, spec in services.items():
        assert spec["network_mode"] == "host", name
        assert spec["init"] is True, name
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
    primaries = {layout.primary for layout in LAYOUTS.values()}
    for name, spec in services.items():
        assert ("cpus" in spec) == (name in primaries), name
        assert "cpuset" in spec, name  # placement: every container


def test_the_launcher_sets_every_variable_the_files_use(tmp_path: Path) -> None:
    """Nothing is left to the user's shell: a stray SERVECAP_CPUS cannot leak into a run."""
    used = compose.variables() | compose.variables(compose.GPU_FILE)
    for kind in KINDS:
        missing = used - set(env_for(kind, tmp_path))
        assert not missing, (kind, missing)


def test_ports_and_upstreams_per_kind(tmp_path: Path) -> None:
    env = env_for("fastapi", tmp_path)
    fastapi = compose.services(env, "fastapi")["fastapi"]
    assert fastapi["environment"]["SERVECAP_LISTEN_PORT"] == "9101"

    env = env_for("django-to-fastapi", tmp_path)
    chain = compose.services(env, "django-to-fastapi")
    assert chain["fastapi"]["environment"]["SERVECAP_LISTEN_PORT"] == "9103"  # model_port
    assert chain["fastapi"]["environment"]["SERVECAP_KEEPALIVE_S"] == "75"
    forward = chain["django-forward"]["environment"]
    assert forward["SERVECAP_LISTEN_PORT"] == "9102"  # app_port
    assert forward["SERVECAP_UPSTREAM_URL"] == "http://127.0.0.1:9103"
    assert chain["nginx"]["environment"]["SERVECAP_PORT"] == "9101"
    assert chain["nginx"]["environment"]["SERVECAP_APP_PORT"] == "9102"

    env = env_for("django-to-tfserving", tmp_path, batching="latency")
    tfs = compose.services(env, "django-to-tfserving")
    command = tfs["tfserving"]["command"]
    assert "--rest_api_port=9103" in command and "--port=9104" in command
    assert "--enable_batching=true" in command
    assert "--batching_parameters_file=/config/batching.txt" in command
    assert any(v.endswith("batching/latency.txt:/config/batching.txt:ro")
               for v in tfs["tfserving"]["volumes"])  # fmt: skip
    assert (REPO / "targets/tfserving/batching/latency.txt").is_file()
    assert tfs["django-forward"]["environment"]["SERVECAP_UPSTREAM_KIND"] == "tfserving-rest"

    env = env_for("jobqueue", tmp_path, queue_workers=3)
    jq = compose.services(env, "jobqueue")
    assert "9103" in jq["redis"]["command"]
    assert "/healthz?min_workers=3" in jq["jobqueue-web"]["healthcheck"]["test"]


def test_container_env_is_the_process_env_with_container_paths(tmp_path: Path) -> None:
    cfg = TargetConfig(kind="jobqueue", model_path=str(tmp_path), max_works=3,
                       env={"SERVECAP_JOB_TIMEOUT_S": "9"})  # fmt: skip
    env = container_env(cfg)
    assert env["SERVECAP_MODEL_PATH"] == "/models/cifar10_cnn"
    assert env["SERVECAP_MAX_WORKS"] == "3"
    assert env["SERVECAP_REDIS_PORT"] == str(cfg.model_port)
    assert env["SERVECAP_JOB_TIMEOUT_S"] == "9"
    assert "PYTHONPATH" not in env  # the image has the code in /app


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


# ------------------------------------------------------------------ commands vs process plans


def dockerfile_cmd(path: Path) -> list[str]:
    text = path.read_text().replace("\\\n", " ")
    match = re.search(r"^CMD\s+(\[.*\])\s*$", text, re.M)
    assert match, path
    argv: list[str] = json.loads(match.group(1))
    assert argv[0] == "exec"
    return argv[argv.index("--") + 1 :]


def expanded(argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return expand(argv)


@pytest.mark.parametrize(
    ("dockerfile", "app"),
    [
        ("targets/flask/Dockerfile", "targets.flask.app:create_app()"),
        ("targets/django_embedded/Dockerfile", "targets.django_embedded.wsgi:create_app()"),
    ],
)
def test_gunicorn_commands_match_the_process_launcher(
    dockerfile: str, app: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from targets.flask.launch import effective_threads, gunicorn_argv

    cfg = TargetConfig(kind="flask", workers=3, threads=2, max_works=4)
    env = {"SERVECAP_WORKERS": "3", "SERVECAP_THREADS": str(effective_threads(cfg)),
           "SERVECAP_LISTEN_HOST": "127.0.0.1", "SERVECAP_LISTEN_PORT": "9102"}  # fmt: skip
    docker_argv = expanded(dockerfile_cmd(REPO / dockerfile), env, monkeypatch)
    process_argv = list(gunicorn_argv(app, "127.0.0.1", 9102, cfg))
    assert process_argv[1:3] == ["-m", "gunicorn"]
    assert docker_argv[0] == "gunicorn"
    docker_argv.remove("--reuse-port")  # replicas share the port on the host network
    assert docker_argv[1:] == process_argv[3:]


def test_uvicorn_commands_match_the_process_launcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from targets.django_to_fastapi.launch import fastapi_spec
    from targets.fastapi.launch import process_plan

    def normalise(argv: list[str]) -> list[str]:
        out, skip = [], 0
        for i, arg in enumerate(argv):
            if skip:
                skip -= 1
                continue
            if arg in ("--host", "--port", "--fd"):  # socket: host/port vs pre-bound fd 3
                skip = 1
                continue
            if arg == "--timeout-keep-alive" and argv[i + 1] == "5":  # uvicorn's default
                skip = 1
                continue
            out.append(arg)
        return out

    cmd = dockerfile_cmd(REPO / "targets/fastapi/Dockerfile")
    cfg = TargetConfig(kind="fastapi", workers=2, model_path=str(tmp_path))
    standalone = expanded(cmd, {"SERVECAP_WORKERS": "2", "SERVECAP_KEEPALIVE_S": "5"},
                          monkeypatch)  # fmt: skip

    def uvicorn_part(argv: list[str]) -> list[str]:  # the server's own arguments
        return argv[argv.index("uvicorn") :]

    plan = list(process_plan("t", cfg)[0].argv)
    assert normalise(uvicorn_part(standalone)) == normalise(uvicorn_part(plan))
    chain = expanded(cmd, {"SERVECAP_WORKERS": "2", "SERVECAP_KEEPALIVE_S": "75"}, monkeypatch)
    chain_plan = list(fastapi_spec("t", cfg, 9103).argv)
    assert normalise(uvicorn_part(chain)) == normalise(uvicorn_part(chain_plan))


def test_jobqueue_commands_match_the_process_launcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from targets.jobqueue import launch

    monkeypatch.setattr(launch.shutil, "which", lambda name: f"/usr/bin/{name}")
    cfg = TargetConfig(kind="jobqueue", port=free_port(), upstream_port=free_port(),
                       workers=2, model_path=str(tmp_path))  # fmt: skip
    redis, worker, *_, web = launch.process_plan("t", cfg)
    services = compose.services(env_for("jobqueue", tmp_path), "jobqueue")
    redis_cmd = services["redis"]["command"]
    assert redis_cmd[:2] == ["exec", "--"]
    expected_redis = [a if a != str(cfg.model_port) else "9103" for a in redis.argv]
    assert [a for a in redis_cmd[2:] if a not in ("--dir", "/tmp")] == [
        "redis-server",
        *expected_redis[1:],
    ]
    assert services["jobqueue-worker"]["command"][2:] == ["python", *worker.argv[1:]]
    web_cmd = dockerfile_cmd(REPO / "targets/jobqueue/Dockerfile")
    web_cmd = expanded(web_cmd, {"SERVECAP_WORKERS": "2"}, monkeypatch)
    assert web_cmd[0] == "uvicorn"
    web_argv = list(web.argv)[3:]
    for flag in ("--host", "--port"):
        i = web_argv.index(flag)
        del web_argv[i : i + 2]
    web_cmd = [a for a in web_cmd[1:] if a not in ("--fd", "3")]
    assert web_cmd == web_argv


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
