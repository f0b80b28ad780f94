"""CPU limits in a plan: the form assumed, and a quota's measured cost beside a pinned core."""

from __future__ import annotations

from typing import Any

from analysis.limits import CpuLimit, limit_line, quota_cost_line
from analysis.sizing import plan_targets


def test_the_limit_form_and_its_line() -> None:
    assert CpuLimit(0.5, "0").form == "quota" and CpuLimit(None, "0").form == "pinned"
    assert CpuLimit().form == "none"
    assert "CFS quota of 0.33 CPU per replica on CPU(s) 0" in limit_line(CpuLimit(0.33, "0"))
    assert "static CPU manager" in limit_line(CpuLimit(None, "2-3"))
    assert "used the host's CPUs" in limit_line(CpuLimit())
    line = limit_line(CpuLimit(0.33, "0"))
    assert "over a 100 ms period" in line and "waits up to 67 ms" in line
    short = limit_line(CpuLimit(0.33, "0", period_ms=10))
    assert "over a 10 ms period" in short and "waits up to 7 ms" in short
    assert "cpuCFSQuotaPeriod to 10 ms" in short  # a node setting the plan assumes


def stage(rate: float, p99: float) -> dict[str, Any]:
    return {"index": 0, "arrival_rps": rate, "measured_requests": 2000, "p99_ms": p99,
            "p99_ci_ms": [p99, p99], "goodput_rps": rate, "error_rate": 0.0,
            "reject_rate": 0.0}  # fmt: skip


RUNS = [
    {"target": "half", "kind": "fastapi", "mode": "find-max", "status": "ok",
     "stages": [stage(5.0, 60.0), stage(40.0, 90.0), stage(50.0, 400.0)]},
    {"target": "core", "kind": "fastapi", "mode": "find-max", "status": "ok",
     "stages": [stage(5.0, 12.0), stage(100.0, 80.0), stage(120.0, 300.0)]},
]  # fmt: skip
LIMITS = {"half": CpuLimit(0.5, "0"), "core": CpuLimit(None, "0")}


def test_a_quota_is_compared_with_a_pinned_core_of_the_same_kind() -> None:
    line = quota_cost_line(RUNS, LIMITS, {"half": 40.0, "core": 100.0}, "half")
    assert line is not None
    assert "quota of 0.5 CPU, 40.0 requests/s (80.0 per CPU) and p99 60.0 ms" in line
    assert "on 1 whole pinned CPU(s) ('core'), 100.0 requests/s (100.0 per CPU)" in line
    assert "p99 12.0 ms" in line
    assert quota_cost_line(RUNS, LIMITS, {"half": 40.0, "core": 100.0}, "core") is None
    other = [RUNS[0], {**RUNS[1], "kind": "flask"}]
    assert quota_cost_line(other, LIMITS, {"half": 40.0, "core": 100.0}, "half") is None


def test_the_plan_says_which_limit_it_assumes_and_what_the_quota_cost() -> None:
    plans = plan_targets({"runs": RUNS}, 100.0, 60.0, cpu_limits=LIMITS)
    half = next(tp for tp in plans if tp.target == "half")
    assert half.plan is not None
    text = "\n".join(half.plan.assumptions)
    assert "CFS quota of 0.5 CPU per replica" in text and "Measured in this folder" in text
    assert half.plan.assumptions[-1].startswith("Not included")
