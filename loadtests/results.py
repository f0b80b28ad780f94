"""Finish a target's run folder: merge the incremental parts, label stages, compute its summary."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.load import SAMPLE_FILES, read_requests, read_samples, read_timeline
from analysis.sequential import sequential_summary
from analysis.stages import (
    assign_stage,
    label_requests,
    overall_stats,
    stage_stats,
    timeline_frame,
)


@dataclass
class Finalized:
    stages: list[dict[str, Any]] = field(default_factory=list)
    overall: dict[str, Any] = field(default_factory=dict)


def finalize_target(target_dir: Path, settle_s: float, primary: str | None = None) -> Finalized:
    """Write requests.parquet / resources.parquet (with ``stage``); stage and overall stats.

    The CSV parts are removed only after the Parquet files are written, so a failure here
    loses nothing. Empty when the load never started (no timeline).
    """
    requests = read_requests(target_dir)
    samples = read_samples(target_dir)
    raw = read_timeline(target_dir)
    if raw is None:
        return Finalized()
    last_ts = float(requests["ts"].max()) if len(requests) else None
    timeline = timeline_frame(raw, open_end_ts=max(last_ts or 0.0, time.time()))
    labelled = label_requests(requests, timeline, settle_s)
    labelled.to_parquet(target_dir / "requests.parquet", index=False)
    if not samples.empty:
        samples = samples.assign(stage=assign_stage(samples["ts"], timeline, clip=False))
    samples.to_parquet(target_dir / "resources.parquet", index=False)
    for part in [*target_dir.glob("requests-*.csv"), *(target_dir / n for n in SAMPLE_FILES)]:
        part.unlink(missing_ok=True)
    return Finalized(
        stage_stats(labelled, samples, timeline, settle_s, primary),
        overall_stats(labelled, timeline, settle_s, primary),
    )


def mode_results(target_dir: Path, mode: str) -> dict[str, Any]:
    """Mode-specific results for summary.json: find-max's search, sequential totals."""
    if mode == "find-max" and (target_dir / "findmax.json").exists():
        return {"find_max": json.loads((target_dir / "findmax.json").read_text())}
    if mode == "sequential" and (target_dir / "sequential.json").exists():
        runs = json.loads((target_dir / "sequential.json").read_text())
        return {"sequential": sequential_summary(runs)}
    return {}


def write_paper_tables(out: Path, summary: dict[str, Any]) -> list[Path]:
    """Tables 3 and 4 in the paper's layout, ours beside the published figures (CSV + text)."""
    from analysis.capacity import stage_table
    from analysis.paper import table3, table4

    stages = stage_table(summary, source="run")
    if stages.empty:
        return []
    t3 = table3(stages, summaries={"run": summary})
    t4 = table4(stages, summaries={"run": summary})
    paths = [out / "table3.csv", out / "table4.csv", out / "paper_tables.txt"]
    t3.to_csv(paths[0])
    t4.to_csv(paths[1], index=False)
    with_ratios = t3.round(3).to_string()
    text = (
        "Table 3: mean total seconds for N sequential requests (paper vs ours)\n\n"
        f"{with_ratios}\n\nTable 4: CPU and RAM while serving (paper: 8 cores)\n\n"
        f"{t4.round(2).to_string(index=False)}\n"
    )
    paths[2].write_text(text, encoding="utf-8")
    return paths
