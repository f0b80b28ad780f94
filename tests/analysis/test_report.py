"""Reports: display helpers, results loading, the paper's tables, and (integration) the
notebooks executed headless on a real results folder and exported to HTML."""

from __future__ import annotations

import html
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest
import yaml

from analysis import display, notebooks, paper, report
from analysis import results as results_io
from analysis.capacity import capacity_section
from analysis.compare import label_runs
from analysis.tables import stage_tables
from tests.runs import SmokeRun


def stage(i: int, users: int, rps: float, mean_ms: float, **extra: Any) -> dict[str, Any]:
    row = {"index": i, "users": users, "measured_requests": int(rps * 10), "rps": rps,
           "goodput_rps": rps, "error_rate": 0.0, "reject_rate": 0.0, "mean_ms": mean_ms,
           "p50_ms": mean_ms, "p95_ms": mean_ms * 2, "p99_ms": mean_ms * 3, "cpu_pct": 80.0,
           "mem_mb": 700.0, "pss_mb": 500.0, "generator_cpu_pct": 10.0}  # fmt: skip
    row.update(extra)
    return row


def write_results(folder: Path, summary: dict[str, Any], think_time_s: float = 0.0) -> Path:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    scenario = {"scenario": summary["scenario"],
                "definition": {"load": {"think_time_s": think_time_s, "stages": []},
                               "slo": {"p99_ms": 250.0}}}  # fmt: skip
    (folder / "scenario.yaml").write_text(yaml.safe_dump(scenario))
    return folder


SUMMARY = {
    "scenario": "ramp",
    "runs": [
        {"target": "api", "kind": "fastapi", "status": "ok", "requests": 10,
         "paper_architecture": "FastAPI", "paper_same_path": False,
         "stages": [stage(0, 1, 250.0, 4.0), stage(1, 4, 500.0, 8.0)]},
        {"target": "chain", "kind": "django-to-tfserving", "status": "ok",
         "paper_architecture": "TF Serving", "paper_same_path": True,
         "stages": [stage(0, 1, 100.0, 10.0)],
         "sequential": [{"requests": 1, "mean_total_s": 0.02},
                        {"requests": 10, "mean_total_s": 0.15}]},
        {"target": "queue", "kind": "jobqueue", "status": "ok",
         "stages": [stage(0, 1, 10.0, 100.0)]},
    ],
}  # fmt: skip


def test_format_frame_and_table_html() -> None:
    frame = pd.DataFrame({"run": ["a", "b"], "error rate": [0.012, math.nan],
                          "rps": [1234.5, 12.345], "ok": [True, False], "n": [3, 4]})  # fmt: skip
    shown = display.format_frame(frame)
    assert shown["error rate"].tolist() == ["1.20%", "\u2013"]
    assert shown["rps"].tolist() == ["1,234", "12.35"] or shown["rps"].tolist() == [
        "1,235", "12.35"
    ]  # fmt: skip
    assert shown["ok"].tolist() == ["yes", "no"]
    html = display.table_html(frame, caption="Stages")
    assert 'class="dataframe"' in html and "<caption" in html and "Stages" in html
    assert "text-align: left" in html  # the text column
    wide = paper.table3(label_runs(stage_tables({"x": SUMMARY})))
    assert "th.col_heading.level0" in display.table_html(wide, index=True)


def test_load_results_and_tables(tmp_path: Path) -> None:
    folder = write_results(tmp_path / "run1", SUMMARY, think_time_s=0.5)
    results = results_io.load_results(folder)
    assert results.name == "run1" and results.targets == ["api", "chain", "queue"]
    assert results.think_time_s == 0.5 and results.slo_p99_ms == 250.0
    assert set(results.table["label"]) == {"api", "chain", "queue"}
    assert results.requests("api").empty  # no records in this synthetic folder
    other = results_io.load_results(write_results(tmp_path / "x" / "run1", SUMMARY))
    both = results_io.combined_table([results, other])
    assert {"run1/api", "run1#2/api"} <= set(both["label"])
    assert list(results_io.summaries([results, other])) == ["run1", "run1#2"]
    assert len(report.runs_overview([results, other])) == 6
    overview = report.plans_overview([results], 100.0, daily_requests=1e6, peak_factor=2)
    assert overview["target"].tolist() == ["api", "chain", "queue"]
    with pytest.raises(FileNotFoundError, match="servecap results folder"):
        results_io.load_results(tmp_path)


