"""A results folder as the reports see it: its summary, stage table, records, scenario.

:func:`load_results` reads one folder written by ``servecap run`` (:mod:`analysis.contract`);
:func:`combined_table` and :func:`summaries` put several side by side with unique labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from analysis.compare import label_runs
from analysis.contract import META_FILE, SCENARIO_FILE, read_json
from analysis.load import read_requests, read_samples, read_summary, read_timeline
from analysis.tables import stage_tables


@dataclass
class Results:
    """One results folder: summary, meta and scenario eagerly; per-target frames on demand."""

    path: Path
    summary: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    scenario: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def targets(self) -> list[str]:
        return [str(r.get("target")) for r in self.summary.get("runs", [])]

    @property
    def load_plan(self) -> dict[str, Any]:
        plan: dict[str, Any] = (self.scenario.get("definition") or {}).get("load") or {}
        return plan

    @property
    def think_time_s(self) -> float:
        return float(self.load_plan.get("think_time_s") or 0.0)

    @property
    def slo_p99_ms(self) -> float | None:
        """The scenario's own SLO (``slo: {p99_ms: ...}``) when it sets one."""
        slo = (self.scenario.get("definition") or {}).get("slo") or {}
        value = slo.get("p99_ms") if isinstance(slo, dict) else None
        return float(value) if value is not None else None

    def target_dir(self, target: str) -> Path:
        return self.path / target

    def requests(self, target: str) -> pd.DataFrame:
        return read_requests(self.target_dir(target))

    def samples(self, target: str) -> pd.DataFrame:
        return read_samples(self.target_dir(target))

    def timeline(self, target: str) -> list[dict[str, Any]] | None:
        return read_timeline(self.target_dir(target))

    def faults(self, target: str) -> list[dict[str, Any]]:
        """The faults injected into the target (its summary entry), [] without any."""
        for run in self.summary.get("runs", []):
            if run.get("target") == target:
                return list((run.get("faults") or {}).get("injected", []))
        return []

    @cached_property
    def table(self) -> pd.DataFrame:
        """The labelled stage table of this folder (``capacity.stage_table``)."""
        return label_runs(stage_tables({self.name: self.summary}))


def load_results(path: str | Path) -> Results:
    """Read a results folder (``summary.json`` required; meta and scenario when present)."""
    path = Path(path)
    summary = read_summary(path)
    meta_path, scenario_path = path / META_FILE, path / SCENARIO_FILE
    meta = read_json(meta_path) if meta_path.exists() else {}
    scenario = yaml.safe_load(scenario_path.read_text()) if scenario_path.exists() else {}
    return Results(path, summary, meta, scenario or {})


def combined_table(results: Sequence[Results]) -> pd.DataFrame:
    """One labelled stage table over several folders (labels unique across them)."""
    return label_runs(stage_tables(summaries(results)))


def summaries(results: Sequence[Results]) -> dict[str, dict[str, Any]]:
    """The folders' summaries keyed like :func:`combined_table`'s ``source``."""
    return dict(zip(unique_names(results), (r.summary for r in results), strict=True))


def unique_names(results: Sequence[Results]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for r in results:
        count = seen.get(r.name, 0)
        seen[r.name] = count + 1
        names.append(r.name if count == 0 else f"{r.name}#{count + 1}")
    return names
