"""Sizing arithmetic: peak from a daily volume, replicas with headroom, totals, assumptions."""

from __future__ import annotations

import math
from typing import Any

import pytest

from analysis.plans import format_plan, plan_table
from analysis.sizing import (
    CLOSED_LOOP_REFUSAL,
    peak_rps_from_daily,
    plan,
    plan_targets,
    resolve_peak,
)


def test_peak_from_daily_volume() -> None:
    # 100 million a day is 1,157.4 a second on average; a peak factor of 3 makes 3,472.2
    assert peak_rps_from_daily(100e6, 3) == pytest.approx(3472.2, abs=0.05)
    assert peak_rps_from_daily(86_400, 1) == 1.0
    with pytest.raises(ValueError, match="peak_factor"):
        peak_rps_from_daily(100e6, 0.5)
    with pytest.raises(ValueError, match="daily_requests"):
        peak_rps_from_daily(0, 3)


def test_the_one_call_plan() -> None:
    """100 million requests a day, peak factor 3, p99 under 200 ms, 400 rps per replica."""
    p = plan(400.0, daily_requests=100e6, peak_factor=3, slo_p99_ms=200,
             cpu_cores_per_replica=1.5, mem_mb_per_replica=800.0, gpus_per_replica=1)  # fmt: skip
    assert p.peak_rps == pytest.approx(3472.22, abs=0.01)
    assert p.usable_rps_per_replica == pytest.approx(280.0)  # 30% headroom by default
    assert p.replicas == 13  # ceil(3472.2 / 280) = ceil(12.4)
    assert p.utilisation_at_peak == pytest.approx(3472.22 / (13 * 400), abs=1e-4)
    assert p.total_cpu_cores == pytest.approx(19.5)
    assert p.total_mem_mb == pytest.approx(10_400.0)
    assert p.total_mem_gb == pytest.approx(10_400.0 / 1024)
    assert p.total_gpus == 13
    text = "\n".join(p.assumptions)
    assert "100,000,000 requests/day / 86,400 s x peak factor 3 = 3,472.2 requests/s" in text
    assert "p99 <= 200 ms" in text
    assert "Headroom: 30%" in text
    assert "ceil(3,472.2 / 280.0) = 13" in text
    assert "scale linearly" in text and "Not included" in text
    assert p.basis == "given" and p.model is None and p.predicted_capacity_rps == 13 * 400
    assert p.to_dict()["assumptions"] == list(p.assumptions)


