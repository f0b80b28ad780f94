"""Docker launcher: real containers of the FastAPI target, real requests, nothing left behind.

The unit tests need no engine. The integration tests (the CI docker stage until the CLI has
``--launcher docker``) are skipped when ``docker info`` fails or the ``servecap/fastapi`` image
has not been built (``servecap images build --offline fastapi``, or
``python -c "from targets.docker import images; images.build(['fastapi'], offline=True)"``).
They use the ``tiny_model`` fixture, copied world-readable because the containers run as
uid 10001 and pytest's temporary folders are private.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loadtests.collectors.docker_stats import DockerStatsSampler
from targets.config import TargetConfig
from targets.kind import Containers
from targets.launch_types import LaunchError
from targets.launchers.docker import MANAGED_LABEL, ContainerOptions, DockerLauncher, clean
from targets.launchers.docker.environment import (
    NO_MODEL_DIR,
    model_mount,
    options_for,
    project_name,
)
from targets.launchers.docker.launcher import layout_of, scales
from targets.registry import get_kind, target_config
from tests.machine import FASTAPI_IMAGE, docker_test, managed_containers
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ no engine needed


def test_options_come_from_the_target_config() -> None:
    assert options_for(target_config(kind="fastapi")) == ContainerOptions()
    cfg = target_config(kind="fastapi", replicas=3, cpus=1.5, cpuset="0-1", gpu=True,
                       image_tag="v2", model_in_image=True)  # fmt: skip
    opts = options_for(cfg)
    assert (opts.replicas, opts.cpus, opts.cpuset, opts.gpu) == (3, 1.5, "0-1", True)
    assert (opts.image_tag, opts.model_in_image, opts.memory) == ("v2", True, None)
    limited = options_for(target_config(kind="fastapi", memory_limit_mb=512))
    assert limited.memory == "512m"  # the existing memory_limit_mb field


def test_model_mount_forms(tmp_path: Path) -> None:
    base = tmp_path / "cifar10_cnn"
    (base / "7").mkdir(parents=True)
    (base / "7" / "saved_model.pb").write_bytes(b"")
    mount = model_mount(target_config(kind="fastapi", model_path=str(base)))
    assert (mount.host_dir, mount.mount) == (base, "/models/cifar10_cnn")
    version = model_mount(target_config(kind="tfserving", model_path=str(base / "7")))
    assert version.mount == "/models/cifar10_cnn/7"  # TF Serving still sees a model base
    for cfg in [
        target_config(kind="fastapi", model_url="https://127.0.0.1:1/m.tgz", model_sha256="a" * 64),
        target_config(kind="fastapi", model_in_image=True),
    ]:
        mount = model_mount(cfg)
        assert (mount.host_dir, mount.mount) == (NO_MODEL_DIR, "/models/none")
    assert NO_MODEL_DIR.is_dir()


def layout(kind: str) -> Containers:
    return layout_of(get_kind(kind), target_config(kind=kind), [])


def test_scales_and_replica_rules() -> None:
    def scaled(kind: str, **kw: object) -> dict[str, int]:
        return scales(get_kind(kind), target_config(kind=kind, **kw), layout(kind))

    assert scaled("fastapi") == {}
    assert scaled("fastapi", replicas=2) == {"fastapi": 2}
    assert scaled("django-to-flask", replicas=3) == {"flask": 3}
    assert scaled("jobqueue", queue_workers=4) == {"jobqueue-worker": 4}
    assert layout("tfserving") == Containers(("tfserving",), scalable=False)
    custom = target_config(kind="fastapi", compose_service="mine")
    assert layout_of(get_kind("fastapi"), custom, ["a", "b"]) == Containers(("a", "b"))
    with pytest.raises(LaunchError, match="no service in profile 'mine'"):
        layout_of(get_kind("fastapi"), custom, [])
    launcher = DockerLauncher()
    cfg = target_config(kind="tfserving", replicas=2)
    with pytest.raises(LaunchError, match="cannot run replicas"):
        launcher._check("t", cfg, ContainerOptions(replicas=2), layout("tfserving"),
                        {"tfserving": {"image": "x"}}, client=None)  # fmt: skip


def test_project_names_are_compose_safe() -> None:
    assert project_name("My Target_1", "ab12cd34") == "servecap-my-target-1-ab12cd34"


# ------------------------------------------------------------------ a real engine


needs_engine = docker_test(FASTAPI_IMAGE)


@pytest.fixture(scope="module")
def model_dir(readable_model: Path) -> Path:
    return readable_model


def fastapi_config(model_dir: Path, **kw: object) -> TargetConfig:
    return target_config(kind="fastapi", port=free_port(), model_path=str(model_dir),
                        ready_timeout_s=180, **kw)  # type: ignore[arg-type]  # fmt: skip


def predict(port: int, n_images: int = 4) -> tuple[int, dict[str, object]]:
    import http.client

    body = json.dumps({"images": np.zeros((n_images, 32, 32, 3), dtype=int).tolist()})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # a new connection
    try:
        conn.request("POST", "/v1/predict", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def keepalive_median_ms(port: int, n: int = 30) -> float:
    import http.client

    body = json.dumps({"images": np.zeros((1, 32, 32, 3), dtype=int).tolist()})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            conn.request("POST", "/v1/predict", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        conn.close()
    return float(np.median(times))


@needs_engine
def test_fastapi_container_serves_and_is_sampled_from_docker_api(
    model_dir: Path, tmp_path: Path, no_leftovers: None
) -> None:
    cfg = fastapi_config(model_dir, memory_limit_mb=2048, cpus=1.5)
    launcher = DockerLauncher()
    stats = tmp_path / "resources-docker.csv"
    with launcher.launch("fa", cfg, tmp_path / "logs") as running:
        assert running.launcher == "docker" and len(running.containers) == 1
        assert 0 < running.time_to_ready_s < cfg.ready_timeout_s
        assert running.base_url == f"http://127.0.0.1:{cfg.port}"
        with DockerStatsSampler(stats, interval_s=1.0) as sampler:
            sampler.watch("target", running.containers)
            t_end = time.monotonic() + 5
            statuses = []
            while time.monotonic() < t_end:
                status, answer = predict(cfg.port)
                statuses.append(status)
            assert 50 < sampler.last_mem_mb["target"] < 2048
        assert running.health() is None
        assert set(statuses) == {200}
        # Keep-alive latency: no Nagle/delayed-ACK stall (~40 ms) on the container's sockets.
        assert keepalive_median_ms(cfg.port) < 25 and len(answer["classes"]) == 4  # type: ignore[arg-type]
        import docker

        attrs = docker.from_env().containers.get(running.containers[0]).attrs
        host = attrs["HostConfig"]
        assert host["NetworkMode"] == "host" and host["ReadonlyRootfs"] and host["Init"]
        assert host["NanoCpus"] == 1_500_000_000 and host["Memory"] == 2 * 1024**3
        assert attrs["Config"]["User"] == "10001:10001"
        # Docker's periodic check would run inside the measured container: not within a run.
        assert attrs["Config"]["Healthcheck"]["Interval"] == 24 * 3600 * 10**9
        assert attrs["Config"]["Labels"]["io.servecap.target"] == "fa"
    rows = pd.read_csv(stats)
    assert len(rows) >= 3
    assert (rows["source"] == "docker").all() and (rows["role"] == "target").all()
    assert rows["cpu_pct"].notna().all() and rows["mem_mb"].min() > 50  # TF + the model
    assert rows["cpu_pct"].max() > 5  # it was predicting
    assert (tmp_path / "logs" / "container.env").is_file()
    assert any(p.name.endswith("_fastapi_1.log") for p in (tmp_path / "logs").iterdir())


@needs_engine
def test_two_replicas_share_the_port(model_dir: Path, tmp_path: Path, no_leftovers: None) -> None:
    import docker

    cfg = fastapi_config(model_dir, replicas=2, cpus=0.5, cpu_period_ms=10)
    stats = tmp_path / "resources-docker.csv"
    with DockerLauncher().launch("rep", cfg, tmp_path / "logs") as rt:
        assert len(rt.containers) == 2
        for cid in rt.containers:  # each replica's quota over its own 10 ms period
            host = docker.from_env().containers.get(cid).attrs["HostConfig"]
            assert (host["NanoCpus"], host["CpuPeriod"], host["CpuQuota"]) == (0, 10_000, 5_000)
        with DockerStatsSampler(stats, interval_s=1.0) as sampler:
            sampler.watch("target", rt.containers)
            t_end = time.monotonic() + 6
            while time.monotonic() < t_end:
                assert predict(cfg.port, 16)[0] == 200
    rows = pd.read_csv(stats)
    names = sorted(set(rows["name"]))
    assert len(names) == 2 and names[0].endswith("_fastapi_1") and names[1].endswith("_fastapi_2")
    # New connection per request: the kernel spreads them over both replicas' sockets.
    busy = rows.groupby("name")["cpu_pct"].max()
    assert (busy > 5).all(), busy.to_dict()


@needs_engine
def test_a_plans_compose_override_starts_the_planned_replicas_with_their_limits(
    model_dir: Path, tmp_path: Path, no_leftovers: None
) -> None:
    import docker
    import yaml

    from targets.deploy import Sizing, compose_override

    cfg = fastapi_config(model_dir)  # one replica, no limits in the scenario
    sizing = Sizing(replicas=2, cpu_cores=0.35, mem_mb=400.0, headroom=0.3, capacity_rps=50.0,
                    peak_rps=60.0)  # fmt: skip
    override = tmp_path / "plan.yml"
    override.write_text(yaml.safe_dump(compose_override("plan", cfg, sizing)))
    with DockerLauncher(overrides=(override,)).launch("plan", cfg, tmp_path / "logs") as rt:
        assert len(rt.containers) == 2
        client = docker.from_env()
        for cid in rt.containers:
            host = client.containers.get(cid).attrs["HostConfig"]
            assert host["NanoCpus"] == 500_000_000  # 0.35 / (1 - 0.3)
            assert host["Memory"] == 572 * 2**20  # ceil(400 / 0.7) MB
        assert predict(cfg.port, 4)[0] == 200


@needs_engine
def test_keyboard_interrupt_inside_the_run_tears_down(
    model_dir: Path, tmp_path: Path, no_leftovers: None
) -> None:
    cfg = fastapi_config(model_dir)
    with (
        pytest.raises(KeyboardInterrupt),
        DockerLauncher().launch("kbd", cfg, tmp_path / "logs") as running,
    ):
        assert managed_containers() and running.containers
        assert running.health() is None
        import docker

        docker.from_env().containers.get(running.containers[0]).kill()
        problem = running.health()
        assert problem is not None and "exit code" in problem  # the watchdog's message
        raise KeyboardInterrupt
    assert not managed_containers()


@needs_engine
def test_killed_harness_leaves_containers_that_clean_removes(
    model_dir: Path, tmp_path: Path, no_leftovers: None
) -> None:
    cfg = fastapi_config(model_dir)
    script = textwrap.dedent(f"""
        import json, sys, time
        from pathlib import Path
        from targets.launchers.docker import DockerLauncher
        from targets.registry import target_config
        cfg = target_config(**json.loads({cfg.model_dump_json()!r}))
        with DockerLauncher().launch("killed", cfg, Path({str(tmp_path / "logs")!r})):
            print("READY", flush=True)
            time.sleep(300)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=REPO, start_new_session=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        os.killpg(proc.pid, signal.SIGKILL)  # no finally, no teardown
        proc.wait(timeout=10)
        assert len(managed_containers()) == 1
        # The next launch on that port says what to do.
        with pytest.raises(LaunchError, match="servecap clean"), \
                DockerLauncher().launch("again", cfg, tmp_path / "logs2"):  # fmt: skip
            pass
        removed = clean()
        assert len(removed) == 1 and "killed" in removed[0]
        assert not managed_containers()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@needs_engine
