"""The serving-framework kinds (ray-serve, bentoml, litserve): configs, plans, the shared model
runner, and each framework's real server.

The integration tests launch each kind for real (its framework from `make setup`: Ray Serve and
LitServe in the project venv, BentoML in its own environment) with batching on, in a child
process: answers agree with the model called in-process, concurrent requests share model calls
(the framework's batcher, seen in servecap's counters on its metrics endpoint), malformed
bodies get 4xx, and a Ctrl-C leaves no process and no port behind. Skipped where a framework
is not installed.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest

from loadtests.collectors.prometheus import parse
from targets.common.payload import PayloadError
from targets.common.runner import ModelRunner
from targets.common.settings import ServerSettings
from targets.launch_types import LaunchError
from targets.launchers.base import port_is_free
from targets.protocols import get_protocol
from targets.registry import endpoint_for, get_kind, target_config
from tests.answers import post_status
from tests.fakes import FakeModel
from tests.fuzz_bodies import LIVE_EXAMPLES, MAX_BODY, fuzz_predict
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
FRAMEWORKS = ("ray-serve", "bentoml", "litserve")


# ------------------------------------------------------------------ configs and plans


def test_batching_is_off_by_default_and_knobs_reach_the_server() -> None:
    for kind in FRAMEWORKS:
        assert target_config(kind=kind).max_batch_size == 1  # type: ignore[attr-defined]
    ray = get_kind("ray-serve").process_plan(
        "r", target_config(kind="ray-serve", port=9000, max_batch_size=16, num_replicas=2,
                           batch_wait_timeout_s=0.005))  # fmt: skip
    env = ray[-1].env
    assert env["SERVECAP_RAY_MAX_BATCH_SIZE"] == "16" and env["SERVECAP_RAY_NUM_REPLICAS"] == "2"
    assert env["SERVECAP_RAY_BATCH_WAIT_TIMEOUT_S"] == "0.005"
    assert env["SERVECAP_RAY_ADDRESS"] == "127.0.0.1:9001"
    lit = get_kind("litserve").process_plan(
        "l", target_config(kind="litserve", max_batch_size=8, batch_timeout_s=0.01, workers=2)
    )
    assert {"SERVECAP_LITSERVE_MAX_BATCH_SIZE": "8", "SERVECAP_LITSERVE_BATCH_TIMEOUT_S": "0.01",
            "SERVECAP_LITSERVE_WORKERS": "2"}.items() <= lit[0].env.items()  # fmt: skip
    assert "PROMETHEUS_MULTIPROC_DIR" in lit[0].env
    bento = get_kind("bentoml").process_plan(
        "b", target_config(kind="bentoml", max_batch_size=4, max_latency_ms=50, workers=3)
    )
    assert bento[0].argv[1:5] == ("-m", "bentoml", "serve", "targets.bentoml.service:Classifier")
    assert bento[0].env["SERVECAP_BENTOML_WORKERS"] == "3"
    assert bento[0].env["BENTOML_HOME"] in {str(d) for d in bento[0].fresh_dirs}
    with pytest.raises(ValueError, match="max_batch_size"):
        target_config(kind="bentoml", max_batch_size=0)


def test_ray_starts_a_local_cluster_with_a_fresh_token_or_uses_an_existing_one() -> None:
    kind = get_kind("ray-serve")
    local = target_config(kind="ray-serve", port=9000)
    head, deploy = kind.process_plan("r", local)
    args = " ".join(head.argv)
    for flag in ("start --head --block", "--port 9001", "--metrics-export-port 9002",
                 "--ray-client-server-port 9003", "--include-dashboard false",
                 "--disable-usage-stats"):  # fmt: skip
        assert flag in args
    assert head.ready_port == 9001 and deploy.ready_url == "http://127.0.0.1:9000/healthz"
    first, second = kind.launch_env(local), kind.launch_env(local)
    assert first["RAY_AUTH_MODE"] == "token" and len(first["RAY_AUTH_TOKEN"]) == 64
    assert first["RAY_AUTH_TOKEN"] != second["RAY_AUTH_TOKEN"]  # a fresh token per launch
    assert first["RAY_AUTH_TOKEN"] not in json.dumps([head.env, deploy.env])  # never in a plan
    assert set(kind.ports(local)) == {"port", "ray_port", "metrics_port", "client_port"}
    metrics = kind.metrics(local)
    assert metrics is not None and metrics.url == "http://127.0.0.1:9002/metrics"
    assert metrics.requests == "ray_servecap_inference_requests_total"

    remote = target_config(kind="ray-serve", port=9000, ray_address="10.0.0.5:6379",
                           shutdown_serve=False)  # fmt: skip
    (only,) = kind.process_plan("r", remote)
    assert only.env["SERVECAP_RAY_ADDRESS"] == "10.0.0.5:6379"
    assert only.env["SERVECAP_RAY_SHUTDOWN_SERVE"] == "false"
    assert kind.launch_env(remote) == {} and set(kind.ports(remote)) == {"port"}
    assert kind.metrics(remote) is None  # no metrics_port given: no metrics
    with pytest.raises(ValueError, match="ray_address"):
        target_config(kind="ray-serve", ray_address="no port here")


def test_bentoml_reports_model_time_only_without_batching() -> None:
    kind = get_kind("bentoml")
    plain = kind.metrics(target_config(kind="bentoml"))
    batched = kind.metrics(target_config(kind="bentoml", max_batch_size=8))
    assert plain is not None and batched is not None
    assert plain.model_time == "servecap_model_seconds_sum" and batched.model_time is None
    assert plain.queue_time is None and batched.inferences == plain.inferences


def test_a_missing_framework_is_a_problem_naming_make_setup(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] in ("ray", "litserve")
                        else real(name, *a))  # fmt: skip
    monkeypatch.setattr(sys, "prefix", str(tmp_path))  # no bentoml environment there
    for kind in ("ray-serve", "litserve"):  # pinned in the project venv
        (problem,) = get_kind(kind).problems("t", target_config(kind=kind))
        assert "make setup" in problem, problem
    with pytest.raises(LaunchError, match="make setup"):  # its own environment
        get_kind("bentoml").process_plan("t", target_config(kind="bentoml"))


def test_json_tensor_round_trip() -> None:
    protocol = get_protocol("json-tensor")
    endpoint = endpoint_for(target_config(kind="bentoml", port=9000))
    assert protocol.predict_path(endpoint) == "/v1/predict"
    images = np.arange(2 * 32 * 32 * 3, dtype=np.int64).reshape(2, 32, 32, 3) % 256
    body, headers = protocol.encode(images.astype(np.uint8), "json", endpoint=endpoint)
    assert headers["Content-Type"] == "application/json"
    assert np.array_equal(np.asarray(json.loads(body)["images"]), images)
    assert protocol.classes(b"[[0.1, 0.9], [0.8, 0.2]]", endpoint) == [1, 0]
    assert protocol.classes(b'{"probabilities": [[0.1, 0.9]]}', endpoint) == [1]
    for bad in (b"[0.1, 0.9]", b"not json", b'{"other": 1}'):
        with pytest.raises(ValueError):
            protocol.probabilities(bad, endpoint)
    with pytest.raises(ValueError, match="sends json"):
        protocol.encode(images.astype(np.uint8), "base64", endpoint=endpoint)


# ------------------------------------------------------------------ the shared model runner


class FakeRecorder:
    """Test stand-in for a framework's metrics: what the runner recorded."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.requests: list[tuple[float, float]] = []

    def batch(self, images: int) -> None:
        self.batches.append(images)

    def request(self, queue_s: float, model_s: float) -> None:
        self.requests.append((queue_s, model_s))


