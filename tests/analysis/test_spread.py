"""Run-to-run spread of repeated runs, and the conservative run to size from."""

from __future__ import annotations

from typing import Any

from analysis.spread import conservative_summary, figure_spread, spread


def summary(rps: float, p99: float, capacity: float | None) -> dict[str, Any]:
    stage = {"index": 0, "users": 4, "rps": rps, "goodput_rps": rps, "p99_ms": p99}
    run = {"target": "api", "status": "ok", "stages": [stage],
           "capacity": {"capacity_rps": capacity}}  # fmt: skip
    return {"scenario": "s", "runs": [run]}


def test_median_min_max_and_relative_range() -> None:
    result = spread([summary(100, 20, 90), summary(120, 25, 110), summary(90, 40, 80)])
    (stage,) = result["targets"]["api"]["stages"]
    assert stage["goodput_rps"] == {"median": 100, "min": 90, "max": 120, "range_share": 0.3,
                                    "runs": 3}  # fmt: skip
    assert stage["p99_ms"]["median"] == 25 and result["runs"] == 3
    assert result["targets"]["api"]["capacity_rps"]["min"] == 80
    assert figure_spread([None, float("nan")])["median"] is None


def test_sizing_uses_the_lowest_capacity_and_counts_a_run_without_one_as_lowest() -> None:
    runs = [summary(100, 20, 90), summary(120, 25, 110), summary(90, 40, 80)]
    chosen = conservative_summary(runs, lambda run: run["capacity"]["capacity_rps"])
    assert chosen["runs"][0]["capacity"]["capacity_rps"] == 80
    failed = conservative_summary([*runs, summary(0, 0, None)],
                                  lambda run: run["capacity"]["capacity_rps"])  # fmt: skip
    assert failed["runs"][0]["capacity"]["capacity_rps"] is None
