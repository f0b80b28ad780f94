"""Plots return Figures with the expected axes, lines and labels (no image comparison)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from matplotlib.figure import Figure

from analysis import plots
from analysis.compare import capacities, compare_runs, label_runs
from analysis.tables import stage_tables


def stage(i: int, users: int, rps: float, p99: float, **extra: Any) -> dict[str, Any]:
    row = {"index": i, "users": users, "measured_requests": 1000, "rps": rps,
           "goodput_rps": rps, "error_rate": 0.0, "reject_rate": 0.0, "mean_ms": p99 / 2,
           "p50_ms": p99 / 3, "p95_ms": p99 * 0.8, "p99_ms": p99, "cpu_pct": 100.0 + i,
           "mem_mb": 700.0, "pss_mb": 600.0, "generator_cpu_pct": 10.0}  # fmt: skip
    row.update(extra)
    return row


XS, YS = [100.0, 200.0, 300.0, 400.0, 500.0], [10.0, 11.0, 12.0, 13.0, 300.0]


@pytest.fixture
def table() -> pd.DataFrame:
    a = {
        "scenario": "s",
        "runs": [
            {
                "target": "a",
                "kind": "fastapi",
                "status": "ok",
                "stages": [
                    stage(i, 2**i, x, y) for i, (x, y) in enumerate(zip(XS, YS, strict=True))
                ],
            }
        ],
    }
    b = {"scenario": "s", "runs": [{"target": "b", "kind": "flask", "status": "ok",
         "stages": [stage(0, 1, 50.0, 20.0), stage(1, 2, 60.0, 40.0, reject_rate=0.2,
                                                   error_rate=0.05)]}]}  # fmt: skip
    return label_runs(stage_tables({"one": a, "two": b}))


def test_throughput_vs_users_with_usl(table: pd.DataFrame) -> None:
    caps = capacities(table, 100.0)
    fig = plots.throughput_vs_users(table, usl={k: c.usl for k, c in caps.items()})
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[0] == "a" and labels[1].startswith("a: USL") and labels[-1] == "b"
    assert len(ax.get_lines()) == 3  # b has 2 stages: no USL fit drawn
    assert ax.get_xlabel() == "concurrent users"
    assert list(ax.get_lines()[0].get_xdata()) == [1, 2, 4, 8, 16]
    assert ax.get_xscale() == "log"


def test_latency_vs_throughput_marks_slo_and_knee(table: pd.DataFrame) -> None:
    caps = capacities(table, 100.0)
    fig = plots.latency_vs_throughput(
        table, 100.0, knees={k: c.knee for k, c in caps.items()},
        max_rps={k: c.max_rps for k, c in caps.items()},
    )  # fmt: skip
    (ax,) = fig.axes
    labels = [line.get_label() for line in ax.get_lines()]
    assert {"a p50", "a p95", "a p99", "b p50", "b p95", "b p99"} <= set(labels)
    assert "SLO p99 ≤ 100 ms" in labels
    assert any(lab.startswith("a max under SLO (") for lab in labels)
    slo = next(line for line in ax.get_lines() if line.get_label().startswith("SLO"))
    assert list(slo.get_ydata()) == [100.0, 100.0]
    knee_marks = [c for c in ax.collections if c.get_label().startswith("a knee")]
    assert len(knee_marks) == 1
    assert tuple(knee_marks[0].get_offsets()[0]) == (400.0, 13.0)
    p99 = next(line for line in ax.get_lines() if line.get_label() == "a p99")
    assert list(p99.get_xdata()) == XS and list(p99.get_ydata()) == YS
    assert ax.get_xlabel() == "throughput (ok requests/s)"


def test_resources_over_time_shades_stages_and_does_not_double_samples() -> None:
    t0 = 1000.0
    timeline = [{"index": 0, "users": 1, "start_ts": t0, "end_ts": t0 + 5},
                {"index": 1, "users": 4, "start_ts": t0 + 5, "end_ts": t0 + 10}]  # fmt: skip
    rows = []
    for k in range(10):
        ts = t0 + k + (0.49 if k == 3 else 0.0)
        rows.append({"ts": ts, "role": "target", "name": "target", "cpu_pct": 100.0,
                     "mem_mb": 700.0, "pss_mb": 600.0})  # fmt: skip
        rows.append({"ts": ts, "role": "generator", "name": "gen", "cpu_pct": 10.0,
                     "mem_mb": 50.0, "pss_mb": 40.0})  # fmt: skip
    # a second sample of the target within the same second as k=3
    rows.append({"ts": t0 + 3.2, "role": "target", "name": "target", "cpu_pct": 100.0,
                 "mem_mb": 700.0, "pss_mb": 600.0})  # fmt: skip
    samples = pd.DataFrame(rows)
    series = plots.role_series(samples, "target", t0)
    assert series["mem_mb"].max() == 700.0  # averaged per source and second, never summed
    fig = plots.resources_over_time(samples, timeline)
    ax_cpu, ax_mem = fig.axes
    assert [line.get_label() for line in ax_cpu.get_lines()] == ["target", "generator"]
    assert [line.get_label() for line in ax_mem.get_lines()] == ["target RSS", "target PSS"]
    assert len(ax_cpu.patches) == 2  # one shaded span per stage
    assert [t.get_text() for t in ax_cpu.texts] == ["1u", "4u"]
    assert "CPU" in ax_cpu.get_ylabel() and ax_mem.get_ylabel() == "memory (MB)"


def test_resources_over_time_without_samples() -> None:
    empty = pd.DataFrame(columns=["ts", "role", "name", "cpu_pct", "mem_mb", "pss_mb"])
    fig = plots.resources_over_time(empty, None)
    assert [t.get_text() for t in fig.axes[0].texts] == ["no resource samples"]


def test_outcomes_per_stage(table: pd.DataFrame) -> None:
    fig = plots.outcomes_per_stage(table)
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in visible] == ["a", "b"]
    b = visible[1]
    heights = [round(p.get_height(), 6) for p in b.patches]
    assert heights == [0.0, 5.0, 0.0, 20.0]  # errors then rejections, in % per stage


def test_architecture_comparison(table: pd.DataFrame) -> None:
    comparison = compare_runs(table, 100.0)
    fig = plots.architecture_comparison(comparison)
    assert len(fig.axes) == 4
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("max RPS under the SLO")
    assert titles[1] == "p99 at 2 users"
    assert [len(ax.patches) for ax in fig.axes] == [2, 2, 2, 2]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b"]


def test_empty_tables_still_give_figures() -> None:
    empty = label_runs(stage_tables({}))
    for fig in (plots.throughput_vs_users(empty), plots.latency_vs_throughput(empty, 100.0),
                plots.outcomes_per_stage(empty),
                plots.architecture_comparison(compare_runs(empty))):  # fmt: skip
        assert isinstance(fig, Figure)


def test_save_and_png(tmp_path: Path, table: pd.DataFrame) -> None:
    fig = plots.throughput_vs_users(table)
    path = plots.save(fig, tmp_path / "sub" / "t.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plots.to_png(fig)[:4] == b"\x89PNG"
