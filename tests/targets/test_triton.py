"""The triton kind: its configuration, its repository, and the real tritonserver.

The integration tests start the real ``tritonserver`` of the nvidia-pytriton wheel with the
process launcher (``make setup`` installs it, targets/triton/setup.sh) and are skipped where
it or its backend environment is missing.
"""

from __future__ import annotations

import concurrent.futures
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest

from loadtests.collectors.prometheus import parse
from targets.protocols import get_protocol
from targets.registry import get_kind, target_config
from targets.triton.repository import ModelSettings, config_pbtxt
from tests.machine import TRITON_IMAGE, docker_test, triton_missing
from tests.ports import free_port

KIND = get_kind("triton")


def test_knobs_are_validated_and_written_to_the_model_configuration(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="preferred_batch_sizes"):
        target_config(kind="triton", max_batch_size=8, preferred_batch_sizes=[4, 16])
    text = config_pbtxt(ModelSettings("m", tmp_path, 16, 500, (4, 8), 2, tmp_path / "env"))
    assert 'backend: "python"' in text and "max_batch_size: 16" in text
    assert "max_queue_delay_microseconds: 500" in text
    assert "preferred_batch_size: [ 4, 8 ]" in text
    assert "kind: KIND_CPU count: 2" in text
    assert f'"EXECUTION_ENV_PATH" value: {{ string_value: "{tmp_path / "env"}" }}' in text


def test_endpoints_ports_and_plan() -> None:
    config = target_config(kind="triton", port=9100, api="grpc", model_name="net")
    endpoint = KIND.endpoint(config)
    assert (endpoint.protocol, endpoint.grpc_target, endpoint.model_name) == (
        "v2-grpc", "127.0.0.1:9101", "net")  # fmt: skip
    assert {f: p for f, (_, p) in KIND.ports(config).items()} == {
        "port": 9100, "grpc_port": 9101, "metrics_port": 9102}  # fmt: skip
    assert KIND.endpoint(target_config(kind="triton")).protocol == "v2-rest"


SKIP = triton_missing()
needs_triton = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


def ours(port: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if ("tritonserver" in cmd and f"--http-port={port}" in cmd) or (
            "triton_python_backend_stub" in cmd and "servecap" in cmd
        ):
            found.append(proc)
    return found


@pytest.mark.integration
@needs_triton
def test_real_triton_batches_answers_right_and_leaves_nothing(
    tiny_model: Path, tmp_path: Path
) -> None:
    from targets.common.model import Predictor
    from targets.launchers.process import ProcessLauncher

    port = free_port()
    config = target_config(kind="triton", port=port, grpc_port=free_port(),
                           metrics_port=free_port(), model_path=str(tiny_model),
                           max_batch_size=16, max_queue_delay_us=5000,
                           ready_timeout_s=120)  # fmt: skip
    images = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3)).astype(np.uint8)
    expected = Predictor(tiny_model).predict(images).argmax(axis=1).tolist()
    metrics = KIND.metrics(config)
    assert metrics is not None
    with ProcessLauncher().launch("tri", config, tmp_path / "logs") as running:
        assert ours(port)
        for api in ("rest", "grpc"):
            endpoint = KIND.endpoint(config.model_copy(update={"api": api}))
            protocol = get_protocol(endpoint.protocol)
            for encoding in ("json", "binary"):
                body, headers = protocol.encode(images[:8], encoding, endpoint=endpoint)
                answer = protocol.infer(endpoint, body, headers)
                assert protocol.classes(answer, endpoint) == expected[:8], (api, encoding)
        # a malformed request is refused by Triton itself, never a 5xx
        url = f"{running.base_url}/v2/models/cifar10_cnn/infer"
        bad = urllib.request.Request(url, b'{"inputs": [{"name": "images"}]}', method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=10)
        assert 400 <= err.value.code < 500
        # concurrent single-image requests: the dynamic batcher puts several in one call
        rest = KIND.endpoint(config)
        v2 = get_protocol("v2-rest")
        before = parse(urllib.request.urlopen(metrics.url, timeout=5).read().decode())

        def one(i: int) -> list[int]:
            body, headers = v2.encode(images[i : i + 1], "binary", endpoint=rest)
            return v2.classes(v2.infer(rest, body, headers), rest)

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(one, range(24)))
        assert [a[0] for a in answers] == expected
        after = parse(urllib.request.urlopen(metrics.url, timeout=5).read().decode())
        rows = after[metrics.inferences] - before[metrics.inferences]
        calls = after[metrics.executions] - before[metrics.executions]
        assert rows == 24 and calls < 24  # mean batch size above 1
    deadline = time.monotonic() + 15
    while ours(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not ours(port), "tritonserver or its backend stubs left running"


@docker_test(TRITON_IMAGE)
def test_triton_container_serves_the_model_and_is_removed(
    readable_model: Path, tiny_model: Path, tmp_path: Path
) -> None:
    from targets.common.model import Predictor
    from targets.launchers.docker import DockerLauncher, docker_client
    from targets.launchers.docker.engine import managed_containers

    config = target_config(kind="triton", port=free_port(), grpc_port=free_port(),
                           metrics_port=free_port(), model_path=str(readable_model),
                           ready_timeout_s=180)  # fmt: skip
    images = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3)).astype(np.uint8)
    expected = Predictor(tiny_model).predict(images).argmax(axis=1).tolist()
    with DockerLauncher().launch("tri-docker", config, tmp_path / "logs") as running:
        assert len(running.containers) == 1
        for api in ("rest", "grpc"):
            endpoint = KIND.endpoint(config.model_copy(update={"api": api}))
            protocol = get_protocol(endpoint.protocol)
            body, headers = protocol.encode(images, "binary", endpoint=endpoint)
            assert protocol.classes(protocol.infer(endpoint, body, headers), endpoint) == expected
        metrics = KIND.metrics(config)
        assert metrics is not None
        text = urllib.request.urlopen(metrics.url, timeout=5).read().decode()
        assert parse(text)[metrics.inferences] >= 16
    assert not [c for c in managed_containers(docker_client())
                if c.labels.get("io.servecap.target") == "tri-docker"]  # fmt: skip