def test_runner_runs_requests_as_one_call_and_gives_each_its_scores() -> None:
    model, recorder = FakeModel(), FakeRecorder()
    runner = ModelRunner(ServerSettings(max_batch=4), recorder=recorder, model=model)
    first, second = np.zeros((3, 32, 32, 3), np.float32), np.zeros((2, 32, 32, 3), np.float32)
    arrived = time.monotonic() - 0.05
    scores = runner.run([first, second], [arrived, arrived])
    assert model.calls == 1 and [len(s) for s in scores] == [3, 2]
    assert [int(s.argmax()) for s in scores[1]] == [3, 4]  # rows 3 and 4 of the one call
    assert recorder.batches == [5] and len(recorder.requests) == 2
    assert all(queue_s >= 0.05 for queue_s, _ in recorder.requests)
    runner.run([first])  # a batch whose requests the framework does not tell: not counted
    assert recorder.batches == [5, 3] and len(recorder.requests) == 2
    reply = runner.reply(scores[0])
    assert reply.status == 200 and reply.headers["X-Model-Version"] == "7"
    assert json.loads(reply.body)["classes"] == [0, 1, 2]
    with pytest.raises(PayloadError) as err:
        runner.decode_document({"images": [[1, 2]]})
    assert err.value.status == 422
    with pytest.raises(PayloadError) as err:
        runner.decode_document({"images_b64": ["AA=="] * 5})
    assert err.value.status == 413
    with pytest.raises(PayloadError) as err:
        runner.decode(b"x" * (ServerSettings().max_body_bytes + 1), "application/json")
    assert err.value.status == 413


# ------------------------------------------------------------------ the real servers

BATCHED = {
    "ray-serve": {"max_batch_size": 16, "batch_wait_timeout_s": 0.05},
    "bentoml": {"max_batch_size": 16, "max_latency_ms": 5000},
    "litserve": {"max_batch_size": 16, "batch_timeout_s": 0.05},
}
MALFORMED = (b"{", b"[1, 2]", b'{"images": [[1]]}', b'{"images": "x"}', b'{"pixels": []}',
             b'{"images": [[[[300, 0, 0]]]]}', b"\xff\xd8\xff")  # fmt: skip


