"""The mlserver kind: its configuration, its settings files, and the real MLServer.

The integration test starts MLServer 1.7.1 in its own environment (``make setup``:
targets/mlserver/setup.sh) with the process launcher, and is skipped where that is missing.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest
from pydantic import ValidationError

from loadtests.collectors.prometheus import parse
from targets.common.framework import framework_python
from targets.launch_types import LaunchError
from targets.mlserver.repository import RUNTIME, ServerOptions, write
from targets.protocols import get_protocol
from targets.registry import get_kind, target_config
from tests.answers import post_status
from tests.fuzz_bodies import LIVE_EXAMPLES, assert_v2_still_serving, fuzz_v2
from tests.ports import free_port
from tests.procs import launched_tree

KIND = get_kind("mlserver")


def test_batching_knobs_go_together() -> None:
    assert not target_config(kind="mlserver").batching  # type: ignore[attr-defined]
    on = target_config(kind="mlserver", max_batch_size=8, max_batch_time_s=0.002)
    assert on.batching  # type: ignore[attr-defined]
    for half in ({"max_batch_size": 8}, {"max_batch_time_s": 0.01}):
        with pytest.raises(ValidationError, match="needs both max_batch_size > 1"):
            target_config(kind="mlserver", **half)


def test_endpoints_ports_and_metrics() -> None:
    config = target_config(kind="mlserver", port=9200, model_name="net")
    endpoint = KIND.endpoint(config)
    assert (endpoint.protocol, endpoint.grpc_target, endpoint.model_name) == (
        "v2-rest-json", "127.0.0.1:9201", "net")  # fmt: skip
    with pytest.raises(ValueError, match="sends json, not 'binary'"):
        get_protocol(endpoint.protocol).check_encoding("binary")  # no binary extension
    grpc = KIND.endpoint(config.model_copy(update={"api": "grpc"}))
    assert grpc.protocol == "v2-grpc"
    assert {f: p for f, (_, p) in KIND.ports(config).items()} == {
        "port": 9200, "grpc_port": 9201, "metrics_port": 9202}  # fmt: skip
    metrics = KIND.metrics(config)
    assert metrics is not None and metrics.url == "http://127.0.0.1:9202/metrics"
    assert metrics.model_time == "servecap_model_seconds_sum" and metrics.queue_time is None
    batched = target_config(kind="mlserver", max_batch_size=8, max_batch_time_s=0.002)
    source = KIND.metrics(batched)
    assert source is not None and source.model_time is None  # per request: not known


def test_settings_files_bind_the_host_and_name_the_runtime(tmp_path: Path) -> None:
    options = ServerOptions("net", tmp_path / "model" / "1", "127.0.0.1", 9200, 9201, 9202,
                            parallel_workers=2, max_batch_size=8,
                            max_batch_time_s=0.002)  # fmt: skip
    folder = write(tmp_path / "prefix", options)
    assert folder.stat().st_mode & 0o777 == 0o700
    server = json.loads((folder / "settings.json").read_text())
    assert (server["host"], server["http_port"], server["grpc_port"], server["metrics_port"]) == (
        "127.0.0.1", 9200, 9201, 9202)  # fmt: skip
    assert server["debug"] is False and server["parallel_workers"] == 2
    assert server["metrics_dir"].startswith(str(folder))
    model = json.loads((folder / "net" / "model-settings.json").read_text())
    assert (model["implementation"], model["max_batch_size"], model["max_batch_time"]) == (
        RUNTIME, 8, 0.002)  # fmt: skip
    assert model["parameters"]["uri"] == str(tmp_path / "model" / "1")


def test_a_missing_environment_says_how_to_make_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("targets.common.framework.framework_env", lambda kind: tmp_path / kind)
    with pytest.raises(LaunchError, match=r"make setup.*targets/mlserver/setup.sh"):
        KIND.process_plan("m", target_config(kind="mlserver"))


needs_mlserver = pytest.mark.skipif(
    not framework_python("mlserver").exists(),
    reason="MLServer's environment is missing (make setup: targets/mlserver/setup.sh)",
)


def ours(port: int) -> list[psutil.Process]:
    return launched_tree("--port", port)


@pytest.mark.integration
@needs_mlserver
def test_real_mlserver_batches_answers_right_refuses_control_and_leaves_nothing(
    tiny_model: Path, tmp_path: Path
) -> None:
    from targets.common.model import Predictor
    from targets.launchers.process import ProcessLauncher

    port = free_port(3)
    config = target_config(kind="mlserver", port=port, model_path=str(tiny_model),
                           max_batch_size=16, max_batch_time_s=0.01,
                           max_body_bytes=1_000_000)  # fmt: skip
    images = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3)).astype(np.uint8)
    expected = Predictor(tiny_model).predict(images).argmax(axis=1).tolist()
    metrics = KIND.metrics(config)
    assert metrics is not None
    launch = ProcessLauncher(stop_grace_s=10).launch("mls", config, tmp_path / "logs")
    # Ctrl-C in the harness (KeyboardInterrupt inside the launch): the launch still ends
    with pytest.raises(KeyboardInterrupt), launch as target:
        assert ours(port)
        for api in ("rest", "grpc"):
            endpoint = KIND.endpoint(config.model_copy(update={"api": api}))
            protocol = get_protocol(endpoint.protocol)
            body, headers = protocol.encode(images[:8], "json", endpoint=endpoint)
            answer = protocol.infer(endpoint, body, headers)
            assert protocol.classes(answer, endpoint) == expected[:8], api
        base = target.base_url
        infer = f"{base}/v2/models/cifar10_cnn/infer"
        assert post_status(infer, b'{"inputs": [{"name": "images"}]}') == 422
        assert post_status(infer, b"\xff\xfe not json") == 422
        bad_shape = {"inputs": [{"name": "images", "shape": [1, 32, 32, 3],
                                 "datatype": "FP32", "data": [1, 2]}]}  # fmt: skip
        assert post_status(infer, json.dumps(bad_shape).encode()) == 400
        no_batch_axis = {"inputs": [{"name": "images", "shape": [],
                                     "datatype": "FP32", "data": [1]}]}  # fmt: skip
        # 400, not the 500 MLServer's batcher answers
        assert post_status(infer, json.dumps(no_batch_axis).encode()) == 400
        assert post_status(infer, b"x" * 1_000_001) == 413
        assert post_status(f"{base}/v2/repository/models/cifar10_cnn/unload", b"") == 403
        assert post_status(f"{base}/v2/repository/models/cifar10_cnn/load", b"") == 403
        # concurrent single-image requests: the adaptive batcher merges several
        rest = KIND.endpoint(config)
        v2 = get_protocol(rest.protocol)
        before = parse(urllib.request.urlopen(metrics.url, timeout=5).read().decode())

        def one(i: int) -> int:
            body, headers = v2.encode(images[i : i + 1], "json", endpoint=rest)
            return v2.classes(v2.infer(rest, body, headers), rest)[0]

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            assert list(pool.map(one, range(24))) == expected
        after = parse(urllib.request.urlopen(metrics.url, timeout=5).read().decode())
        assert after[metrics.requests] - before[metrics.requests] == 24
        assert after[metrics.inferences] - before[metrics.inferences] == 24
        assert after[metrics.executions] - before[metrics.executions] < 24
        # fuzzed, its runtime's path and its batcher's: never a 5xx, and it still answers
        assert fuzz_v2(port) == LIVE_EXAMPLES
        assert_v2_still_serving(port)
        raise KeyboardInterrupt
    deadline = time.monotonic() + 15
    while ours(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not ours(port), "MLServer or its workers left running"
