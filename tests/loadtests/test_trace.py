"""Trace replay: trace files read into rate stages, and a replay through `servecap run` (the
sleepy test kind as its target)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from loadtests.spec import SpecError, parse_scenarios
from loadtests.trace import TraceError, planned_requests, trace_stages


def test_rates_and_timestamps_become_rate_stages(tmp_path: Path) -> None:
    rates = tmp_path / "rates.csv"
    rates.write_text("rps,duration_s\n10,60\n0,30\n25.5,60\n")
    stages = trace_stages(rates, "rates", 1.0, time_scale=60, rate_scale=2)
    # a day-like shape compressed 60x: same rates (x rate_scale), durations / 60
    assert stages == [{"rps": 20.0, "duration_s": 1.0}, {"rps": 0.0, "duration_s": 0.5},
                      {"rps": 51.0, "duration_s": 1.0}]  # fmt: skip
    assert planned_requests(stages) == pytest.approx(71.0)
    stamps = tmp_path / "stamps.csv"
    stamps.write_text("timestamp_s\n" + "\n".join(str(100 + t / 10) for t in range(25)) + "\n")
    # 25 requests over 2.4 s, bins of 1 s: 10, 10, 5
    binned = trace_stages(stamps, "timestamps", 1.0, time_scale=1, rate_scale=1)
    assert [s["rps"] for s in binned] == [10.0, 10.0, 5.0]
    faster = trace_stages(stamps, "timestamps", 1.0, time_scale=2, rate_scale=1)
    assert [s["rps"] for s in faster] == [20.0, 20.0, 10.0]
    assert planned_requests(faster) == pytest.approx(25)  # every request, sooner


@pytest.mark.parametrize(
    ("text", "message"),
    [("rate\n1\n", "needs a header with an 'rps' column"), ("rps\nfast\n", "line 2: rps 'fast'"),
     ("rps\n0\n0\n", "no request at all"), ("rps\n-3\n", "must be a number >= 0"),
     ("rps,duration_s\n5\n", "line 2: duration_s '' is not a number")],
)  # fmt: skip
def test_bad_trace_files_name_the_line_and_fix(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(TraceError, match=message):
        trace_stages(path, "rates", 1.0, 1.0, 1.0)


def test_a_timestamp_trace_spanning_too_long_fails_before_building_intervals(
    tmp_path: Path,
) -> None:
    import tracemalloc

    path = tmp_path / "t.csv"
    path.write_text("timestamp_s\n0\n5000000\n")  # 5 million 1-s intervals, two rows
    tracemalloc.start()
    try:
        with pytest.raises(TraceError, match="line 3: .*more than 1000 intervals of 1 s"):
            trace_stages(path, "timestamps", 1.0, 1.0, 1.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, peak  # no interval was built (they took 461 MB)


@pytest.mark.parametrize(
    ("form", "text", "message"),
    [("timestamps", "timestamp_s\n1e300\n", None),  # one request: one interval, fine
     ("timestamps", "timestamp_s\n0\n1e300\n", "line 3: timestamp 1e\\+300 makes"),
     ("rates", "rps\n1e300\n", "line 2: a rate of 1e\\+300 rps .* more than 100000 rps"),
     ("rates", "rps,duration_s\n5,1e300\n", "line 2: an interval of 1e\\+300 s"),
     ("rates", "rps\n" + "5\n" * 1_500, "line 1002: more than 1000 intervals"),
     ("rates", "rps\n5\n" + "9" * 200_000 + "\n", "line 3: not a trace row .*field larger"),
     ("rates", "rps\n5\n\"" + "9" * 200_000 + "\"\n", "line 3: not a trace row"),
     ("rates", "", "is empty; it needs a header with an 'rps' column")],
)  # fmt: skip
def test_huge_numbers_and_fields_are_trace_errors_naming_the_line(
    tmp_path: Path, form: str, text: str, message: str | None
) -> None:
    path = tmp_path / "t.csv"
    path.write_text(text)
    if message is None:
        assert trace_stages(path, form, 1.0, 1.0, 1.0) == [{"rps": 1.0, "duration_s": 1.0}]
        return
    with pytest.raises(TraceError, match=message):
        trace_stages(path, form, 1.0, 1.0, 1.0)


def test_a_byte_order_mark_is_not_part_of_the_header(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes("\ufeffrps,duration_s\r\n5,2\r\n".encode())
    assert trace_stages(path, "rates", 1.0, 1.0, 1.0) == [{"rps": 5.0, "duration_s": 2.0}]
    path.write_bytes("\ufefftimestamp_s\n1\n1.5\n".encode())
    assert trace_stages(path, "timestamps", 1.0, 1.0, 1.0) == [{"rps": 2.0, "duration_s": 1.0}]
    path.write_bytes(b"rps\n\xff\xfe5\n")
    with pytest.raises(TraceError, match="not UTF-8 text"):
        trace_stages(path, "rates", 1.0, 1.0, 1.0)


def test_mode_trace_in_a_scenario_is_a_rate_plan(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("rps\n5\n15\n")
    doc = {
        "targets": {"api": {"kind": "fastapi"}},
        "scenarios": {
            "s": {
                "targets": ["api"],
                "load": {"mode": "trace", "trace": {"file": str(path), "interval_s": 2}},
            }
        },
    }
    plan = parse_scenarios(doc).scenarios["s"].load
    assert plan.mode == "rate" and plan.trace is not None and plan.settle_s == 0
    assert [(s.rps, s.duration_s) for s in plan.stages] == [(5, 2), (15, 2)]
    # the resolved plan (as a results folder keeps it) reads back the same
    again = parse_scenarios(
        {**doc, "scenarios": {"s": {"targets": ["api"], "load": plan.model_dump()}}}
    )
    assert again.scenarios["s"].load.stages == plan.stages
    missing = {
        **doc,
        "scenarios": {
            "s": {
                "targets": ["api"],
                "load": {"mode": "trace", "trace": {"file": str(tmp_path / "none.csv")}},
            }
        },
    }
    with pytest.raises(SpecError, match="cannot read trace"):
        parse_scenarios(missing)


@pytest.mark.slow
@pytest.mark.integration
def test_a_three_level_trace_replays_its_planned_requests(
    sleepy_kind: Path, cifar_dir: Path, tmp_path: Path
) -> None:
    from loadtests.orchestrator import RunOptions, run
    from tests.ports import free_port

    trace = tmp_path / "day.csv"
    trace.write_text("rps,duration_s\n15,4\n45,4\n30,4\n")
    spec = parse_scenarios({
        "targets": {"api": {"kind": "sleepy", "port": free_port()}},
        "scenarios": {"replay": {"targets": ["api"], "load": {
            "mode": "trace", "trace": {"file": str(trace)}, "warmup_requests": 5,
            "image_pool": 8}}},
    })  # fmt: skip
    out = tmp_path / "results"
    outcome = run(RunOptions("replay", spec, tmp_path / "s.yaml", out, data_dir=str(cifar_dir)),
                  echo=lambda _: None)  # fmt: skip
    assert outcome.ok, outcome.failures
    planned = 15 * 4 + 45 * 4 + 30 * 4
    records = pd.read_parquet(out / "api" / "requests.parquet")
    sent = int((records["name"] == "predict").sum())
    assert abs(sent - planned) / planned <= 0.02, (sent, planned)
    (entry,) = json.loads((out / "summary.json").read_text())["runs"]
    stages = entry["stages"]
    assert len(stages) == 3 and all(s["p99_ms"] and s["p99_ms"] > 0 for s in stages)
    rates = [s["rps"] for s in stages]
    assert rates[0] < rates[2] < rates[1]  # the trace's shape, interval by interval
