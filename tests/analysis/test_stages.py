"""Stage statistics: exact percentiles, stage assignment, steady windows, rates, resources."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.stages import (
    assign_stage,
    json_safe,
    percentile_ms,
    stage_stats,
    steady_windows,
    timeline_frame,
)

T0 = 1_000.0
TIMELINE = timeline_frame(
    [
        {"index": i, "users": u, "spawn_rate": u, "duration_s": 10,
         "start_ts": T0 + 10 * i, "end_ts": T0 + 10 * (i + 1)}
        for i, u in ((0, 1), (1, 4))
    ]
)  # fmt: skip


def test_percentile_is_nearest_rank_not_interpolated() -> None:
    values = np.arange(1, 101, dtype=float)  # 1..100
    assert percentile_ms(values, 50) == 50
    assert percentile_ms(values, 99) == 99
    assert percentile_ms(values, 100) == 100
    assert percentile_ms([10.0, 20.0], 50) == 10
    assert percentile_ms([3.0, 1.0, 2.0, 4.0], 75) == 3  # an observed value, never 3.25
    assert math.isnan(percentile_ms([], 50))


def test_assign_stage_edges() -> None:
    ts = pd.Series([T0 - 1, T0, T0 + 9.99, T0 + 10, T0 + 25])
    assert assign_stage(ts, TIMELINE).tolist() == [0, 0, 0, 1, 1]
    assert assign_stage(ts, TIMELINE, clip=False).tolist() == [-1, 0, 0, 1, -1]


def test_steady_window_drops_settle() -> None:
    w = steady_windows(TIMELINE, 2.0)
    assert w.loc[0].tolist() == [T0 + 2, T0 + 10]
    assert w.loc[1].tolist() == [T0 + 12, T0 + 20]


def test_find_max_stage_is_measured_from_the_windows_that_decided_it() -> None:
    rows = [{"index": 0, "rps": 100.0, "start_ts": T0, "end_ts": T0 + 20,
             "steady_from_ts": T0 + 8.0, "steady_to_ts": T0 + 16.0},
            {"index": 1, "rps": 50.0, "start_ts": T0 + 20, "end_ts": T0 + 30,
             "steady_from_ts": None, "steady_to_ts": None}]  # fmt: skip
    w = steady_windows(timeline_frame(rows), 2.0)
    # the backlog's drain is left out, and the window sent while the last one was judged
    assert w.loc[0].tolist() == [T0 + 8, T0 + 16]
    # deciding windows from the stage's start: all of them, the settle time is not cut
    rows[0]["steady_from_ts"] = T0
    assert steady_windows(timeline_frame(rows), 2.0).loc[0].tolist() == [T0, T0 + 16]
    assert w.loc[1].tolist() == [T0 + 22, T0 + 30]  # unknown: the settle time as usual


def make_requests() -> pd.DataFrame:
    rows = []
    # stage 0: one request per second, latency 10 ms, incl. the settle period
    for i in range(10):
        rows.append((T0 + i + 0.5, 10.0, "ok"))
    # stage 1: 4 per second; 1..100 ms latencies in the window, plus an error and a rejection
    lat = iter(np.arange(1, 101, dtype=float))
    for i in range(40):
        t = T0 + 10 + i * 0.25
        rows.append((t, next(lat) if t >= T0 + 12 else 500.0, "ok"))
    rows.append((T0 + 15, 3.0, "error"))
    rows.append((T0 + 16, 1.0, "rejected"))
    rows.append((T0 + 20.5, 40.0, "ok"))  # started while users were stopping
    frame = pd.DataFrame(rows, columns=["ts", "latency_ms", "outcome"])
    frame["bytes"] = 100
    return frame


def make_samples() -> pd.DataFrame:
    rows = []
    for s in range(20):
        # two replicas sampled at the same instant: their sum is the target's usage
        rows.append((T0 + s + 0.1, "target", "a", 50.0 if s < 10 else 150.0, 100.0, 90.0))
        rows.append((T0 + s + 0.1, "target", "b", 50.0, 200.0, 150.0))
        rows.append((T0 + s + 0.1, "generator", "g", 30.0, 50.0, 50.0))
    return pd.DataFrame(rows, columns=["ts", "role", "name", "cpu_pct", "mem_mb", "pss_mb"])


def test_stage_stats_contract_and_values() -> None:
    requests = make_requests()
    stats = stage_stats(requests, make_samples(), TIMELINE, settle_s=2.0)
    assert [s["index"] for s in stats] == [0, 1]
    assert sum(s["requests"] for s in stats) == len(requests)  # every record in a stage
    s0, s1 = stats
    assert s0["requests"] == 10 and s0["measured_requests"] == 8
    assert s0["rps"] == pytest.approx(1.0)
    assert s0["p50_ms"] == s0["p99_ms"] == 10.0
    assert s1["measured_requests"] == 34  # 32 ok + error + rejection in [12, 20)
    assert s1["rps"] == pytest.approx(34 / 8)
    assert s1["goodput_rps"] == pytest.approx(32 / 8)
    assert s1["error_rate"] == pytest.approx(1 / 34)
    assert s1["reject_rate"] == pytest.approx(1 / 34)
    assert s1["reject_p50_ms"] == s1["reject_p99_ms"] == 1.0  # the rejection's own latency
    assert "reject_p50_ms" not in s0
    window_lat = np.arange(1, 33, dtype=float)  # the 32 ok requests in the window
    assert s1["p50_ms"] == percentile_ms(window_lat, 50)
    assert s1["p50_ms"] == 16.0 and s1["p99_ms"] == 32.0
    assert s1["p99_ms"] >= s1["p95_ms"] >= s1["p50_ms"] > 0
    assert s0["cpu_pct"] == pytest.approx(100.0) and s1["cpu_pct"] == pytest.approx(200.0)
    assert s0["mem_mb"] == pytest.approx(300.0) and s0["pss_mb"] == pytest.approx(240.0)
    assert s1["generator_cpu_pct"] == pytest.approx(30.0)
    for key in ("index", "users", "duration_s", "requests", "rps", "p50_ms", "p95_ms",
                "p99_ms", "error_rate", "reject_rate", "cpu_pct", "mem_mb"):  # fmt: skip
        assert key in s0


def test_stage_without_requests_or_samples_is_nan_not_crash() -> None:
    empty = pd.DataFrame(columns=["ts", "latency_ms", "outcome", "bytes"]).astype(
        {"ts": float, "latency_ms": float, "bytes": int}
    )
    samples = pd.DataFrame(columns=["ts", "role", "cpu_pct", "mem_mb", "pss_mb"])
    stats = stage_stats(empty, samples, TIMELINE, 1.0)
    assert stats[0]["requests"] == 0 and stats[0]["rps"] == 0
    assert math.isnan(stats[0]["p99_ms"]) and math.isnan(stats[0]["cpu_pct"])
    assert json_safe(stats)[0]["p99_ms"] is None


def test_primary_request_type_and_breakdown() -> None:
    rows = []
    for i in range(16):  # in stage 1's window: a fast submit and a slower end-to-end job
        t = T0 + 12 + i * 0.5
        rows += [(t, 2.0, "ok", "submit"), (t, 50.0 + i, "ok", "job")]
    rows.append((T0 + 13, 1.0, "rejected", "submit"))
    rows.append((T0 + 13, 1.0, "rejected", "job"))
    frame = pd.DataFrame(rows, columns=["ts", "latency_ms", "outcome", "name"]).assign(bytes=10)
    samples = pd.DataFrame(columns=["ts", "role", "cpu_pct", "mem_mb", "pss_mb"])
    s1 = stage_stats(frame, samples, TIMELINE, 2.0, primary="job")[1]
    assert s1["requests"] == len(frame)  # every record still counted
    assert s1["measured_requests"] == 17 and s1["rps"] == pytest.approx(17 / 8)
    assert s1["p50_ms"] >= 50  # job latency, not the submit's 2 ms
    assert s1["reject_rate"] == pytest.approx(1 / 17)
    assert s1["by_name"]["submit"]["p99_ms"] == 2.0
    assert s1["by_name"]["job"]["measured_requests"] == 17


def test_two_samples_of_one_source_in_one_second_are_not_added() -> None:
    # 5.2 and 5.4 round to the same second: one source sampled twice, not two sources.
    samples = pd.DataFrame(
        [(T0 + t, "target", "a", 100.0, 500.0, 400.0) for t in (4.45, 5.2, 5.4, 6.3)],
        columns=["ts", "role", "name", "cpu_pct", "mem_mb", "pss_mb"],
    )
    one = pd.DataFrame({"ts": [T0 + 5.0], "latency_ms": [1.0], "outcome": ["ok"], "bytes": [1]})
    s0 = stage_stats(one, samples, TIMELINE, settle_s=2.0)[0]
    assert s0["mem_mb"] == pytest.approx(500.0) and s0["mem_max_mb"] == pytest.approx(500.0)
    assert s0["cpu_pct"] == pytest.approx(100.0)
