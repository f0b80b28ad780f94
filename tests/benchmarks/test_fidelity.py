"""The fidelity benchmark's parsing of wrk and h2load output (the benchmark runs on demand)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from benchmarks.fidelity import cpu_between, parse_h2load_log, parse_wrk

WRK_OUTPUT = """Running 20s test @ http://127.0.0.1:8101/v1/predict
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.11ms    2.03ms  41.52ms   91.36%
    Req/Sec   661.84     54.02   770.00     72.00%
  Latency Distribution
     50%    5.62ms
     75%    6.53ms
     90%    7.87ms
     99%    1.02s
  13181 requests in 20.01s, 3.11MB read
Requests/sec:    658.74
Transfer/sec:    159.12KB
"""


def test_parse_wrk_units_and_rate() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result["p50_ms"] == pytest.approx(5.62)
    assert result["p99_ms"] == pytest.approx(1020.0)
    assert result["rps"] == pytest.approx(658.74) and result["requests"] == 13181


def test_parse_wrk_refuses_other_output() -> None:
    with pytest.raises(ValueError, match="latency"):
        parse_wrk("Requests/sec: 1\n1 requests in 1s")


def test_parse_h2load_log_leaves_out_the_settle_and_counts_failures(tmp_path: Path) -> None:
    t0 = 1_795_000_000_000_000  # µs since epoch
    rows = [(t0 + i * 10_000, 200, 2000 + i) for i in range(300)]  # 100 rps for 3 s
    rows[250] = (rows[250][0], 503, 500)
    rows[5] = (rows[5][0], 200, 900_000)  # in the left-out first second
    log = tmp_path / "h2load.tsv"
    log.write_text("".join(f"{a}\t{b}\t{c}\n" for a, b, c in rows))
    result = parse_h2load_log(log, settle_s=1.0)
    assert result["errors"] == 1 and result["requests"] == 300
    assert result["p50_ms"] == pytest.approx(2.2, abs=0.01)  # durations 2.1-2.3 ms kept
    assert result["p99_ms"] < 2.4  # the 900 ms outlier was in the settle
    assert result["rps"] == pytest.approx(199 / 1.99, rel=0.01)


def test_cpu_between_uses_the_samples_inside_the_window() -> None:
    cpu = pd.Series({10.0: 1.0, 11.0: 1.5, 12.0: 2.5, 13.0: 4.0})
    assert cpu_between(cpu, 10.5, 13.0) == pytest.approx(2.5)
    assert pd.isna(cpu_between(cpu, 11.2, 11.8))


def test_the_independent_grpc_client_drives_a_v2_server_and_is_read_back(
    tmp_path: Path,
) -> None:
    """benchmarks.threaded_grpc (tritonclient.grpc threads) against a FakeV2Grpc server:
    it sends servecap's request as its own tritonclient request and every answer counts."""
    import functools

    import numpy as np
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    from benchmarks.fidelity import run_threaded_grpc
    from targets.protocols import Endpoint, get_protocol
    from tests.fakes import serving_grpc

    seen: list[tuple[str, tuple[int, ...]]] = []

    class FakeV2Grpc(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
        """ModelInfer: ten scores per image of the request's one FP32 input."""

        def ModelInfer(self, request: Any, context: Any) -> Any:
            (tensor,) = request.inputs
            seen.append((request.model_name, tuple(tensor.shape)))
            answer = service_pb2.ModelInferResponse(model_name=request.model_name)
            out = answer.outputs.add(name="probabilities", datatype="FP32",
                                     shape=[tensor.shape[0], 10])  # fmt: skip
            answer.raw_output_contents.append(
                np.full((tensor.shape[0], 10), 0.1, np.float32).tobytes())  # fmt: skip
            assert out.name == "probabilities"
            return answer

    add = functools.partial(service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server,
                            FakeV2Grpc())  # fmt: skip
    with serving_grpc(add) as port:
        endpoint = Endpoint(protocol="v2-grpc", base_url="http://127.0.0.1:1",
                            grpc_target=f"127.0.0.1:{port}", model_name="cifar10_cnn",
                            input_name="images", output_name="probabilities")  # fmt: skip
        images = np.zeros((2, 32, 32, 3), np.float32)
        body, _ = get_protocol("v2-grpc").encode(images, "binary", None, endpoint)
        (tmp_path / "body").write_bytes(body)
        result = run_threaded_grpc(f"127.0.0.1:{port}", "cifar10_cnn", tmp_path / "body",
                                   users=2, duration_s=2.5, cpus=None)  # fmt: skip
    assert result["errors"] == 0 and result["rps"] > 0 and result["p50_ms"] > 0
    assert set(seen) == {("cifar10_cnn", (2, 32, 32, 3))}