def test_paper_tables_side_by_side() -> None:
    table = label_runs(stage_tables({"run": SUMMARY}))
    long = paper.table3_long(table, summaries={"run": SUMMARY})
    ours = long[long["source"].str.startswith("ours (derived): api")]
    # derived: the 1-user stage's mean latency (4 ms) x N
    assert ours.set_index("requests")["total_s"].to_dict() == pytest.approx(
        {1: 0.004, 10: 0.04, 100: 0.4, 1_000: 4.0, 10_000: 40.0}
    )
    assert (ours["architecture"] == "FastAPI").all()
    assert ours["source"].iloc[0].endswith("server only")  # fastapi alone, not the chain
    measured = long[long["source"] == "ours (measured): chain"]
    assert measured["total_s"].tolist() == [0.02, 0.15] and not measured["derived"].any()
    assert not long["source"].str.contains("queue").any()  # no paper architecture
    wide = paper.table3(table, summaries={"run": SUMMARY})
    assert list(wide.index) == [1, 10, 100, 1_000, 10_000]
    assert wide[("TF Serving", "paper")].tolist() == [0.009, 0.082, 0.826, 8.167, 82.519]
    assert [a for a, _ in wide.columns][:3] == ["embedded", "Flask API", "FastAPI"]
    t4 = paper.table4(table)
    assert t4[t4["source"] == "paper"]["RAM MB"].tolist() == [450.5, 200.7, 260.2, 275.6]
    row = t4[t4["source"].str.startswith("ours (derived): api")].iloc[0]
    assert row["CPU % of 8 cores"] == pytest.approx(10.0) and row["CPU cores"] == 0.8
    chain = {"paper_architecture": "Flask API", "paper_same_path": True}
    assert paper.architecture_of(chain) == ("Flask API", True)
    assert paper.architecture_of({"kind": "jobqueue", "paper_architecture": None}) is None


def test_kernel_resolves_to_this_interpreter() -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    name = notebooks.resolve_kernel_name()
    argv = KernelSpecManager().get_kernel_spec(name).argv
    assert "ipykernel_launcher" in " ".join(argv) or "ipykernel" in " ".join(argv)
    assert (
        argv[0] in ("python", "python3", f"python3.{sys.version_info[1]}")
        or Path(argv[0]).resolve() == Path(sys.executable).resolve()
    )


def test_build_report_refuses_what_is_not_a_results_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="servecap results folder"):
        notebooks.build_report([tmp_path], tmp_path / "out")
    with pytest.raises(ValueError, match="at least one"):
        notebooks.build_report([], tmp_path / "out")


# --------------------------------------------------------------------------- integration


