"""Open-loop capacity: the highest arrival rate whose p99 is shown (upper bound) to meet the SLO."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from analysis.openloop import RatePoint, basis_of, counted_points, open_loop_capacity, rate_points


def point(rate: float, p99: float, upper: float | None, **kw: Any) -> RatePoint:
    return RatePoint(arrival_rps=rate, p99_ms=p99, p99_upper_ms=upper, requests=2000, **kw)


def test_the_upper_bound_decides_not_the_point() -> None:
    # 30 rps: point 90 ms but its bound is 110 ms, not shown within 100 ms
    points = [point(10, 20, 25), point(20, 50, 60), point(30, 90, 110), point(40, 300, 400)]
    m = open_loop_capacity(points, 100.0)
    assert (m.capacity_rps, m.method, m.limited_by) == (20, "highest_passing_rate", "p99")
    assert [e["meets"] for e in m.evidence] == [True, True, False, False]


def test_no_interpolation_and_the_first_break_caps_it() -> None:
    # a noisy pass above the first break does not raise the capacity
    points = [point(10, 20, 25), point(32, 80, 101), point(30, 60, 70), point(35, 70, 90)]
    m = open_loop_capacity(points, 100.0)
    assert m.capacity_rps == 30 and m.upper_stage is None
    assert any("noisy probes" in w for w in m.warnings)


def test_errors_lower_bounds_and_no_pass() -> None:
    m = open_loop_capacity([point(10, 20, 25), point(20, 30, 35, error_rate=0.05)], 100.0)
    assert (m.capacity_rps, m.limited_by) == (10, "error_rate")
    m = open_loop_capacity([point(10, 20, 25), point(20, 30, 35)], 100.0)
    assert (m.capacity_rps, m.method) == (20, "lower_bound")
    m = open_loop_capacity([point(10, 200, 250)], 100.0)
    assert m.capacity_rps is None and m.method == "none"
    assert open_loop_capacity([], 100.0).method == "no_data"


def test_too_few_requests_for_a_bound_is_judged_on_the_point_and_said() -> None:
    m = open_loop_capacity([point(5, 40, None), point(10, 80, 95)], 100.0)
    assert m.capacity_rps == 10
    assert any("too few requests" in w for w in m.warnings)
    assert math.isnan(point(1, math.nan, None).judged_p99_ms)
    assert not point(1, math.nan, None).meets(100.0, 0.01, 0.01)  # nothing succeeded


def test_rate_points_from_stages() -> None:
    stages = [
        {"index": 0, "arrival_rps": 20.0, "measured_requests": 400, "p99_ms": 30.0,
         "p99_ci_ms": [25.0, 40.0], "error_rate": 0.0, "latency_cv": 0.3},
        {"index": 1, "arrival_rps": 10.0, "measured_requests": 100, "p99_ms": 20.0,
         "p99_ci_ms": None},
        {"index": 2, "arrival_rps": 50.0, "measured_requests": 900, "p99_ms": 30.0,
         "generator_ok": False, "generator_issues": ["3.0% of sends more than 10 ms late"]},
        {"index": 3, "users": 4, "measured_requests": 100, "p99_ms": 9.0},  # closed loop
    ]  # fmt: skip
    points, warnings = rate_points(stages)
    assert [(p.arrival_rps, p.p99_upper_ms, p.stage) for p in points] == [
        (10.0, None, 1), (20.0, 40.0, 0), (50.0, None, 2)]  # fmt: skip
    assert points[1].latency_cv == 0.3
    late = "3.0% of sends more than 10 ms late"
    assert warnings == [f"stage 3 (50.0 rps): the load generator did not keep to the schedule "
                        f"({late}); it counts only as a break of a rate also measured on "
                        "schedule"]  # fmt: skip
    assert points[2].generator_behind  # met the SLO, alone at its rate: proves nothing
    assert counted_points(points, 100.0) == points[:2]
    assert open_loop_capacity(points, 100.0).capacity_rps == 20.0


def test_a_confirmation_the_generator_fell_behind_on_still_counts() -> None:
    """find-max held 42.7 rps again and it broke (p99 1,165 ms) while the generator fell
    behind: measured, the stage was left out and the first, passing 42.7 made the capacity
    (42.7 where find-max had settled on 40.4), and the model predicted N x 42.7."""
    stage = {"measured_requests": 1800, "error_rate": 0.0, "reject_rate": 0.0}
    stages = [{**stage, "index": 0, "arrival_rps": 40.4, "p99_ms": 326.0, "p99_ci_ms": [308, 359]},
              {**stage, "index": 1, "arrival_rps": 42.7, "p99_ms": 353.0, "p99_ci_ms": [334, 373]},
              {**stage, "index": 2, "arrival_rps": 42.7, "p99_ms": 1165.0,
               "p99_ci_ms": [1155, 1199], "generator_ok": False}]  # fmt: skip
    points, _ = rate_points(stages)
    assert open_loop_capacity(points, 400.0).capacity_rps == 40.4
    from analysis.replicas import ReplicaModel

    assert ReplicaModel(tuple(points), 400.0).capacity_rps(2) == 80.8
    # lagging and met, or lagging alone at its rate: not counted, as before
    met = [points[0], points[1], replace(points[2], p99_ms=300.0, p99_upper_ms=320.0)]
    assert open_loop_capacity(met, 400.0).capacity_rps == 42.7
    alone = [points[0], replace(points[2], arrival_rps=45.0)]
    assert open_loop_capacity(alone, 400.0).capacity_rps == 40.4


def test_basis() -> None:
    assert basis_of({"mode": "find-max"}) == "open-loop"
    assert basis_of({"mode": "rate"}) == "open-loop"
    assert basis_of({"mode": "ramp", "stages": [{}]}) == "closed-loop"
    assert basis_of({"mode": "sequential"}) == "none"
    # summaries written before the mode was recorded
    assert basis_of({"stages": [{"arrival_rps": 10.0}]}) == "open-loop"
    assert basis_of({"find_max": {"max_rps": 3}, "stages": []}) == "open-loop"
    assert basis_of({"stages": [{"users": 2}]}) == "closed-loop"


def test_a_rate_that_passed_and_then_failed_its_confirmation_counts_as_failing() -> None:
    # find-max's confirmation: 38.5 passed (bound 192 ms), held again it broke (bound 240)
    passes_first = [point(33.1, 100, 150), point(36.6, 150, 175), point(38.5, 180, 192),
                    point(38.5, 210, 240)]  # fmt: skip
    for points in (passes_first, passes_first[::-1]):
        m = open_loop_capacity(points, 200.0)
        assert (m.capacity_rps, m.method) == (36.6, "highest_passing_rate")