def test_failures_are_named_and_leave_nothing(
    model_dir: Path, tmp_path: Path, no_leftovers: None
) -> None:
    # TF Serving: the official image cannot be pulled here; the message says so plainly, at
    # launch: a run's pre-flight lets it through, so the run goes on with the other targets.
    tfs = target_config(kind="tfserving", port=free_port(), model_path=str(model_dir))
    with pytest.raises(LaunchError, match="all_interfaces: true"):  # it cannot bind loopback
        DockerLauncher().preflight("tfs", tfs)
    tfs = tfs.model_copy(update={"all_interfaces": True})
    DockerLauncher().preflight("tfs", tfs)
    # A servecap image that was never built: refused before anything starts.
    with pytest.raises(LaunchError, match="servecap images build"):
        DockerLauncher().preflight(
            "x",
            target_config(
                kind="fastapi", port=tfs.port, model_path=tfs.model_path, image_tag="never-built"
            ),
        )
    with pytest.raises(LaunchError) as err, DockerLauncher().launch("tfs", tfs, tmp_path / "a"):
        pass
    if "could not be pulled" not in str(err.value):
        assert "not ready" in str(err.value) or "exited" in str(err.value)  # a registry host
    # A model the container user cannot read.
    private = Path(tempfile.mkdtemp(prefix="servecap-private-"))
    try:
        shutil.copytree(model_dir, private / "m")
        private.chmod(0o700)
        cfg = fastapi_config(private / "m")
        with pytest.raises(LaunchError, match="uid 10001"), \
                DockerLauncher().launch("priv", cfg, tmp_path / "b"):  # fmt: skip
            pass
    finally:
        shutil.rmtree(private, ignore_errors=True)
    # A server that dies at start: the container's own log is in the message.
    broken = fastapi_config(model_dir, env={"SERVECAP_MAX_BATCH": "not-a-number"})
    with pytest.raises(LaunchError, match="exited"), \
            DockerLauncher().launch("broken", broken, tmp_path / "c"):  # fmt: skip
        pass


