"""The TF Serving Locust users, run by real Locust against fake TF Serving endpoints.

``FakeTFServingRest`` and ``FakeTFServingGrpc`` stand in for TensorFlow Serving (which cannot
run on this host): they accept only requests in the documented formats and answer in them, so
these tests pin down the users' requests, answer parsing and recording.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis.load import read_requests
from loadtests.generator import start_locust, warm_up
from loadtests.runconfig import LoadRunConfig
from loadtests.spec import LoadPlan, Stage
from targets.launchers.process import stop_process_group
from targets.protocols import Endpoint
from tests.fakes import serving_grpc
from tests.ports import free_port

pytestmark = pytest.mark.integration


class FakeTFServingRest(BaseHTTPRequestHandler):
    """Answers POST /v1/models/cifar10_cnn:predict in TF Serving's row format, 400 otherwise."""

    seen: list[int] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        try:
            assert self.path == "/v1/models/cifar10_cnn:predict"
            doc = json.loads(body)
            assert doc["signature_name"] == "serving_default"
            images = np.asarray(doc["instances"], dtype=np.float32)
            assert images.shape[1:] == (32, 32, 3)
        except (AssertionError, KeyError, ValueError) as err:
            self._answer(400, {"error": f"bad request: {err!r}"})
            return
        self.seen.append(len(images))
        self._answer(200, {"predictions": np.full((len(images), 10), 0.1).tolist()})

    def _answer(self, status: int, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def rest_server() -> Iterator[int]:
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), FakeTFServingRest)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield port
    server.shutdown()
    server.server_close()


@pytest.fixture
def grpc_server() -> Iterator[int]:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    class FakeTFServingGrpc(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
        def Predict(self, request: Any, context: Any) -> Any:
            if request.model_spec.name != "cifar10_cnn" or "images" not in request.inputs:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad request")
            images = tf.make_ndarray(request.inputs["images"])
            answer = predict_pb2.PredictResponse()
            answer.outputs["probabilities"].CopyFrom(
                tf.make_tensor_proto(np.full((len(images), 10), 0.1, dtype=np.float32))
            )
            return answer

    add = functools.partial(prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server,
                            FakeTFServingGrpc())  # fmt: skip
    with serving_grpc(add) as port:
        yield port


def run_locust(config: LoadRunConfig, tmp_path: Path) -> pd.DataFrame:
    from loadtests.bodies import build_bodies

    path = tmp_path / "load_config.json"
    config.write(path)
    bodies, ctype = build_bodies(config)
    assert warm_up(config, bodies[0], ctype, 2) > 0
    proc = start_locust(path, config, tmp_path)
    try:
        proc.wait(timeout=60)
    finally:
        stop_process_group(proc)
    return read_requests(tmp_path)


def plan() -> LoadPlan:
    return LoadPlan(stages=(Stage(users=2, duration_s=3),), image_pool=16,
                    images_per_request=2, warmup_requests=1, settle_s=0.5)  # fmt: skip


def test_rest_user(rest_server: int, cifar_dir: Path, tmp_path: Path) -> None:
    endpoint = Endpoint(protocol="tfserving-rest", base_url=f"http://127.0.0.1:{rest_server}",
                        model_name="cifar10_cnn")  # fmt: skip
    cfg = LoadRunConfig(target="tfs", endpoint=endpoint, plan=plan(), data_dir=str(cifar_dir),
                        out_dir=str(tmp_path))  # fmt: skip
    records = run_locust(cfg, tmp_path)
    assert len(records) > 10
    assert (records["outcome"] == "ok").all(), records["error"].unique()
    assert set(FakeTFServingRest.seen) == {2}


def test_grpc_user(grpc_server: int, cifar_dir: Path, tmp_path: Path) -> None:
    endpoint = Endpoint(
        protocol="tfserving-grpc",
        base_url="http://127.0.0.1:1",
        grpc_target=f"127.0.0.1:{grpc_server}",
        model_name="cifar10_cnn",
    )
    cfg = LoadRunConfig(target="tfs", endpoint=endpoint, plan=plan(), data_dir=str(cifar_dir),
                        out_dir=str(tmp_path))  # fmt: skip
    start = time.time()
    records = run_locust(cfg, tmp_path)
    assert len(records) > 10
    assert (records["outcome"] == "ok").all(), records["error"].unique()
    assert (records["ts"] >= start).all() and (records["latency_ms"] > 0).all()
    assert (records["bytes"] > 0).all()


def test_grpc_user_open_loop_keeps_to_its_schedule(
    grpc_server: int, cifar_dir: Path, tmp_path: Path
) -> None:
    endpoint = Endpoint(protocol="tfserving-grpc", base_url="http://127.0.0.1:1",
                        grpc_target=f"127.0.0.1:{grpc_server}",
                        model_name="cifar10_cnn")  # fmt: skip
    rate = LoadPlan(mode="rate", stages=(Stage(rps=40, duration_s=3),), image_pool=16,
                    warmup_requests=1, settle_s=0.5)  # fmt: skip
    cfg = LoadRunConfig(target="tfs", endpoint=endpoint, plan=rate, data_dir=str(cifar_dir),
                        out_dir=str(tmp_path))  # fmt: skip
    records = run_locust(cfg, tmp_path)
    assert 100 <= len(records) <= 125  # 40 rps for 3 s, scheduled, not as fast as it answers
    assert (records["outcome"] == "ok").all(), records["error"].unique()
    gaps = records["ts"].sort_values().diff().dropna()
    assert gaps.median() == pytest.approx(1 / 40, rel=0.1)  # evenly spaced sends
