"""Per-stage server figures from cumulative counters."""

from __future__ import annotations

import math

import pandas as pd

from analysis.server_metrics import window_figures


def scrapes(rows: list[tuple[float, float, float, float, float, float]]) -> pd.DataFrame:
    cols = ["ts", "requests", "inferences", "executions", "queue_s", "model_s"]
    return pd.DataFrame(rows, columns=cols)


def test_a_window_takes_the_difference_of_its_edges() -> None:
    frame = scrapes([
        (0.0, 0, 0, 0, 0.0, 0.0),
        (10.0, 100, 100, 100, 0.0, 0.5),  # warm-up: one request a call
        (20.0, 500, 500, 150, 2.0, 4.5),  # 400 requests in 50 calls: 8 a batch
        (30.0, 900, 900, 200, 4.0, 8.5),
    ])  # fmt: skip
    figures = window_figures(frame, 10.0, 30.0)
    assert figures["server_batch_size_mean"] == 8.0
    assert figures["server_queue_ms"] == 5.0  # 4 s over 800 requests
    assert figures["server_model_ms"] == 10.0
    assert figures["server_requests"] == 800


def test_no_figure_without_two_scrapes_or_after_a_reset() -> None:
    one = scrapes([(5.0, 10, 10, 10, 0.1, 0.1)])
    assert window_figures(one, 0.0, 10.0)["server_batch_size_mean"] is None
    reset = scrapes([(0.0, 100, 100, 10, 1.0, 1.0), (10.0, 5, 5, 1, 0.1, 0.1)])
    figures = window_figures(reset, 0.0, 10.0)
    assert figures["server_batch_size_mean"] is None and figures["server_requests"] is None
    assert not any(isinstance(v, float) and math.isnan(v) for v in figures.values())