@pytest.mark.slow
@pytest.mark.integration
def test_report_of_a_real_smoke_run(smoke_run: SmokeRun, tmp_path: Path) -> None:
    smoke_results = smoke_run.out
    summary = json.loads((smoke_results / "summary.json").read_text())
    section = capacity_section(summary["runs"][0], slo_p99_ms=500.0)
    json.dumps(section, allow_nan=False)
    assert section["capacity_rps"] > 0 and section["per_replica"]["mem_mb"] > 100

    started = time.monotonic()
    out = tmp_path / "report"
    paths = notebooks.build_report([smoke_results], out, slo_p99_ms=200.0, daily_requests=50e6,
                                peak_factor=2.5)  # fmt: skip
    elapsed = time.monotonic() - started
    assert [p.name for p in paths] == ["capacity_report-smoke-results.html",
                                       "architecture_comparison.html"]  # fmt: skip
    assert elapsed < 60, f"report took {elapsed:.0f} s"

    single = html.unescape(paths[0].read_text())
    headings = ("Capacity report", "Stage statistics", "Capacity under the SLO",
                "Latency vs throughput", "Throughput vs concurrent users",
                "Requests within the SLO", "CPU and memory over time",
                "Errors and rejections per stage", "Little's law check", "Sizing")  # fmt: skip
    for heading in headings:
        assert f">{heading}<" in single, heading
    assert single.count('src="data:image/png;base64,') >= 4
    assert 'alt="Latency vs throughput"' in single
    assert "50,000,000 requests/day" in single and "p99 <= 200 ms" in single
    assert "Traceback" not in single

    comparison = html.unescape(paths[1].read_text())
    for heading in ("Architecture comparison", "Load curves", "Table 3:", "Table 4:",
                    "Sizing for the demand"):  # fmt: skip
        assert heading in comparison, heading
    assert comparison.count('src="data:image/png;base64,') >= 3
    assert "ours (derived): fastapi, server only" in comparison
    assert "Traceback" not in comparison

    executed = nbformat.read(out / "capacity_report-smoke-results.ipynb", as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]  # fmt: skip
    assert not errors
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert "slo_p99_ms = 200.0" in injected[0].source


def test_kernel_fallback_installs_a_spec_for_this_interpreter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(notebooks.FALLBACK_KERNEL)
        pytest.skip("a servecap kernelspec is installed already")
    except NoSuchKernel:
        pass
    monkeypatch.setattr(sys, "prefix", str(tmp_path))  # install into a throwaway prefix
    assert notebooks.resolve_kernel_name("no-such-kernel") == notebooks.FALLBACK_KERNEL
    spec = json.loads((tmp_path / "share/jupyter/kernels/servecap/kernel.json").read_text())
    assert Path(spec["argv"][0]).resolve() == Path(sys.executable).resolve()


def test_table4_of_a_sequential_run_averages_every_repeat_of_its_largest_n() -> None:
    """The paper's Table 4 is "while serving 10,000 requests": a sequential run's CPU and
    memory are the means over every repeat of its largest N, labelled measured."""
    runs = [stage(0, 1, 10.0, 5.0, measured_requests=10, cpu_pct=400.0),
            stage(1, 1, 10.0, 5.0, measured_requests=100, cpu_pct=80.0, mem_mb=600.0),
            stage(2, 1, 10.0, 5.0, measured_requests=100, cpu_pct=120.0, mem_mb=800.0)]  # fmt: skip
    seq = {"scenario": "p", "runs": [
        {"target": "fa", "kind": "fastapi", "status": "ok", "stages": runs,
         "paper_architecture": "FastAPI", "paper_same_path": False,
         "sequential": [{"requests": 10, "mean_total_s": 0.05},
                        {"requests": 100, "mean_total_s": 0.5}]}]}  # fmt: skip
    table = label_runs(stage_tables({"run": seq}))
    t4 = paper.table4(table, summaries={"run": seq})
    ours = t4[t4["source"].str.startswith("ours")].iloc[0]
    assert ours["source"] == "ours (measured): fa, server only (2 x 100 sequential requests)"
    assert ours["CPU cores"] == pytest.approx(1.0)  # (80 + 120) / 2 %, the N=10 stage left out
    assert ours["RAM MB"] == pytest.approx(700.0)
    derived = paper.table4(table)  # without the summary: derived, as for a ramp
    assert derived["source"].str.contains("ours \\(derived\\)").any()


def test_time_breakdown_splits_the_mean_into_queue_model_and_the_rest() -> None:
    batched = {"scenario": "b", "runs": [
        {"target": "tri", "kind": "triton", "status": "ok", "stages": [
            stage(0, 1, 100.0, 5.0, server_queue_ms=0.5, server_model_ms=3.0,
                  server_batch_size_mean=1.0),
            stage(1, 8, 400.0, 20.0, server_queue_ms=6.0, server_model_ms=10.0,
                  server_batch_size_mean=4.0)]},
        {"target": "plain", "kind": "echo", "status": "ok", "stages": [stage(0, 1, 50.0, 9.0)]},
    ]}  # fmt: skip
    frame = report.time_breakdown(label_runs(stage_tables({"b": batched})))
    assert frame["run"].tolist() == ["tri", "tri"]  # no server metrics: not shown
    last = frame.iloc[1]
    assert (last["queue ms"], last["model ms"], last["rest ms"]) == (6.0, 10.0, 4.0)
    assert last["rest share"] == pytest.approx(0.2) and last["batch size"] == 4.0