@needs_engine
def test_model_in_image_variant(model_dir: Path, tmp_path: Path, no_leftovers: None) -> None:
    from targets.docker.images import build_model_images

    try:
        subprocess.run(["docker", "tag", FASTAPI_IMAGE, "servecap/fastapi:citest"], check=True,
                       timeout=30)  # fmt: skip
        refs = build_model_images(["fastapi"], model_dir, tag="citest", echo=lambda line: None)
        assert refs == ["servecap/fastapi:citest-model"]
        # No model on the host side at all: it is in the image.
        cfg = fastapi_config(tmp_path / "nowhere", model_in_image=True, image_tag="citest")
        with DockerLauncher().launch("mii", cfg, tmp_path / "logs") as running:
            assert predict(cfg.port)[0] == 200
            assert len(running.containers) == 1
    finally:
        subprocess.run(["docker", "rmi", "-f", "servecap/fastapi:citest-model",
                        "servecap/fastapi:citest"], capture_output=True, timeout=60)  # fmt: skip


@needs_engine
@pytest.mark.parametrize("fault", ["container killed", "memory limit"])
def test_run_with_a_docker_fault_names_target_and_stage(
    fault: str, model_dir: Path, cifar_dir: Path, tmp_path: Path, no_leftovers: None
) -> None:
    import threading

    import docker as docker_sdk

    from loadtests.orchestrator import RunOptions, run
    from loadtests.spec import parse_scenarios

    target: dict[str, object] = {"kind": "fastapi", "port": free_port(),
                                 "model_path": str(model_dir), "ready_timeout_s": 180}  # fmt: skip
    if fault == "memory limit":
        target["memory_limit_mb"] = 100  # TensorFlow alone needs more: the kernel OOM-kills it
    stages = [{"users": 2, "duration_s": 5}] * 3
    spec = parse_scenarios({
        "targets": {"dk": target},
        "scenarios": {"f": {"targets": ["dk"], "load": {"warmup_requests": 2, "settle_s": 1,
                                                        "stages": stages}}},
    })  # fmt: skip
    out = tmp_path / "out"

    def kill_in_stage_2() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (out / "dk" / "timeline.json").exists():
            time.sleep(0.2)
        time.sleep(6)  # into stage 2
        for c in docker_sdk.from_env().containers.list(filters={"label": MANAGED_LABEL}):
            c.kill()

    if fault == "container killed":
        threading.Thread(target=kill_in_stage_2, daemon=True).start()
    outcome = run(RunOptions("f", spec, tmp_path / "s.yaml", out, launcher="docker",
                             data_dir=str(cifar_dir)), echo=lambda _: None)  # fmt: skip
    entry = json.loads((out / "summary.json").read_text())["runs"][0]
    assert not outcome.ok and entry["status"] == "failed"
    assert "target 'dk'" in entry["error"] or "'dk'" in entry["error"]
    if fault == "container killed":
        assert "during stage 2" in entry["error"]
        assert entry["stages"][0]["requests"] > 0  # stage 1's data kept
    else:
        assert "memory" in entry["error"].lower() or "oom" in entry["error"].lower()
    assert not managed_containers()


