"""Finish a target's run folder: merge the incremental parts, label stages, compute its summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from analysis.load import read_requests, read_samples, read_timeline
from analysis.stages import assign_stage, label_requests, stage_stats, timeline_frame


def finalize_target(
    target_dir: Path, settle_s: float, primary: str | None = None
) -> list[dict[str, Any]]:
    """Write requests.parquet / resources.parquet (with ``stage``) and return stage stats.

    The CSV parts are removed only after the Parquet files are written, so a failure here
    loses nothing. Returns [] when the load never started (no timeline).
    """
    requests = read_requests(target_dir)
    samples = read_samples(target_dir)
    raw = read_timeline(target_dir)
    if raw is None:
        return []
    timeline = timeline_frame(raw)
    labelled = label_requests(requests, timeline, settle_s)
    labelled.to_parquet(target_dir / "requests.parquet", index=False)
    if not samples.empty:
        samples = samples.assign(stage=assign_stage(samples["ts"], timeline, clip=False))
    samples.to_parquet(target_dir / "resources.parquet", index=False)
    for part in [*target_dir.glob("requests-*.csv"), target_dir / "resources.csv"]:
        part.unlink(missing_ok=True)
    return stage_stats(labelled, samples, timeline, settle_s, primary)