def job_queue_records() -> pd.DataFrame:
    """One stage of a job queue: 4 jobs of 200 ms, each a submit and two polls."""
    rows = []
    for i in range(4):
        t = 100.0 + i
        rows += [(t, 5.0, "submit"), (t + 0.01, 100.0, "poll"), (t + 0.11, 90.0, "poll"),
                 (t, 200.0, "job")]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["ts", "latency_ms", "name"])
    return frame.assign(status=200, bytes=10, outcome="ok", users=1, error="", stage=0,
                        in_window=True)  # fmt: skip


def test_slo_goodput_of_a_job_queue_counts_jobs_not_its_requests(tmp_path: Path) -> None:
    queue = {"target": "queue", "kind": "jobqueue", "status": "ok",
             "stages": [stage(0, 1, 0.4, 200.0, window_s=10.0,
                              by_name={"job": {}, "submit": {}, "poll": {}})]}  # fmt: skip
    folder = write_results(tmp_path / "run", {"scenario": "jobs", "runs": [queue]})
    (folder / "queue").mkdir()
    job_queue_records().to_parquet(folder / "queue" / "requests.parquet")
    table = report.slo_goodput_table(results_io.load_results(folder), 250.0)
    (row,) = table.to_dict("records")
    assert row["counted"] == "jobs" and row["measured"] == 4 and row["ok within SLO"] == 4
    assert row["SLO goodput (/s)"] == pytest.approx(0.4)  # 4 jobs in 10 s, not 16 requests
    assert row["stage"] == 1  # stages are read from 1, as the console numbers them


def test_report_tables_number_stages_from_one() -> None:
    caps = {"api": capacity_section_of(SUMMARY["runs"][0])}
    littles = report.littles_law_overview(caps)
    assert littles["stage"].tolist() == [1, 2]


def capacity_section_of(run: dict[str, Any]) -> Any:
    from analysis.capacity import run_capacity

    return run_capacity(run, 250.0)


def test_faults_table_charges_each_lost_job_to_one_fault() -> None:
    from analysis.faults import impacts, job_accounting

    frame = job_queue_records().drop(columns=["stage", "in_window"])
    lost = pd.DataFrame({"ts": [109.0, 129.5, 131.0, 150.0],
                         "latency_ms": [500.0, 30_000.0, 800.0, 100.0], "name": "job",
                         "outcome": "error", "error": "job failed: lost"})  # fmt: skip
    records = pd.concat([frame, lost.assign(status=0, bytes=0, users=1)], ignore_index=True)
    events = [{"action": "restart", "part": "redis", "start_ts": 130.0},
              {"action": "kill", "part": "worker", "start_ts": 140.0}]  # fmt: skip
    out = impacts(records, events, 160.0, 250.0, "job")
    # 109 s: before any fault, none; 129.5 s: in flight at the restart; 131 s: submitted in
    # the restart's window; 150 s: in the kill's window (nothing hit it while in flight)
    assert [e["impact"]["jobs_lost"] for e in out] == [2, 1]
    assert job_accounting(records)["lost"] == 4  # the run's total, once
    faults = {"injected": out, "jobs": job_accounting(records)}
    summary = {"runs": [{"target": "queue", "kind": "jobqueue", "faults": faults}]}
    results = results_io.Results(Path("run"), summary)
    assert report.faults_overview([results])["jobs lost"].tolist() == [2, 1]
    (jobs,) = report.jobs_overview([results]).to_dict("records")
    assert jobs["jobs lost"] == 4 and jobs["jobs accepted"] == 4
