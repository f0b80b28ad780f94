"""Tests for analysis.cost: a plan's cost, checked against arithmetic done by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis.cost import Prices, cost_table, hours_per_million, plan_cost
from analysis.sizing import plan


def test_a_plan_costs_what_a_hand_computation_says() -> None:
    # 100 rps per replica, 30% headroom: 70 usable; peak 140 rps -> 2 replicas.
    # Each replica: 1.0 core and 1,024 MB at capacity -> 2 cores, 2 GB in all.
    p = plan(100.0, 140.0, headroom=0.3, cpu_cores_per_replica=1.0, mem_mb_per_replica=1024.0)
    assert p.replicas == 2
    cost = plan_cost(p, Prices(core_hour=0.04, gb_hour=0.005), cpu_s_per_request=0.01)
    # per hour at peak: 2 x 0.04 + 2 x 0.005 = 0.09
    assert cost.per_hour_at_peak == pytest.approx(0.09)
    # per million at peak: 0.09 / (140 x 3,600) x 10^6 = 0.178571...
    assert cost.per_million_at_peak == pytest.approx(0.09 / 504_000 * 1e6)
    # at capacity: 0.01 CPU-s/request -> 10,000 CPU-s = 2.7778 core-hours x 0.04 = 0.11111;
    # 1 GB / 100 rps = 0.01 GB-s/request -> 2.7778 GB-hours x 0.005 = 0.013889; sum 0.125
    assert cost.per_million_at_capacity == pytest.approx(0.125)
    assert cost.basis == "resources"
    assert any("2.00 cores x 0.04" in line for line in cost.lines)


def test_a_host_price_costs_whole_hosts() -> None:
    p = plan(100.0, 140.0, headroom=0.3, cpu_cores_per_replica=1.0, mem_mb_per_replica=1024.0,
             host_cores=1.5)  # fmt: skip
    assert p.hosts == 2  # one 1-core replica per 1.5-core host
    cost = plan_cost(p, Prices(core_hour=0.04, gb_hour=0.005, host_hour=0.1), 0.01)
    assert cost.basis == "hosts" and cost.per_hour_at_peak == pytest.approx(0.2)
    assert cost.per_million_at_capacity == pytest.approx(0.125)  # still the resources'


def test_gpus_and_missing_measurements() -> None:
    core_h, gb_h, gpu_h = hours_per_million(0.0036, 2048.0, 50.0, gpus=1.0)
    assert core_h == pytest.approx(1.0) and gb_h == pytest.approx(2 / 50 * 1e6 / 3600)
    assert gpu_h == pytest.approx(1e6 / 50 / 3600)
    blind = plan(10.0, 5.0)  # no CPU or memory measured
    cost = plan_cost(blind, Prices(core_hour=1.0), None)
    assert cost.per_hour_at_peak is None and cost.per_million_at_capacity is None
    with pytest.raises(ValueError, match="core_hour"):
        Prices(core_hour=-1.0)


def test_the_cheapest_architecture_meeting_the_slo_is_marked() -> None:
    comparison = pd.DataFrame([
        {"label": "a", "kind": "fastapi", "capacity_rps": 100.0, "p99_at_users_ms": 40.0,
         "at_users": 8, "cpu_cores_at_capacity": 1.0, "mem_mb": 1024.0},
        {"label": "b", "kind": "triton", "capacity_rps": 400.0, "p99_at_users_ms": 20.0,
         "at_users": 8, "cpu_cores_at_capacity": 1.6, "mem_mb": 2048.0},
        {"label": "c", "kind": "flask", "capacity_rps": math.nan, "p99_at_users_ms": 900.0,
         "at_users": 8, "cpu_cores_at_capacity": 0.1, "mem_mb": 100.0},
    ])  # fmt: skip
    table = cost_table(comparison, Prices(core_hour=0.04, gb_hour=0.005)).set_index("label")
    # b: 0.004 CPU-s/request (vs a's 0.01) and 5 MB-s/request (vs 10): cheaper on both
    assert table.loc["b", "cheapest"] and not table.loc["a", "cheapest"]
    assert not table.loc["c", "meets_slo"] and math.isnan(table.loc["c", "cost_per_million"])
    assert table.loc["a", "cost_per_million"] == pytest.approx(0.125)
    unpriced = cost_table(comparison, Prices()).set_index("label")
    assert unpriced["cost_per_million"].isna().all() and unpriced.loc["b", "cheapest"]
