"""Per stage, what the target itself says: mean batch size, queue and model time per request.

From the cumulative counters scraped during the run (``server_metrics.parquet``,
:data:`analysis.contract.SERVER_METRICS_COLUMNS`): each stage's steady window takes the
difference between the last scrape at or before its start and the last at or before its end,
so a stage's figures rest on about its window (give or take one sampling interval). A counter
that went down (a restarted server) gives no figure for that stage.

* ``server_batch_size_mean``: rows (images) run / model calls;
* ``server_queue_ms``: per request, the wait before its model call (the batcher's queue);
* ``server_model_ms``: per request, the model call it was part of;
* ``server_requests``: requests that reached the model in the window.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

FIELDS = ("server_batch_size_mean", "server_queue_ms", "server_model_ms", "server_requests")


def _at(frame: pd.DataFrame, ts: float) -> pd.Series | None:
    before = frame[frame["ts"] <= ts]
    return before.iloc[-1] if len(before) else None


def _delta(end: pd.Series, start: pd.Series, column: str) -> float:
    try:
        value = float(end[column]) - float(start[column])
    except (TypeError, ValueError, KeyError):
        return math.nan
    return value if math.isfinite(value) and value >= 0 else math.nan


def _ratio(numerator: float, denominator: float, scale: float = 1.0) -> float | None:
    if not math.isfinite(numerator) or not math.isfinite(denominator) or denominator <= 0:
        return None
    return numerator / denominator * scale


def window_figures(samples: pd.DataFrame, start_ts: float, end_ts: float) -> dict[str, Any]:
    """The :data:`FIELDS` of one window (None where the samples do not tell)."""
    empty: dict[str, Any] = dict.fromkeys(FIELDS)
    if samples.empty:
        return empty
    frame = samples.sort_values("ts")
    first = _at(frame, start_ts)
    if first is None:  # the first scrape came after the window began
        first = frame.iloc[0] if frame.iloc[0]["ts"] < end_ts else None
    last = _at(frame, end_ts)
    if first is None or last is None or float(last["ts"]) <= float(first["ts"]):
        return empty
    requests = _delta(last, first, "requests")
    return {
        "server_batch_size_mean": _ratio(
            _delta(last, first, "inferences"), _delta(last, first, "executions")
        ),
        "server_queue_ms": _ratio(_delta(last, first, "queue_s"), requests, 1000.0),
        "server_model_ms": _ratio(_delta(last, first, "model_s"), requests, 1000.0),
        "server_requests": None if math.isnan(requests) else int(requests),
    }


def add_to_stages(
    stages: list[dict[str, Any]], samples: pd.DataFrame, windows: pd.DataFrame
) -> list[dict[str, Any]]:
    """``stages`` (stage_stats rows) with each one's :data:`FIELDS`; ``windows`` is
    :func:`analysis.stages.steady_windows` (indexed by stage)."""
    if samples.empty:
        return stages
    for stage in stages:
        window = windows.loc[stage["index"]]
        stage.update(window_figures(samples, window["window_start"], window["window_end"]))
    return stages