@needs_engine
def test_a_replica_killed_by_a_fault_is_started_again_and_the_run_goes_on(
    model_dir: Path, cifar_dir: Path, tmp_path: Path, no_leftovers: None
) -> None:
    from loadtests.orchestrator import RunOptions, run
    from loadtests.spec import parse_scenarios

    target = {"kind": "fastapi", "port": free_port(), "model_path": str(model_dir),
              "ready_timeout_s": 180, "replicas": 2}  # fmt: skip
    load = {
        "mode": "rate",
        "warmup_requests": 4,
        "settle_s": 1,
        "stages": [{"rps": 20, "duration_s": 6}, {"rps": 20, "duration_s": 12}],
    }
    faults = [
        {"action": "kill", "part": "replica", "index": 2, "stage": 2, "offset_s": 2},
        {"action": "stop", "part": "replica", "index": 1, "at_s": 14, "duration_s": 1},
    ]
    spec = parse_scenarios({"targets": {"dk": target},
                            "scenarios": {"f": {"targets": ["dk"], "load": load,
                                                "faults": faults}}})  # fmt: skip
    out = tmp_path / "out"
    outcome = run(RunOptions("f", spec, tmp_path / "s.yaml", out, launcher="docker",
                             data_dir=str(cifar_dir)), echo=lambda _: None)  # fmt: skip
    assert outcome.ok, outcome.failures
    (entry,) = json.loads((out / "summary.json").read_text())["runs"]
    kill, stop = entry["faults"]["injected"]
    assert kill["error"] is None and kill["what"].endswith("_fastapi_2")
    assert stop["error"] is None and stop["what"].endswith("_fastapi_1")
    assert entry["restarts"] == [kill["what"]]  # started again, as a restart policy would
    assert kill["impact"]["baseline_goodput_rps"] > 0