def _missing(kind: str) -> str | None:
    """Why the kind's framework cannot run here (not installed), or None."""
    config = target_config(kind=kind, model_path=str(REPO))
    try:
        get_kind(kind).process_plan("probe", config)
    except LaunchError as err:
        return str(err)
    problems = [p for p in get_kind(kind).problems("probe", config) if "make setup" in p]
    return problems[0] if problems else None


def _get(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return parse(resp.read().decode())


def _counted(url: str, name: str, at_least: float, timeout_s: float = 20) -> dict[str, float]:
    """The metrics once ``name`` reached ``at_least`` (Ray exports them every second or so)."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = _get(url)
        if samples.get(name, 0) >= at_least or time.monotonic() > deadline:
            return samples
        time.sleep(0.5)


def _assert_gcs_refuses_strangers(port: int) -> None:
    """The local cluster's GCS (bound to every interface by Ray) answers no caller without the
    launch's token."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.GetAllNodeInfo(gcs_service_pb2.GetAllNodeInfoRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, err.value


def _assert_loopback_only(tree: list[psutil.Process]) -> None:
    """Every socket of the target's processes listens and talks on loopback only."""
    import ipaddress

    procs = {p for top in tree for p in [top, *top.children(recursive=True)]}
    seen = []
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        for c in conns:
            addrs = [c.laddr.ip] + ([c.raddr.ip] if c.raddr else [])
            seen.append(c)
            bad = [a for a in addrs if not ipaddress.ip_address(a.removeprefix("::ffff:"))
                   .is_loopback]  # fmt: skip
            assert not bad, (proc.cmdline()[:3], c)
    assert seen  # the check looked at the cluster's sockets


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("kind", FRAMEWORKS)
def test_real_framework_answers_batches_refuses_and_leaves_nothing_on_ctrl_c(
    kind: str, tiny_model: Path, tmp_path: Path
) -> None:
    missing = _missing(kind)
    if missing:
        pytest.skip(missing)
    from targets.common.model import Predictor

    fields = {"kind": kind, "port": free_port(), "model_path": str(tiny_model),
              "ready_timeout_s": 180, "max_body_bytes": 2 * MAX_BODY, **BATCHED[kind]}  # fmt: skip
    config = target_config(**fields)
    images = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3)).astype(np.uint8)
    expected = Predictor(tiny_model).predict(images).argmax(axis=1).tolist()
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.launch_child", kind, str(tmp_path / "logs"),
         json.dumps(fields)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("READY"), line + child.stdout.read()[-3000:]
        tree = [psutil.Process(int(pid)) for pid in line.split()[1:]]
        endpoint = endpoint_for(config)
        protocol = get_protocol(endpoint.protocol)
        lossless = [e for e in protocol.encodings if e in ("json", "base64")]  # not JPEG
        for encoding in lossless:
            body, headers = protocol.encode(images[:8], encoding, endpoint=endpoint)
            answer = protocol.infer(endpoint, body, headers)
            assert protocol.classes(answer, endpoint) == expected[:8], encoding
        if kind == "ray-serve":
            _assert_gcs_refuses_strangers(config.gcs_port)  # type: ignore[attr-defined]
            _assert_loopback_only(tree)
        url = endpoint.base_url + protocol.predict_path(endpoint)
        statuses = {bad: post_status(url, bad) for bad in MALFORMED}
        assert all(400 <= s < 500 for s in statuses.values()), statuses

        metrics = get_kind(kind).metrics(config)
        assert metrics is not None
        before = _counted(metrics.url, metrics.inferences, 8 * len(lossless))

        def one(i: int) -> list[int]:
            body, headers = protocol.encode(images[i : i + 1], "json", endpoint=endpoint)
            return protocol.classes(protocol.infer(endpoint, body, headers), endpoint)

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            assert [a[0] for a in pool.map(one, range(24))] == expected
        total = before.get(metrics.inferences, 0) + 24
        after = _counted(metrics.url, metrics.inferences, total)
        rows = after[metrics.inferences] - before.get(metrics.inferences, 0)
        calls = after[metrics.executions] - before.get(metrics.executions, 0)
        assert rows == 24 and calls < 24, (rows, calls)  # the framework's batcher at work
        requests = after[metrics.requests] - before.get(metrics.requests, 0)
        assert requests == 24  # each request counted once, batched or not
        # fuzzed through the framework's own HTTP stack: never a 5xx, and it still answers
        path = protocol.predict_path(endpoint)
        assert fuzz_predict(config.port, path) == LIVE_EXAMPLES
        body, headers = protocol.encode(images[:1], "json", endpoint=endpoint)
        assert protocol.classes(protocol.infer(endpoint, body, headers), endpoint) == expected[:1]
    finally:
        child.send_signal(signal.SIGINT)  # Ctrl-C
        child.communicate(timeout=90)
    _, alive = psutil.wait_procs(tree, timeout=15)
    assert not alive, [p.cmdline()[:4] for p in alive]
    assert all(port_is_free(host, port) for host, port in get_kind(kind).ports(config).values())
