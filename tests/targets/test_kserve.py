"""The kserve kind: its configuration, and KServe's real model server.

The integration test starts kserve 0.21.0's ModelServer in its own environment (``make setup``:
targets/kserve/setup.sh) with the process launcher, and is skipped where that is missing.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest

from loadtests.collectors.prometheus import parse
from targets.common.framework import framework_python
from targets.protocols import get_protocol
from targets.registry import get_kind, target_config
from tests.answers import post_status
from tests.fuzz_bodies import LIVE_EXAMPLES, assert_v2_still_serving, fuzz_v2
from tests.ports import free_port
from tests.procs import launched_tree

KIND = get_kind("kserve")


def test_endpoints_ports_plan_and_metrics() -> None:
    config = target_config(kind="kserve", port=9300, workers=2)
    endpoint = KIND.endpoint(config)
    assert (endpoint.protocol, endpoint.grpc_target) == ("v2-rest", "127.0.0.1:9301")
    assert KIND.endpoint(config.model_copy(update={"api": "grpc"})).protocol == "v2-grpc"
    assert {f: p for f, (_, p) in KIND.ports(config).items()} == {"port": 9300, "grpc_port": 9301}
    assert KIND.metrics(config) is None  # each worker would answer with its own counters
    one = KIND.metrics(target_config(kind="kserve", port=9300))
    assert one is not None and one.url == "http://127.0.0.1:9300/metrics"
    assert (one.requests, one.model_time) == (
        "request_predict_seconds_count", "request_predict_seconds_sum")  # fmt: skip


needs_kserve = pytest.mark.skipif(
    not framework_python("kserve").exists(),
    reason="KServe's environment is missing (make setup: targets/kserve/setup.sh)",
)


def ours(port: int) -> list[psutil.Process]:
    return launched_tree("--http_port", port)


def listening(pid: int) -> set[str]:
    return {c.laddr.ip for c in psutil.Process(pid).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN}  # fmt: skip


@pytest.mark.integration
@needs_kserve
def test_real_kserve_answers_right_on_loopback_refuses_control_and_leaves_nothing(
    tiny_model: Path, tmp_path: Path
) -> None:
    from targets.common.model import Predictor
    from targets.launchers.process import ProcessLauncher

    port = free_port(2)
    config = target_config(kind="kserve", port=port, model_path=str(tiny_model),
                           max_body_bytes=1_000_000)  # fmt: skip
    images = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3)).astype(np.uint8)
    expected = Predictor(tiny_model).predict(images).argmax(axis=1).tolist()
    metrics = KIND.metrics(config)
    assert metrics is not None
    launch = ProcessLauncher(stop_grace_s=10).launch("ks", config, tmp_path / "logs")
    # Ctrl-C in the harness (KeyboardInterrupt inside the launch): the launch still ends
    with pytest.raises(KeyboardInterrupt), launch as target:
        (server,) = [p for p in ours(port) if "targets.kserve.launch" in " ".join(p.cmdline())]
        # KServe binds 0.0.0.0 and [::] by default: here HTTP and gRPC are on loopback only
        assert listening(server.pid) <= {"127.0.0.1", "::ffff:127.0.0.1"}
        before = parse(urllib.request.urlopen(metrics.url, timeout=5).read().decode())
        for api in ("rest", "grpc"):
            endpoint = KIND.endpoint(config.model_copy(update={"api": api}))
            protocol = get_protocol(endpoint.protocol)
            for encoding in ("json", "binary"):
                body, headers = protocol.encode(images, encoding, endpoint=endpoint)
                answer = protocol.infer(endpoint, body, headers)
                assert protocol.classes(answer, endpoint) == expected, (api, encoding)
        after = parse(urllib.request.urlopen(metrics.url, timeout=5).read().decode())
        assert after[metrics.requests] - before.get(metrics.requests, 0) == 4
        assert after[metrics.inferences] - before.get(metrics.inferences, 0) == 32
        infer = f"{target.base_url}/v2/models/cifar10_cnn/infer"
        assert post_status(infer, b'{"inputs": [{"name": "images"}]}') == 422
        wrong = {"inputs": [{"name": "images", "shape": [1, 28, 28, 1],
                             "datatype": "FP32", "data": [0] * 784}]}  # fmt: skip
        assert post_status(infer, json.dumps(wrong).encode()) == 400
        assert post_status(infer, b"x" * 1_000_001) == 413
        repository = f"{target.base_url}/v2/repository/models/cifar10_cnn"
        assert post_status(f"{repository}/unload", b"") == 403
        assert post_status(f"{repository}/load", b"") == 403
        # fuzzed: never a 5xx, and it still answers
        assert fuzz_v2(port) == LIVE_EXAMPLES
        assert_v2_still_serving(port)
        raise KeyboardInterrupt
    deadline = time.monotonic() + 15
    while ours(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not ours(port), "KServe's model server left running"
