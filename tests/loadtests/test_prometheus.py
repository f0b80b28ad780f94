"""The server-metrics collector: Prometheus text in, the contract's cumulative columns out."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from analysis.load import read_server_metrics
from loadtests.collectors.prometheus import PrometheusSampler, parse, row
from targets.common.metrics import source as servecap_source
from targets.registry import get_kind, target_config

TRITON_TEXT = """# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="cifar10_cnn",version="1"} 40
# TYPE nv_inference_count counter
nv_inference_count{model="cifar10_cnn",version="1"} 40
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="cifar10_cnn",version="1"} 5
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="cifar10_cnn",version="1"} 80000
# TYPE nv_inference_compute_infer_duration_us counter
nv_inference_compute_infer_duration_us{model="cifar10_cnn",version="1"} 400000
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="cifar10_cnn",version="1"} 3
"""


def test_triton_counters_map_onto_the_contract_columns_in_seconds() -> None:
    source = get_kind("triton").metrics(target_config(kind="triton", port=9000))
    assert source is not None and source.url == "http://127.0.0.1:9002/metrics"
    values = row(source, parse(TRITON_TEXT), 1000.0)
    assert values == ("1000.000", "40.000000", "40.000000", "5.000000", "0.080000",
                      "0.400000", "3.000000")  # fmt: skip


def test_servecap_histograms_map_onto_the_same_columns() -> None:
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    registry = CollectorRegistry()
    Counter("servecap_inference_requests", "", registry=registry).inc(3)
    Counter("servecap_inference_images", "", registry=registry).inc(6)
    Counter("servecap_inference_batches", "", registry=registry).inc(2)
    Histogram("servecap_queue_seconds", "", registry=registry).observe(0.5)
    Histogram("servecap_model_seconds", "", registry=registry).observe(0.25)
    values = row(servecap_source("http://x"), parse(generate_latest(registry).decode()), 1.0)
    assert values[1:6] == ("3.000000", "6.000000", "2.000000", "0.500000", "0.250000")
    assert values[6] == ""  # no in-flight gauge in this registry


class Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = TRITON_TEXT.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metrics_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()
    server.server_close()


def test_the_sampler_appends_rows_and_survives_a_dead_endpoint(
    metrics_url: str, tmp_path: Path
) -> None:
    source = get_kind("triton").metrics(target_config(kind="triton"))
    assert source is not None
    good = source.__class__(**{**source.__dict__, "url": metrics_url})
    with PrometheusSampler(tmp_path / "server-metrics.csv", good, 0.05) as sampler:
        while sampler.samples < 3:
            threading.Event().wait(0.05)
    frame = read_server_metrics(tmp_path)
    assert len(frame) >= 3 and (frame["executions"] == 5).all()
    dead = source.__class__(**{**source.__dict__, "url": "http://127.0.0.1:9/metrics"})
    with PrometheusSampler(tmp_path / "dead.csv", dead, 0.05) as sampler:
        while sampler.failures < 2:
            threading.Event().wait(0.05)
    assert sampler.samples == 0 and sampler.last_error and sampler.gap_report()
    assert pd.read_csv(tmp_path / "dead.csv").empty  # header only: nothing made up
