"""Repeated runs of one scenario: how much each figure moves from run to run.

``servecap run SCENARIO --repeat N`` writes ``<out>/run-1 .. run-N`` and, from their
summaries, ``<out>/repeats.json``: per target and stage, the median, minimum and maximum over
the runs of throughput and percentiles, and the relative range ((max - min) / median). Sizing
from repeats uses the most conservative run (:func:`conservative_summary`): the one whose
capacity under the SLO is lowest, per target.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPEATS_FILE = "repeats.json"
RUN_FOLDER = "run-{}"
FIGURES = ("rps", "goodput_rps", "p50_ms", "p95_ms", "p99_ms", "error_rate", "cpu_pct")


def _finite(values: Sequence[Any]) -> list[float]:
    out = []
    for v in values:
        if isinstance(v, int | float) and math.isfinite(v):
            out.append(float(v))
    return out


def figure_spread(values: Sequence[Any]) -> dict[str, float | int | None]:
    """median, min, max and relative range of one figure over the runs."""
    finite = _finite(values)
    if not finite:
        return {"median": None, "min": None, "max": None, "range_share": None, "runs": 0}
    median = statistics.median(finite)
    spread = (max(finite) - min(finite)) / median if median else None
    return {"median": median, "min": min(finite), "max": max(finite), "range_share": spread,
            "runs": len(finite)}  # fmt: skip


def spread(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per target and stage index, the spread of each of :data:`FIGURES` over the runs."""
    out: dict[str, Any] = {"runs": len(summaries), "targets": {}}
    by_target: dict[str, list[Mapping[str, Any]]] = {}
    for summary in summaries:
        for run in summary.get("runs", []):
            by_target.setdefault(run["target"], []).append(run)
    for target, runs in by_target.items():
        stages: dict[int, list[Mapping[str, Any]]] = {}
        for run in runs:
            for st in run.get("stages") or []:
                stages.setdefault(int(st["index"]), []).append(st)
        capacities = [(r.get("capacity") or {}).get("capacity_rps") for r in runs]
        per_stage = [
            {"index": index, "users": rows[0].get("users"),
             **{f: figure_spread([row.get(f) for row in rows]) for f in FIGURES}}
            for index, rows in sorted(stages.items())
        ]  # fmt: skip
        out["targets"][target] = {
            "statuses": [r.get("status") for r in runs],
            "capacity_rps": figure_spread(capacities),
            "stages": per_stage,
        }
    return out


def conservative_summary(
    summaries: Sequence[Mapping[str, Any]], capacity: Callable[[Mapping[str, Any]], float | None]
) -> dict[str, Any]:
    """One summary made of, per target, the run with the lowest ``capacity(run)`` (runs
    without one count as lowest: they are failures to plan around)."""
    chosen: dict[str, tuple[float, Mapping[str, Any]]] = {}
    for summary in summaries:
        for run in summary.get("runs", []):
            value = capacity(run)
            key = -math.inf if value is None else value
            if run["target"] not in chosen or key < chosen[run["target"]][0]:
                chosen[run["target"]] = (key, run)
    first = summaries[0] if summaries else {}
    return {"scenario": first.get("scenario"), "runs": [run for _, run in chosen.values()]}


def repeat_folders(path: Path) -> list[Path]:
    """The run folders of a ``--repeat`` results folder, in order; [] for a single run."""
    folders = []
    n = 1
    while (path / RUN_FOLDER.format(n) / "summary.json").exists():
        folders.append(path / RUN_FOLDER.format(n))
        n += 1
    return folders