def test_replicas_edges() -> None:
    assert plan(100.0, 1000.0, headroom=0.0).replicas == 10  # exactly full, not 11
    assert plan(100.0, 1000.1, headroom=0.0).replicas == 11
    assert plan(100.0, 10.0).replicas == 1
    assert plan(100.0, 10.0, min_replicas=3).replicas == 3
    assert plan(100.0, 700.0, headroom=0.3).replicas == 10  # 700 / 70
    p = plan(100.0, 1000.0)
    assert p.total_cpu_cores is None and p.total_mem_mb is None
    assert "Peak load: 1,000.0 requests/s (given)." in p.assumptions


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"capacity_per_replica_rps": 0.0, "peak_rps": 10.0}, "capacity"),
        ({"capacity_per_replica_rps": math.nan, "peak_rps": 10.0}, "capacity"),
        ({"capacity_per_replica_rps": 10.0, "peak_rps": 10.0, "headroom": 1.0}, "headroom"),
        ({"capacity_per_replica_rps": 10.0}, "give peak_rps"),
        ({"capacity_per_replica_rps": 10.0, "daily_requests": 1e6}, "peak_factor"),
        (
            {
                "capacity_per_replica_rps": 10.0,
                "peak_rps": 5.0,
                "daily_requests": 1e6,
                "peak_factor": 2.0,
            },
            "not both",
        ),
    ],
)
def test_plan_refuses_bad_input(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        plan(**kwargs)


def test_resolve_peak() -> None:
    assert resolve_peak(12.0, None, None) == 12.0
    assert resolve_peak(None, 86_400 * 10, 2) == 20.0


def stage(i: int, users: int, rps: float, p99: float) -> dict[str, Any]:
    return {"index": i, "users": users, "measured_requests": 1000, "rps": rps,
            "goodput_rps": rps, "error_rate": 0.0, "reject_rate": 0.0, "mean_ms": p99 / 2,
            "p50_ms": p99 / 3, "p95_ms": p99 * 0.9, "p99_ms": p99, "cpu_pct": 100.0,
            "mem_mb": 1024.0, "pss_mb": 900.0, "generator_cpu_pct": 10.0}  # fmt: skip


SUMMARY = {
    "scenario": "ramp",
    "runs": [
        {"target": "fast", "kind": "fastapi", "status": "ok",
         "stages": [stage(0, 1, 100.0, 10.0), stage(1, 2, 200.0, 20.0),
                    stage(2, 4, 300.0, 420.0)]},
        {"target": "slow", "kind": "flask", "status": "ok",
         "stages": [stage(0, 1, 10.0, 900.0), stage(1, 2, 12.0, 1900.0)]},
        {"target": "dead", "kind": "fastapi", "status": "failed", "error": "port in use",
         "stages": []},
    ],
}  # fmt: skip


def test_plan_table_one_row_per_target() -> None:
    table = plan_table(SUMMARY, 200.0, daily_requests=100e6, peak_factor=3,
                       allow_closed_loop=True).set_index("target")  # fmt: skip
    assert list(table.index) == ["fast", "slow", "dead"]
    # p99 crosses 200 ms at 200 + (200 - 20) / 400 x 100 = 245 rps
    assert table.loc["fast", "capacity_rps"] == pytest.approx(245.0)
    assert table.loc["fast", "method"] == "interpolated"
    assert table.loc["fast", "replicas"] == math.ceil(3472.22 / (245.0 * 0.7))
    assert table.loc["fast", "cpu_cores_per_replica"] == pytest.approx(1.0)
    assert table.loc["fast", "total_mem_gb"] == pytest.approx(table.loc["fast", "replicas"])
    assert math.isnan(table.loc["slow", "capacity_rps"])
    assert "no stage meets the SLO" in table.loc["slow", "note"]
    assert table.loc["dead", "method"] == "no_data"


def test_format_plan_for_the_cli() -> None:
    plans = plan_targets(SUMMARY, 200.0, daily_requests=100e6, peak_factor=3,
                         allow_closed_loop=True)  # fmt: skip
    text = format_plan(plans)
    assert text.startswith("Capacity plan: peak 3,472.2 requests/s (100,000,000/day x peak")
    assert "p99 <= 200 ms, headroom 30%" in text
    lines = text.splitlines()
    fast = next(line for line in lines if line.startswith("fast "))
    assert "245.0" in fast and "closed-loop" in fast
    assert "Measured: interpolated on p99 between stages 2 and 3." in text  # as the console
    assert "OPTIMISTIC: the capacity comes from a closed-loop ramp" in text
    assert "slow:\n  no plan: no stage meets the SLO" in text
    assert "! run status is 'failed'" in text
    single = format_plan(plan(100.0, 1000.0, label="x"))
    assert single.startswith("Capacity plan for x: 15 replica(s)")


def test_replicas_are_packed_onto_hosts_by_measured_cores_and_memory() -> None:
    # 13 replicas of 1.5 cores and 800 MB: a 4-core host holds floor(4 / 1.5) = 2 (CPU
    # bound), so 7 hosts; with 1 GB hosts memory binds first (floor(1024 / 800) = 1).
    p = plan(400.0, daily_requests=100e6, peak_factor=3, cpu_cores_per_replica=1.5,
             mem_mb_per_replica=800.0, host_cores=4)  # fmt: skip
    assert (p.replicas, p.replicas_per_host, p.hosts) == (13, 2, 7)
    assert "floor(4 cores / 1.50)" in "\n".join(p.assumptions)
    p = plan(400.0, 3472.2, cpu_cores_per_replica=1.5, mem_mb_per_replica=800.0,
             host_cores=4, host_mem_gb=1)  # fmt: skip
    assert (p.replicas_per_host, p.hosts) == (1, 13)
    assert "floor(1 GB / 800 MB)" in "\n".join(p.assumptions)


def test_a_same_host_scale_out_is_not_counted_on() -> None:
    """The measured case: one worker used 1.42 of the host's 2 cores at 512 rps, so a
    second replica on that host cannot be planned: 1,000 rps needs two hosts, not one."""
    p = plan(512.0, 1000.0, headroom=0.0, cpu_cores_per_replica=1.42, host_cores=2)
    assert (p.replicas, p.replicas_per_host, p.hosts) == (2, 1, 2)


def test_packing_edges() -> None:
    assert plan(100.0, 1000.0, host_cores=8).hosts is None  # no CPU measured: not packed
    too_big = plan(100.0, 1000.0, cpu_cores_per_replica=12.0, host_cores=8)
    assert too_big.replicas_per_host == 0 and too_big.hosts is None
    assert "does not fit a host" in "\n".join(too_big.assumptions)
    assert plan(100.0, 1000.0, cpu_cores_per_replica=1.0).hosts is None  # no host size
    with pytest.raises(ValueError, match="host_cores"):
        plan(100.0, 1000.0, host_cores=0)


def test_hosts_in_the_table_and_the_cli() -> None:
    plans = plan_targets(SUMMARY, 200.0, 1000.0, host_cores=4, allow_closed_loop=True)
    fast = next(tp for tp in plans if tp.target == "fast")
    assert fast.plan is not None and fast.plan.replicas_per_host == 4  # 1 core per replica
    table = plan_table(SUMMARY, 200.0, 1000.0, allow_closed_loop=True).set_index("target")
    assert table["hosts"].isna().all()  # no host size: no packing
    text = format_plan(plans)
    assert " hosts" in text.splitlines()[2]  # the table header gains a hosts column


def test_a_closed_loop_capacity_is_refused_unless_allowed() -> None:
    plans = {tp.target: tp for tp in plan_targets(SUMMARY, 200.0, 1000.0)}
    assert plans["fast"].plan is None and plans["fast"].reason == CLOSED_LOOP_REFUSAL
    assert "--allow-closed-loop" in CLOSED_LOOP_REFUSAL
    allowed = plan_targets(SUMMARY, 200.0, 1000.0, allow_closed_loop=True)
    fast = next(tp for tp in allowed if tp.target == "fast")
    assert fast.plan is not None and fast.plan.basis == "closed-loop"


def open_stage(i: int, rate: float, p99: float, upper: float) -> dict[str, Any]:
    return {"index": i, "users": 0, "arrival_rps": rate, "measured_requests": 2000,
            "rps": rate, "goodput_rps": rate, "error_rate": 0.0, "reject_rate": 0.0,
            "p50_ms": p99 / 4, "p99_ms": p99, "p99_ci_ms": [p99 * 0.9, upper],
            "latency_cv": 0.5, "cpu_pct": 30.0, "mem_mb": 300.0, "generator_ok": True}  # fmt: skip


# One replica under Poisson arrivals (find-max): p99's upper bound 20, 30, 60, 150 ms at
# 10, 20, 30, 40 requests/s; SLO 100 ms, so one replica takes 30 requests/s.
OPEN = {"scenario": "plan-proof", "runs": [{
    "target": "api", "kind": "fastapi", "status": "ok", "mode": "find-max",
    "stages": [open_stage(0, 10.0, 18.0, 20.0), open_stage(1, 20.0, 27.0, 30.0),
               open_stage(3, 30.0, 55.0, 60.0), open_stage(2, 40.0, 120.0, 150.0)],
}]}  # fmt: skip


def test_an_open_loop_plan_rests_on_the_model_of_n_replicas() -> None:
    """Peak 75 requests/s, 10% headroom: the replicas must hold 75 / 0.9 = 83.3 requests/s.
    Random split (SO_REUSEPORT): N x 30, so 3 replicas (90), 2 would take 60."""
    (tp,) = plan_targets(OPEN, 100.0, 75.0, headroom=0.1)
    p = tp.plan
    assert p is not None and tp.capacity.basis == "open-loop"
    assert tp.capacity.capacity_rps == 30.0
    assert (p.replicas, p.predicted_capacity_rps) == (3, 90.0)
    assert p.utilisation_at_peak == pytest.approx(75 / 90)
    # p99 at peak: 25 requests/s per replica -> the 30 requests/s point's bound, 60 ms
    assert p.predicted_p99_at_peak_ms == 60.0
    text = "\n".join(p.assumptions)
    assert "random split (Poisson thinning)" in text and "SO_REUSEPORT" in text
    assert "peak / (1 - 0.1) = 83.3 requests/s" in text
    assert "Replicas: 3, the fewest" in text and "(2 would take 60.0)" in text
    assert "predicted p99 60.0 ms" in text
    # find-max probed 40 before 30: stages numbered as on the console (from 1)
    assert "met the SLO (stage 4); the next rate, stage 3, broke it on p99" in text


def test_round_robin_plans_from_the_smoother_split() -> None:
    """nginx round-robin, cs2 = 0.5^2 = 0.25: with 2 replicas the queueing part is scaled by
    (1/2 + 0.25) / 1.25 = 0.6: 40 requests/s -> 20 + (150 - 20) x 0.6 = 98 ms <= 100, so 2
    replicas take 80 (< 83.3); 3 take 3 x 40 = 120."""
    (tp,) = plan_targets(OPEN, 100.0, 75.0, headroom=0.1, balancer="round-robin")
    assert tp.plan is not None
    assert (tp.plan.replicas, tp.plan.predicted_capacity_rps) == (3, 120.0)
    assert "(2 would take 80.0)" in "\n".join(tp.plan.assumptions)
