"""Load modes: spec validation, the open-loop rate schedule, find-max decisions, sequential."""

from __future__ import annotations

import math
from typing import Any

import pytest

from analysis.sequential import sequential_summary
from analysis.stages import flag_generator, timeline_frame
from loadtests.findmax import FindMaxSearch, WindowResult, window_result
from loadtests.recorder import RequestRecorder
from loadtests.shapes import rate_at
from loadtests.spec import FindMax, LoadPlan, SpecError, Stage, parse_cpuset, parse_scenarios


def scenario(load: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"targets": {"t": {"kind": "fastapi"}},
            "scenarios": {"s": {"targets": ["t"], "load": load, **extra}}}  # fmt: skip


@pytest.mark.parametrize(
    ("load", "extra", "fragment"),
    [
        ({"mode": "rate", "stages": [{"users": 3, "duration_s": 5}]}, {},
         "mode rate takes 'rps' (not 'users')"),
        ({"mode": "ramp", "stages": [{"rps": 3, "duration_s": 5}]}, {},
         "mode ramp takes 'users' (not 'rps')"),
        ({"mode": "rate"}, {}, "mode rate needs stages"),
        ({"mode": "sequential", "stages": [{"users": 1, "duration_s": 5}]}, {}, "takes no stages"),
        ({"mode": "find-max"}, {}, "find-max searches against slo.p99_ms"),
        ({"mode": "sequential", "workers": 2}, {}, "runs in one generator process"),
        ({"mode": "burst"}, {}, "'ramp', 'rate', 'sequential' or 'find-max'"),
        ({"stages": [{"users": 1, "duration_s": 5}], "generator_cpuset": "a-b"}, {},
         "cpuset 'a-b' is not like"),
    ],
)  # fmt: skip
def test_mode_validation(load: dict[str, Any], extra: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_scenarios(scenario(load, **extra))
    assert fragment in str(info.value)


def test_valid_modes_and_durations() -> None:
    spec = parse_scenarios(scenario({"mode": "find-max"}, slo={"p99_ms": 100}))
    assert spec.scenario("s").load.duration_s == FindMax().max_duration_s
    seq = LoadPlan(mode="sequential")
    assert seq.sequential.requests == (1, 10, 100, 1000, 10000) and seq.sequential.repeat == 10
    assert seq.stage_settle_s == 0
    assert parse_cpuset("0-2,5") == [0, 1, 2, 5]


def test_rate_schedule_steps_and_ramps() -> None:
    stages = (Stage(rps=10, duration_s=10), Stage(rps=30, duration_s=10, ramp=True),
              Stage(rps=5, duration_s=5))  # fmt: skip
    assert rate_at(stages, 0) == 10 and rate_at(stages, 9.9) == 10
    assert rate_at(stages, 10) == pytest.approx(10)  # the ramp starts from the previous rate
    assert rate_at(stages, 15) == pytest.approx(20)
    assert rate_at(stages, 20) == 5  # steps down
    assert rate_at(stages, 25) is None


def window(p99: float, errors: int = 0, requests: int = 200) -> WindowResult:
    return WindowResult(0, 1, requests, errors, p99, latencies_ms=[p99] * (requests - errors))


def test_find_max_steps_up_then_bisects() -> None:
    plan = FindMax(start_rps=100, step_factor=2, stable_windows=2, tolerance=0.05, max_points=20)
    search = FindMaxSearch(plan, slo_p99_ms=50)
    capacity = 300.0  # a target meeting the SLO below 300 rps

    def judge(rps: float) -> float:
        return 20.0 if rps <= capacity else 200.0

    for _ in range(200):
        if search.done:
            break
        rps = search.current.rps
        search.add_window(window(judge(rps)), held_s=1)
        search.add_window(window(judge(rps)), held_s=2)
    result = search.result()
    assert result["complete"]
    assert [p["rps"] for p in result["points"][:3]] == [100, 200, 400]
    assert capacity * 0.95 <= result["max_rps"] <= capacity
    assert result["lowest_failing_rps"] > capacity
    assert result["lowest_failing_rps"] / result["max_rps"] - 1 <= 0.05


def test_find_max_confirms_its_answer_and_gives_way_when_it_fails() -> None:
    """Settled between 120 (pass) and 125 (fail); held again, 120 fails this time, so the next
    lower passing rate, 100, is held again and passes: the answer is 100."""
    plan = FindMax(start_rps=100, step_factor=1.2, stable_windows=2, tolerance=0.05,
                   confirm=True)  # fmt: skip
    search = FindMaxSearch(plan, slo_p99_ms=50)
    outcomes = {100.0: [20.0, 20.0], 120.0: [30.0, 200.0], 144.0: [200.0]}
    while not search.done:
        rps = round(search.current.rps, 1)
        p99 = outcomes.get(rps, [200.0]).pop(0) if rps in outcomes else (
            20.0 if rps < 122 else 200.0)  # fmt: skip
        search.add_window(window(p99), held_s=1)
        search.add_window(window(p99), held_s=2)
    rates = [(round(p.rps, 1), p.passed, p.confirms) for p in search.points]
    assert rates[:3] == [(100.0, True, False), (120.0, True, False), (144.0, False, False)]
    assert rates[-2:] == [(120.0, False, True), (100.0, True, True)]
    assert search.result()["max_rps"] == 100.0
    assert [p["confirms"] for p in search.result()["points"]][-1] is True


def test_find_max_without_confirmation_ends_when_settled() -> None:
    search = FindMaxSearch(FindMax(start_rps=100, step_factor=1.2, stable_windows=2,
                                   tolerance=0.05), slo_p99_ms=50)  # fmt: skip
    while not search.done:
        p99 = 20.0 if search.current.rps < 122 else 200.0
        search.add_window(window(p99), held_s=1)
        search.add_window(window(p99), held_s=2)
    assert not any(p.confirms for p in search.points)
    assert 120 <= search.result()["max_rps"] < 122


def test_find_max_requires_stability_and_errors_fail() -> None:
    plan = FindMax(start_rps=10, stable_windows=2, stability=0.2, max_hold_s=10)
    search = FindMaxSearch(plan, slo_p99_ms=50, max_error_rate=0.01)
    assert not search.add_window(window(10), 1)
    assert not search.add_window(window(40), 2)  # both meet the SLO but disagree by 4x
    assert search.add_window(window(42), 3)  # now stable
    assert search.points[0].passed
    assert not search.add_window(window(10, errors=5), 1)
    assert search.add_window(window(10, errors=5), 2)  # under the latency SLO, too many errors
    assert search.points[1].passed is False


def test_find_max_records_where_the_deciding_windows_begin() -> None:
    plan = FindMax(start_rps=10, stable_windows=2, stability=0.2, max_hold_s=100)
    search = FindMaxSearch(plan, slo_p99_ms=50)

    def win(start: float, p99: float) -> WindowResult:
        return WindowResult(start, start + 4, 200, 0, p99, latencies_ms=[p99] * 200)

    search.add_window(win(0, 400), 4)  # a slow start at the new rate
    search.add_window(win(4, 20), 8)
    assert search.add_window(win(8, 21), 12)
    assert search.points[0].passed and search.points[0].steady_from_ts == 4
    point = search.result()["points"][0]
    assert point["steady_from_ts"] == 4 and point["requests"] == 400
    assert point["steady_to_ts"] == 12
    assert point["p99_ms"] == 21 and point["p99_upper_ms"] == 21


def test_find_max_passes_only_when_the_bound_shows_the_slo_met() -> None:
    """Windows whose point p99 meets the SLO, but too few requests to bound it, or a bound
    above it: the rate is held, not passed."""
    plan = FindMax(start_rps=10, stable_windows=2, stability=1.0, max_hold_s=10)
    search = FindMaxSearch(plan, slo_p99_ms=50)

    def win(requests: int, tail_ms: float) -> WindowResult:
        lat = [10.0] * (requests - 1) + [tail_ms]  # one slow request in each window
        return WindowResult(0, 1, requests, 0, 10.0, latencies_ms=lat)

    assert not search.add_window(win(100, 10.0), 1)
    assert not search.add_window(win(100, 10.0), 2)  # 200 requests: no 95% bound on p99 yet
    assert search.add_window(win(200, 10.0), 3)  # 400: bounded, 10 ms
    assert search.points[0].passed and "upper bound 10.0 ms" in search.points[0].reason
    # 1% of requests at 80 ms: each window's p99 (nearest rank) is 10 ms, within 50 ms, but
    # the pooled p99's upper bound is 80 ms: the SLO is not shown met, the rate is held
    for held in (2, 4, 6, 8):
        assert not search.add_window(win(100, 80.0), held)
    assert search.add_window(win(100, 80.0), 10)  # judged at max_hold_s: on the bound
    assert search.points[1].passed is False
    assert "unsettled" in search.points[1].reason and "upper bound" in search.points[1].reason


def test_find_max_steps_down_when_the_first_rate_fails() -> None:
    search = FindMaxSearch(FindMax(start_rps=100, step_factor=2, stable_windows=2), 50)
    search.add_window(window(500), 1)
    search.add_window(window(500), 2)
    assert search.current.rps == 50


def test_window_counts_overdue_requests_as_breaches() -> None:
    observed = [(0.5, 10.0, "ok", 0.0)] * 50 + [(0.5, 5.0, "error", 0.0), (2.0, 1.0, "ok", 0.0)]
    w = window_result(0, 1, observed, in_flight_ages_ms=[30.0, 900.0, 800.0], slo_p99_ms=100)
    assert w.requests == 53 and w.errors == 1 and w.overdue == 2
    assert w.p99_ms == 900.0  # the stuck requests dominate the tail


def test_sequential_summary() -> None:
    runs = [{"requests": 10, "repeat": 0, "total_s": 1.0}, {"requests": 10, "repeat": 1,
            "total_s": 3.0}, {"requests": 1, "repeat": 0, "total_s": 0.2}]  # fmt: skip
    one, ten = sequential_summary(runs)
    assert one["requests"] == 1 and one["repeats"] == 1 and one["std_total_s"] == 0
    assert ten["mean_total_s"] == 2.0 and ten["mean_ms_per_request"] == 200.0
    assert ten["min_total_s"] == 1.0 and ten["max_total_s"] == 3.0


def test_flag_generator() -> None:
    stats = [
        {"generator_cpu_pct": 95.0},
        {"generator_cpu_pct": 95.0},
        {"generator_cpu_pct": 10.0, "late_share": 0.2},
        {"generator_cpu_pct": math.nan},
    ]
    flagged = flag_generator(stats, workers=1)
    assert [s["generator_ok"] for s in flagged] == [False, False, False, True]
    assert "generator CPU 95%" in flagged[0]["generator_issues"][0]
    assert "late" in flagged[2]["generator_issues"][0]
    assert flag_generator([{"generator_cpu_pct": 95.0}], workers=2)[0]["generator_ok"]
    busy_host = flag_generator([{"generator_cpu_pct": 50.0, "host_cpu_pct": 190.0}], host_cpus=2)
    assert not busy_host[0]["generator_ok"]
    assert "host CPU 190% of 200%" in busy_host[0]["generator_issues"][0]
    assert flag_generator([{"host_cpu_pct": 150.0}], host_cpus=2)[0]["generator_ok"]


def test_open_timeline_rows() -> None:
    rows = [
        {"index": 0, "users": 1, "start_ts": 0.0, "end_ts": 5.0, "duration_s": 5.0},
        {"index": 1, "users": 1, "start_ts": 5.0, "end_ts": None, "duration_s": None},
    ]
    assert list(timeline_frame(rows).index) == [0]
    closed = timeline_frame(rows, open_end_ts=9.0)
    assert closed.loc[1, "end_ts"] == 9.0 and closed.loc[1, "duration_s"] == 4.0


def test_recorder_measures_open_loop_latency_from_schedule(tmp_path: Any) -> None:
    import csv
    from types import SimpleNamespace

    rec = RequestRecorder(tmp_path)
    seen: list[tuple[float, float, str, float]] = []
    rec.observers.append(lambda *args: seen.append(args))
    ok = SimpleNamespace(status_code=200)
    rec.on_request("POST", "predict", 5.0, 10, ok, None, start_time=100.050,
                   context={"scheduled_ts": 100.0})  # fmt: skip
    rec.close()
    row = next(csv.DictReader(rec.path.open()))
    assert float(row["ts"]) == 100.0  # scheduled, not actual, send time
    assert float(row["lag_ms"]) == pytest.approx(50.0)
    assert float(row["latency_ms"]) == pytest.approx(55.0)  # queueing behind schedule counts
    assert float(row["service_ms"]) == 5.0
    assert seen == [(100.0, pytest.approx(55.0), "ok", pytest.approx(50.0))]


def test_find_max_does_not_judge_a_rate_on_windows_where_the_generator_fell_behind() -> None:
    plan = FindMax(start_rps=100, step_factor=2, stable_windows=2, max_hold_s=60)
    search = FindMaxSearch(plan, slo_p99_ms=50, late_ms=10)
    observed = [(0.5, 400.0, "ok", 300.0)] * 100  # the sends left 300 ms late: not the target
    behind = window_result(0, 1, observed, [], slo_p99_ms=50, late_ms=10)
    assert behind.generator_behind and behind.late_share == 1.0
    assert not search.add_window(behind, 1) and not search.add_window(behind, 2)
    assert search.current.passed is None  # undecided: held for windows that count
    good = window_result(0, 1, [(0.5, 5.0, "ok", 0.0)] * 200, [], slo_p99_ms=50, late_ms=10)
    search.add_window(good, 3)
    assert search.add_window(good, 4) and search.points[0].passed


def test_find_max_unsettled_rate_is_judged_on_all_its_requests() -> None:
    plan = FindMax(start_rps=10, stable_windows=3, max_hold_s=10)
    search = FindMaxSearch(plan, slo_p99_ms=100)

    def win(spike: bool) -> WindowResult:
        lat = [10.0] * 199 + ([500.0] if spike else [10.0])
        return WindowResult(0, 1, 200, 0, 500.0 if spike else 10.0, 0, lat)

    # a rare stall breaks one window in three: never three good windows in a row
    for i, held in enumerate(range(1, 10)):
        assert not search.add_window(win(i % 3 == 2), held)
    assert search.add_window(win(False), 10)  # held long enough: pooled p99 decides
    assert search.points[0].passed and "judged on all its requests" in search.points[0].reason
    assert "met the SLO" in search.points[0].reason


def test_find_max_bound_allows_for_slow_requests_that_come_together() -> None:
    """A rate never settled, judged at max_hold_s on windows 2-8: one with 2% of requests slow,
    all in its last second (a busy spell), six with 0.5%. Pooled, 0.7% are slow, so independent
    samples would bound p99 at 10 ms; the batch means see the spell and bound it at 100 ms,
    over the 50 ms SLO (analysis.intervals)."""
    plan = FindMax(start_rps=10, stable_windows=7, stability=1.0, max_hold_s=16)
    search = FindMaxSearch(plan, slo_p99_ms=50)
    calm = [10.0] * 995 + [100.0] * 5
    spell = [10.0] * 980 + [300.0] * 20
    for held, lat in enumerate([calm, spell] + [calm] * 6, start=1):
        decided = search.add_window(WindowResult(0, 1, len(lat), 0, 10.0, latencies_ms=lat),
                                    2 * held)  # fmt: skip
    assert decided and search.points[0].passed is False
    assert "upper bound of its p99 (100.0 ms) broke" in search.points[0].reason
