"""Capacity model on synthetic curves with known answers: max RPS under an SLO, knee, USL,
Little's law, the stage table and the summary.json capacity section."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis.capacity import capacity_section, run_capacity
from analysis.compare import capacities, common_users, compare_runs, label_runs
from analysis.knee import find_knee
from analysis.littles import littles_law_check
from analysis.slo import max_rps_under_slo
from analysis.tables import (
    cpu_seconds_per_request,
    memory_per_replica,
    slo_goodput,
    stage_table,
    stage_tables,
)
from analysis.usl import fit_usl, usl_throughput


def stage(i: int, users: int, rps: float, p99: float, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "index": i, "users": users, "duration_s": 20.0, "window_s": 17.0,
        "requests": int(rps * 20), "measured_requests": int(rps * 17), "rps": rps,
        "goodput_rps": rps, "error_rate": 0.0, "reject_rate": 0.0, "mean_ms": p99 / 2,
        "p50_ms": p99 / 3, "p90_ms": p99 * 0.8, "p95_ms": p99 * 0.9, "p99_ms": p99,
        "cpu_pct": 50.0 + rps / 10, "mem_mb": 700.0 + i, "mem_max_mb": 710.0 + i,
        "pss_mb": 600.0, "generator_cpu_pct": 20.0,
    }  # fmt: skip
    row.update(extra)
    return row


def ramp(
    xs: list[float], p99s: list[float], users: list[int] | None = None
) -> list[dict[str, Any]]:
    users = users or [2**i for i in range(len(xs))]
    return [stage(i, u, x, y) for i, (u, x, y) in enumerate(zip(users, xs, p99s, strict=True))]


# Linear, then a hockey stick from stage 3 on: p99 = 10 + 0.01 x to 400 rps, then +3 ms/rps.
HOCKEY_X = [100.0, 200.0, 300.0, 400.0, 500.0, 600.0]
HOCKEY_Y = [11.0, 12.0, 13.0, 14.0, 314.0, 614.0]


def test_max_rps_interpolates_between_last_meeting_and_first_breaking() -> None:
    result = max_rps_under_slo(ramp(HOCKEY_X, HOCKEY_Y), slo_p99_ms=200.0)
    # the segment 400 -> 500 rps is linear, so the exact crossing is 400 + (200 - 14) / 3
    assert result.method == "interpolated" and result.limited_by == "p99"
    assert result.max_rps == pytest.approx(462.0, rel=1e-9)
    assert result.capacity_rps == result.max_rps
    assert (result.lower_stage, result.upper_stage) == (3, 4)
    assert result.evidence_stages == [3, 4]
    assert [e["meets"] for e in result.evidence] == [True] * 4 + [False] * 2
    assert not result.extrapolated and not result.warnings


def test_max_rps_on_a_smooth_hockey_stick_is_within_one_percent() -> None:
    # M/M/1-like p99 ~ 1/(mu - x): a dense ramp brackets the crossing tightly.
    mu, slo = 1000.0, 100.0
    xs = list(np.arange(50.0, 1000.0, 25.0))
    ys = [4.6 * 1000.0 / (mu - x) for x in xs]  # p99 of an exponential: ln(100)/(mu - x)
    result = max_rps_under_slo(ramp(xs, ys, users=list(range(1, len(xs) + 1))), slo)
    truth = mu - 4.6 * 1000.0 / slo
    assert result.method == "interpolated"
    assert result.max_rps == pytest.approx(truth, rel=0.01)


def test_error_and_reject_limits_break_the_slo_too() -> None:
    stages = ramp([100.0, 200.0, 300.0], [10.0, 12.0, 14.0])
    stages[2]["error_rate"] = 0.03  # crosses 1% a third of the way from 200 to 300 rps
    result = max_rps_under_slo(stages, slo_p99_ms=500.0)
    assert result.limited_by == "error_rate"
    assert result.max_rps == pytest.approx(200.0 + 100.0 / 3)

    stages = ramp([100.0, 200.0, 300.0], [10.0, 12.0, 14.0])
    stages[2]["reject_rate"] = 0.5
    assert max_rps_under_slo(stages, 500.0).limited_by == "reject_rate"
    assert max_rps_under_slo(stages, 500.0, max_reject_rate=0.6).method != "interpolated"


def test_no_stage_meets_the_slo() -> None:
    result = max_rps_under_slo(ramp([100.0, 200.0], [300.0, 600.0]), slo_p99_ms=200.0)
    assert result.method == "none"
    assert result.max_rps is None and result.capacity_rps is None
    assert result.upper_stage == 0
    assert "no stage meets the SLO" in result.warnings[0]


def test_nothing_breaks_reports_the_measured_lower_bound_never_a_line_through_p99() -> None:
    # p99 = x / 10 would "reach" 100 ms at 1000 rps along a line: never reported
    result = max_rps_under_slo(ramp([100.0, 200.0, 300.0], [10.0, 20.0, 30.0]), 100.0)
    assert result.method == "lower_bound" and not result.extrapolated
    assert result.max_rps == result.capacity_rps == 300.0
    assert result.lower_stage == 2 and result.upper_stage is None
    assert "lower bound" in result.warnings[0]


def test_throughput_that_stops_growing_is_saturation() -> None:
    # 4 -> 8 users: throughput falls while p99 breaks the SLO
    result = max_rps_under_slo(ramp([250.0, 400.0, 410.0, 330.0], [8.0, 9.0, 20.0, 250.0]), 100.0)
    assert result.method == "saturated" and result.limited_by == "throughput"
    assert result.capacity_rps == 410.0 and result.lower_stage == 2
    # every stage meets it but throughput peaked in the middle
    result = max_rps_under_slo(ramp([250.0, 400.0, 410.0, 330.0], [8.0, 9.0, 20.0, 250.0]), 500.0)
    assert result.method == "saturated" and result.capacity_rps == 410.0


def test_empty_stages_are_skipped_and_no_data_is_reported() -> None:
    stages = ramp([100.0, 200.0], [10.0, 20.0])
    stages[1]["measured_requests"] = 0
    assert max_rps_under_slo(stages, 100.0).method == "lower_bound"
    assert max_rps_under_slo([], 100.0).method == "no_data"
    with pytest.raises(ValueError, match="positive"):
        max_rps_under_slo(stages, 0)


def test_knee_of_a_known_curve() -> None:
    knee = find_knee(ramp(HOCKEY_X, HOCKEY_Y))
    assert knee.found and knee.index == 3 and knee.throughput_rps == 400.0
    assert knee.score is not None and knee.score > 0.5
    assert len(knee.evidence) == 6
    assert knee.evidence[4]["elasticity_from_previous"] > 1  # p99 grows faster after the knee
    assert knee.evidence[1]["elasticity_from_previous"] < 1


def test_no_knee_on_a_straight_line_or_too_few_stages() -> None:
    assert not find_knee(ramp([100.0, 200.0, 300.0, 400.0], [10.0, 20.0, 30.0, 40.0])).found
    few = find_knee(ramp([100.0, 200.0], [10.0, 100.0]))
    assert not few.found and "at least 3" in few.reason


def test_usl_fit_recovers_the_parameters() -> None:
    n = np.array([1, 2, 4, 8, 16, 24, 32, 48, 64], dtype=float)
    x = usl_throughput(n, 100.0, 0.05, 0.001)
    fit = fit_usl(n, x)
    assert fit.lam == pytest.approx(100.0, rel=1e-3)
    assert fit.sigma == pytest.approx(0.05, rel=1e-2)
    assert fit.kappa == pytest.approx(0.001, rel=1e-2)
    assert fit.r2 > 0.999 and not fit.poor_fit
    assert fit.n_star == pytest.approx(math.sqrt(0.95 / 0.001), rel=1e-2)
    assert fit.x_max == pytest.approx(float(usl_throughput(fit.n_star, 100.0, 0.05, 0.001)))

    noisy = x * np.random.default_rng(0).normal(1.0, 0.01, size=x.size)
    fit = fit_usl(n, noisy)
    assert fit.sigma == pytest.approx(0.05, rel=0.2)
    assert fit.kappa == pytest.approx(0.001, rel=0.2)
    assert fit.r2 > 0.98


def test_usl_flags_poor_fits() -> None:
    few = fit_usl([1, 2], [100.0, 190.0])
    assert few.poor_fit and "at least 5 levels" in few.reason and math.isnan(few.lam)
    zigzag = fit_usl([1, 2, 4, 8, 16], [100.0, 20.0, 300.0, 10.0, 250.0])
    assert zigzag.poor_fit and zigzag.r2 < 0.9
    linear = fit_usl([1, 2, 4, 8, 16], [100.0, 200.0, 400.0, 800.0, 1600.0])
    assert not linear.poor_fit and linear.kappa < 1e-6 and linear.n_star > 1000
    assert "far beyond" in linear.reason
    assert "lambda" in linear.to_dict()


@pytest.mark.parametrize("levels", [3, 4])
def test_usl_is_not_fitted_to_fewer_levels_than_can_test_it(levels: int) -> None:
    n = [1, 2, 4, 8][:levels]
    fit = fit_usl(n, [100.0, 190.0, 330.0, 500.0][:levels])  # 3 points: R^2 1.00 before
    assert fit.poor_fit and math.isnan(fit.lam) and math.isnan(fit.r2)
    assert f"not fitted: {levels} distinct concurrency level(s)" in fit.reason
    section = capacity_section(
        run("t", ramp([100.0, 190.0, 330.0, 500.0][:levels], [10.0, 11.0, 12.0, 14.0][:levels])),
        200.0,
    )
    assert section["usl"]["r2"] is None and "not fitted" in section["usl"]["reason"]
    assert any(w.startswith("USL: not fitted") for w in section["warnings"])


def test_littles_law_flags() -> None:
    stages = [
        stage(0, 10, 100.0, 200.0, mean_ms=100.0),  # 100/s x 0.1 s = 10 users: consistent
        stage(1, 10, 50.0, 200.0, mean_ms=100.0),  # only 5 busy
        stage(2, 10, 100.0, 200.0, mean_ms=100.0, generator_cpu_pct=95.0),
    ]
    check = littles_law_check(stages)
    assert check["ratio"].tolist() == pytest.approx([1.0, 0.5, 1.0])
    assert check["deviates"].tolist() == [False, True, False]
    assert check["generator_saturated"].tolist() == [False, False, True]
    assert check["suspect"].tolist() == [False, True, True]
    assert "outside the measured latency" in check["note"][1]
    assert "generator CPU 95%" in check["note"][2]
    # the run's own generator verdict (per process, open-loop lateness) counts too
    late = stage(3, 10, 100.0, 200.0, mean_ms=100.0, generator_ok=False,
                 generator_issues=["5.0% of sends more than 10 ms late"])  # fmt: skip
    flagged = littles_law_check([late])
    assert flagged["suspect"].tolist() == [True]
    assert "generator: 5.0% of sends" in flagged["note"][0]
    open_loop = littles_law_check([stage(0, 0, 100.0, 200.0)])
    assert open_loop["note"][0].startswith("open loop")
    # with the think time accounted for, 50/s x (0.1 + 0.1) s = 10 users
    assert littles_law_check(stages[1:2], think_time_s=0.1)["deviates"].tolist() == [False]


def summary(*runs: dict[str, Any], scenario: str = "ramp") -> dict[str, Any]:
    return {"scenario": scenario, "runs": list(runs)}


def run(target: str, stages: list[dict[str, Any]], status: str = "ok") -> dict[str, Any]:
    return {"target": target, "kind": "fastapi", "launcher": "process", "status": status,
            "stages": stages}  # fmt: skip


def test_stage_table_one_row_per_target_and_stage() -> None:
    s = summary(run("a", ramp(HOCKEY_X, HOCKEY_Y)), run("b", ramp([10.0, 20.0], [5.0, 6.0])))
    table = stage_table(s, replicas=2, source="folder")
    assert len(table) == 8
    assert table.groupby("target").size().to_dict() == {"a": 6, "b": 2}
    row = table.iloc[0]
    assert row["source"] == "folder" and row["scenario"] == "ramp"
    assert row["index"] == 0 and row["stage"] == 1  # the file's index; the stage people read
    assert row["cpu_cores"] == pytest.approx(0.6)
    assert row["cpu_s_per_request"] == pytest.approx(0.6 / 100.0)
    assert row["mem_mb_per_replica"] == pytest.approx(350.0)
    assert stage_table({"runs": []}).empty


def test_stage_table_by_name_and_missing_fields() -> None:
    st = stage(0, 1, 10.0, 50.0)
    st["by_name"] = {"job": {"rps": 9.0, "goodput_rps": 9.0, "p99_ms": 900.0}}
    del st["cpu_pct"]
    table = stage_table(summary(run("q", [st])), name="job")
    assert table["p99_ms"].iloc[0] == 900.0 and table["request_name"].iloc[0] == "job"
    assert math.isnan(table["cpu_pct"].iloc[0]) and math.isnan(table["cpu_s_per_request"].iloc[0])


def test_per_request_and_per_replica_arithmetic() -> None:
    assert cpu_seconds_per_request(150.0, 300.0) == pytest.approx(0.005)
    assert math.isnan(cpu_seconds_per_request(150.0, 0.0))
    assert memory_per_replica(900.0, 3) == 300.0
    with pytest.raises(ValueError):
        memory_per_replica(900.0, 0)


def test_slo_goodput_from_raw_records() -> None:
    requests = pd.DataFrame(
        {
            "stage": [0, 0, 0, 0, 1, 1, 1, 1],
            "latency_ms": [10.0, 50.0, 150.0, 20.0, 10.0, 300.0, 5.0, 5.0],
            "outcome": ["ok", "ok", "ok", "error", "ok", "ok", "rejected", "ok"],
            "in_window": [True, True, True, True, True, True, True, False],
        }
    )
    out = slo_goodput(requests, 100.0, {0: 2.0, 1: 1.0}).set_index("stage")
    assert out.loc[0, "ok"] == 3 and out.loc[0, "ok_within_slo"] == 2
    assert out.loc[0, "share_of_ok"] == pytest.approx(2 / 3)
    assert out.loc[0, "share_of_all"] == pytest.approx(2 / 4)  # the error counts as a miss
    assert out.loc[0, "slo_goodput_rps"] == pytest.approx(1.0)
    assert out.loc[1, "measured"] == 3  # the record outside the window is left out
    assert out.loc[1, "share_of_ok"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="stage"):
        slo_goodput(requests.drop(columns="stage"), 100.0)


def test_capacity_section_is_strict_json_with_the_evidence() -> None:
    section = capacity_section(run("a", ramp(HOCKEY_X, HOCKEY_Y)), slo_p99_ms=200.0)
    text = json.dumps(section, allow_nan=False)
    assert json.loads(text) == section
    assert section["max_rps"] == pytest.approx(462.0)
    assert section["method"] == "interpolated" and section["evidence_stages"] == [3, 4]
    assert section["knee"]["index"] == 3
    assert set(section["usl"]) >= {"lambda", "sigma", "kappa", "r2", "n_star", "x_max"}
    per = section["per_replica"]
    # CPU interpolated between 90% (400 rps) and 100% (500 rps) at 462 rps
    assert per["cpu_cores"] == pytest.approx((90.0 + 0.62 * 10.0) / 100.0, rel=1e-3)
    assert per["cpu_s_per_request"] == pytest.approx(per["cpu_cores"] / 462.0, rel=1e-3)
    assert per["mem_mb"] == 705.0  # the largest stage-mean RSS


def test_capacity_section_of_a_failed_run_does_not_raise() -> None:
    failed = {"target": "x", "status": "failed", "error": "did not start", "stages": []}
    section = capacity_section(failed)
    json.dumps(section, allow_nan=False)
    assert section["method"] == "no_data" and section["capacity_rps"] is None
    assert "failed" in section["warnings"][0]


def test_compare_runs_and_labels_across_folders() -> None:
    a = summary(run("fastapi", ramp(HOCKEY_X, HOCKEY_Y)))
    b = summary(run("fastapi", ramp([50.0, 90.0, 120.0], [5.0, 8.0, 400.0])))
    table = label_runs(stage_tables({"one": a, "two": b}))
    assert set(table["label"]) == {"one/fastapi", "two/fastapi"}
    assert common_users(table) == 4
    caps = capacities(table, 200.0)
    assert caps["one/fastapi"].capacity_rps == pytest.approx(462.0)
    comparison = compare_runs(table, 200.0).set_index("label")
    assert comparison.loc["one/fastapi", "p99_at_users_ms"] == 13.0  # the 4-user stage
    assert comparison.loc["two/fastapi", "at_users"] == 4
    assert comparison.loc["two/fastapi", "method"] == "interpolated"
    assert compare_runs(stage_table({"runs": []})).empty


def test_open_loop_and_find_max_runs() -> None:
    # find-max visits rates out of order; users are constant: the curve follows throughput
    rates = [(0, 100.0, 10.0), (1, 150.0, 12.0), (2, 225.0, 400.0), (3, 180.0, 60.0)]
    stages = [stage(i, 1, x, y, littles_law_users=x * y / 2000) for i, x, y in rates]
    result = max_rps_under_slo(stages, 100.0)
    assert (result.lower_stage, result.upper_stage) == (3, 2)
    assert result.max_rps == pytest.approx(180.0 + 40.0 / 340.0 * 45.0)
    found = {"max_rps": 190.0, "lowest_failing_rps": 200.0, "slo_p99_ms": 100.0,
             "complete": True, "points": []}  # fmt: skip
    section = capacity_section({**run("api", stages), "find_max": found}, slo_p99_ms=100.0)
    assert section["find_max"]["max_rps"] == 190.0
    assert not any("find-max" in w for w in section["warnings"])
    section = capacity_section({**run("api", stages), "find_max": found}, slo_p99_ms=300.0)
    assert any("find-max searched against p99 100.0 ms" in w for w in section["warnings"])


def test_open_loop_stages_sort_by_offered_rate_not_by_collapsed_goodput() -> None:
    """A find-max probe far over capacity (840 rps offered, 38% not sent) has less goodput
    (513 rps) than a passing 524 rps probe; the curve must still put it last, so capacity
    lies between the last passing and the first failing offered rate."""
    over = stage(3, 0, 840.0, 2350.0, goodput_rps=513.0, error_rate=0.38)
    run = {"target": "t", "kind": "fastapi", "status": "ok", "stages": [
        stage(0, 0, 205.0, 5.5), stage(1, 0, 524.0, 8.5), stage(2, 0, 572.0, 26.7), over,
        stage(4, 0, 590.0, 535.8)]}  # fmt: skip
    cap = run_capacity(run, slo_p99_ms=100.0)
    assert cap.max_rps.method == "interpolated"
    assert (cap.max_rps.lower_stage, cap.max_rps.upper_stage) == (2, 4)
    assert 572.0 < (cap.capacity_rps or 0) < 590.0
    assert cap.littles_law.empty or not cap.littles_law["suspect"].any()  # users 0: not checked
