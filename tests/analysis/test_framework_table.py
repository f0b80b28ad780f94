"""analysis.frameworks and the report's framework table and chart: figures per run, batching
off and on, from stage tables written as summary.json would be."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from analysis import framework_plots, report
from analysis.cost import Prices
from analysis.frameworks import batching, figures, framework_table, ratios
from analysis.results import Results
from analysis.tables import stage_tables


def stage(i: int, rps: float, p50_ms: float, p99_ms: float, cpu_pct: float) -> dict[str, Any]:
    return {"index": i, "rps": rps, "goodput_rps": rps, "measured_requests": int(rps * 10),
            "error_rate": 0.0, "reject_rate": 0.0, "mean_ms": p50_ms, "p50_ms": p50_ms,
            "p95_ms": p99_ms, "p99_ms": p99_ms, "cpu_pct": cpu_pct, "mem_mb": 1024.0,
            "pss_mb": 900.0, "server_batch_size_mean": 4.0 if cpu_pct > 60 else 1.0}  # fmt: skip


SUMMARY = {"scenario": "frameworks", "runs": [
    {"target": "litserve", "kind": "litserve", "status": "ok",
     "stages": [stage(0, 20, 6.0, 9.0, 10.0), stage(1, 100, 9.0, 40.0, 50.0),
                stage(2, 200, 30.0, 400.0, 95.0)]},
    {"target": "litserve-batch", "kind": "litserve", "status": "ok",
     "stages": [stage(0, 20, 8.0, 12.0, 8.0), stage(1, 200, 12.0, 60.0, 80.0)]},
]}  # fmt: skip
CONFIGS = {("run", "litserve"): {"kind": "litserve", "max_batch_size": 1},
           ("run", "litserve-batch"): {"kind": "litserve", "max_batch_size": 32}}  # fmt: skip


def test_batching_is_read_from_the_config() -> None:
    assert batching({"max_batch_size": 32}) and batching({"batch_max": 8})
    assert not batching({"max_batch_size": 1}) and not batching({"batch_max": 0})
    assert not batching({"workers": 4})


def test_figures_per_thousand_rps_and_per_million() -> None:
    got = figures(500.0, 4.0, 1.0, 2048.0, Prices(core_hour=0.04, gb_hour=0.01))
    assert got["cpu_cores_per_1000_rps"] == pytest.approx(2.0)
    assert got["ram_gb_per_1000_rps"] == pytest.approx(4.0)
    # 1 core for 500 requests a second: 10^6 / 500 s = 2,000 core-seconds = 0.556 core-hours
    assert got["core_hours_per_million"] == pytest.approx(1e6 / 500 / 3600)
    assert got["cost_per_million"] == pytest.approx(
        got["core_hours_per_million"] * 0.04 + got["gb_hours_per_million"] * 0.01
    )
    none = figures(math.nan, 4.0, 1.0, 2048.0, Prices())
    assert math.isnan(none["capacity_rps"]) and none["p50_light_ms"] == 4.0
    assert ratios(got, {**got, "capacity_rps": 250.0})["capacity_rps"] == pytest.approx(2.0)


def test_framework_table_gives_each_run_its_capacity_light_p50_and_batching() -> None:
    table = stage_tables({"run": SUMMARY})
    frame = framework_table(table, CONFIGS, slo_p99_ms=100.0, prices=Prices())
    rows = frame.set_index("target")
    assert list(rows["batching"]) == [False, True]
    assert 100.0 < rows.loc["litserve", "capacity_rps"] < 200.0  # 200 rps broke the SLO
    assert rows.loc["litserve-batch", "capacity_rps"] == pytest.approx(200.0)
    assert rows.loc["litserve", "p50_light_ms"] == 6.0  # the lightest stage, not capacity's
    assert rows.loc["litserve-batch", "batch_mean"] == 4.0
    # between the cores of the stages around capacity, per 1,000 of its rps
    assert 0.5 * 1000 / 200 < rows.loc["litserve", "cpu_cores_per_1000_rps"] < 0.95 * 1000 / 100


def test_report_overview_and_chart(tmp_path: Any) -> None:
    results = Results(tmp_path, SUMMARY, {}, {"targets": {"litserve": CONFIGS[("run", "litserve")],
                      "litserve-batch": CONFIGS[("run", "litserve-batch")]}})  # fmt: skip
    table = stage_tables({results.name: SUMMARY})
    frame = report.frameworks_overview([results], table, 100.0, Prices(core_hour=0.04))
    assert len(frame) == 2 and frame["batching"].tolist() == [False, True]
    assert frame["cost_per_million"].notna().all()
    fig = framework_plots.frameworks_comparison(frame)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()][-1] == "cost per million"
    empty = framework_plots.frameworks_comparison(
        framework_table(pd.DataFrame(), {}, 100.0, Prices())
    )
    assert empty.axes
