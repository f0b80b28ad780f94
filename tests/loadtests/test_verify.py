"""`servecap verify`: agreement with the in-process model, and failures reported per target."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest

from loadtests.spec import parse_scenarios
from loadtests.verify import Inputs, answered_classes, compare, format_verdict, verify
from targets.common.dataset import Split
from targets.registry import get_kind, target_config
from tests.fakes import reply, serving
from tests.ports import free_port


def test_compare_counts_agreement_and_accuracy() -> None:
    split = Split("test", np.zeros((4, 32, 32, 3), np.uint8), np.array([0, 1, 2, 3]), ("",) * 4)
    verdict = compare("t", split, reference=np.array([0, 1, 2, 9]), answered=[0, 1, 5, 9])
    assert verdict.agreement == 0.75 and verdict.accuracy == 0.5
    assert verdict.mismatches == [2] and not verdict.ok
    assert "first mismatches at images [2]" in format_verdict(verdict)


@pytest.mark.integration
@pytest.mark.parametrize("encoding", ["json", "jpeg"])
def test_fastapi_agrees_with_in_process_model(
    tiny_model: Path, cifar_dir: Path, tmp_path: Path, encoding: str
) -> None:
    spec = parse_scenarios(
        {
            "targets": {
                "api": {"kind": "fastapi", "port": free_port(), "model_path": str(tiny_model)},
                "tfs": {"kind": "tfserving", "port": free_port(), "model_path": str(tiny_model)},
            },
            "scenarios": {"s": {"targets": ["api"], "load": {"stages": [{"users": 1,
                                                                          "duration_s": 5}]}}},
        }
    )  # fmt: skip
    lines: list[str] = []
    verdicts = verify(spec, ["api", "tfs"], str(cifar_dir), images=120, batch=50,
                      encoding=encoding, logs_root=tmp_path, echo=lines.append)  # fmt: skip
    api, tfs = verdicts
    assert api.ok and api.images == 120 and api.agreement == 1.0
    assert api.accuracy is not None and 0 <= api.accuracy <= 1
    assert not tfs.ok and tfs.error is not None and "--launcher docker" in tfs.error
    assert any("agreement 100.00% on 120 images" in line for line in lines)


class FakeTritonNoBatch(BaseHTTPRequestHandler):
    """Test stand-in for Triton with ``max_batch_size: 1``: a v2 JSON request of more than
    one image is refused as Triton refuses it; one image is answered with class = the number of
    requests answered before it, mod 10."""

    batches: list[int] = []

    def do_POST(self) -> None:
        doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        (tensor,) = doc["inputs"]
        n = tensor["shape"][0]
        if n > 1:
            reply(self, 400, b'{"error": "inference request batch-size must be <= 1"}')
            return
        scores = np.zeros((n, 10))
        scores[0, len(self.batches) % 10] = 1.0
        self.batches.append(n)
        outputs = [{"name": "probabilities", "shape": [n, 10], "datatype": "FP32",
                    "data": scores.ravel().tolist()}]  # fmt: skip
        reply(self, 200, json.dumps({"outputs": outputs}).encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def nobatch_url() -> Iterator[str]:
    FakeTritonNoBatch.batches = []
    with serving(FakeTritonNoBatch) as url:
        yield url


def test_verify_sends_a_target_no_more_images_a_request_than_it_takes(nobatch_url: str) -> None:
    config = target_config(kind="triton", max_batch_size=1, max_queue_delay_us=0)
    endpoint = get_kind("triton").endpoint(config)  # one source: the target's max_batch_size
    assert endpoint.max_images == 1
    endpoint = endpoint.model_copy(update={"base_url": nobatch_url})
    images = np.zeros((7, 32, 32, 3), np.uint8)
    given = Inputs(Split("test", images, np.arange(7), ("",) * 7), images, None)
    assert answered_classes(config, endpoint, given, "json", batch=50) == list(range(7))
    assert FakeTritonNoBatch.batches == [1] * 7
    batching = get_kind("triton").endpoint(target_config(kind="triton", max_batch_size=64))
    assert batching.max_images == 64


def test_a_load_plan_larger_than_the_target_takes_is_refused(tiny_model: Path) -> None:
    from loadtests.orchestrator import load_config_for

    spec = parse_scenarios({
        "targets": {"t": {"kind": "triton", "max_batch_size": 1, "model_path": str(tiny_model)}},
        "scenarios": {"s": {"targets": ["t"], "load": {
            "images_per_request": 4, "stages": [{"users": 1, "duration_s": 5}]}}},
    })  # fmt: skip
    with pytest.raises(ValueError, match="takes at most 1 image"):
        load_config_for("t", spec.targets["t"], spec.scenarios["s"], None, Path("."))
