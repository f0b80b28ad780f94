"""Comparing runs: one row per run (source x target) for an architecture comparison."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from analysis.capacity import RunCapacity, run_capacity
from analysis.defaults import DEFAULT_MAX_ERROR_RATE, DEFAULT_MAX_REJECT_RATE, DEFAULT_SLO_P99_MS
from analysis.tables import STAGE_COLUMNS, STAGE_FLAGS, as_float


def _labels(table: pd.DataFrame) -> pd.Series:
    """``target``, or ``source/target`` when a target name appears in several sources."""
    if table.empty:
        return pd.Series(dtype=object)
    pairs = table[["source", "target"]].drop_duplicates()
    ambiguous = pairs["target"].duplicated(keep=False)
    dup = set(pairs.loc[ambiguous, "target"])
    return table.apply(
        lambda r: f"{r['source']}/{r['target']}" if r["target"] in dup else str(r["target"]),
        axis=1,
    )


def label_runs(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (from :func:`stage_table(s) <stage_tables>`) with a unique ``label`` column."""
    out = table.copy()
    out["label"] = _labels(out) if not out.empty else pd.Series(dtype=object)
    return out


def common_users(table: pd.DataFrame) -> int | None:
    """The highest user count every run of ``table`` measured (None when there is none)."""
    if table.empty:
        return None
    sets = [
        set(g["users"].dropna().astype(int))
        for _, g in table.groupby(["source", "target"], dropna=False)
    ]
    shared = set.intersection(*sets) if sets else set()
    return max(shared) if shared else None


def run_records(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """A stage table back to summary-like runs, keyed by the run's unique ``label``."""
    labelled = table if "label" in table else label_runs(table)
    runs: dict[str, dict[str, Any]] = {}
    for label, g in labelled.groupby("label", sort=False):
        first = g.iloc[0]
        stages = g[[c for c in (*STAGE_COLUMNS, *STAGE_FLAGS) if c in g]].astype(object)
        stages = stages.where(stages.notna(), None)
        runs[str(label)] = {
            "target": first["target"],
            "kind": first["kind"],
            "status": first["status"],
            "source": first["source"],
            "scenario": first["scenario"],
            "paper_architecture": first.get("paper_architecture"),
            "paper_same_path": first.get("paper_same_path"),
            "stages": stages.to_dict("records"),
        }
    return runs


def capacities(
    table: pd.DataFrame,
    slo_p99_ms: float = DEFAULT_SLO_P99_MS,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE,
    think_time_s: float = 0.0,
) -> dict[str, RunCapacity]:
    """:func:`run_capacity` of every run of a stage table, keyed by its ``label``."""
    return {
        label: run_capacity(run, slo_p99_ms, max_error_rate, max_reject_rate, think_time_s)
        for label, run in run_records(table).items()
    }


def compare_runs(
    table: pd.DataFrame,
    slo_p99_ms: float = DEFAULT_SLO_P99_MS,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE,
    at_users: int | None = None,
) -> pd.DataFrame:
    """One row per run (source x target) for an architecture comparison.

    ``table`` comes from :func:`stage_table` / :func:`stage_tables`. Columns: ``label``,
    ``kind``, capacity figures under the SLO, and the figures of the stage with ``at_users``
    users (default: :func:`common_users`, the highest load every run measured):
    ``rps_at_users``, ``p99_at_users_ms``, ``cpu_ms_per_request``; ``mem_mb`` is the largest
    stage-mean RSS.
    """
    columns = ["label", "source", "scenario", "target", "kind", "status", "max_rps",
               "capacity_rps", "method", "knee_rps", "usl_x_max", "usl_poor_fit", "at_users",
               "rps_at_users", "p99_at_users_ms", "cpu_ms_per_request", "cpu_cores_at_capacity",
               "mem_mb", "pss_mb"]  # fmt: skip
    if table.empty:
        return pd.DataFrame(columns=columns)
    labelled = label_runs(table)
    users = at_users if at_users is not None else common_users(labelled)
    caps = capacities(labelled, slo_p99_ms, max_error_rate, max_reject_rate)
    rows = []
    for label, g in labelled.groupby("label", sort=False):
        cap = caps[str(label)]
        at = g[g["users"] == users].sort_values("index").tail(1) if users is not None else g[:0]
        first = g.iloc[0]

        def at_value(col: str, at: pd.DataFrame = at) -> float:
            return as_float(at[col].iloc[0]) if len(at) else math.nan

        rows.append(
            {
                "label": label, "source": first["source"], "scenario": first["scenario"],
                "target": first["target"], "kind": first["kind"], "status": first["status"],
                "max_rps": cap.max_rps.max_rps, "capacity_rps": cap.capacity_rps,
                "method": cap.max_rps.method, "knee_rps": cap.knee.throughput_rps,
                "usl_x_max": cap.usl.x_max, "usl_poor_fit": cap.usl.poor_fit, "at_users": users,
                "rps_at_users": at_value("throughput_rps"),
                "p99_at_users_ms": at_value("p99_ms"),
                "cpu_ms_per_request": at_value("cpu_ms_per_request"),
                "cpu_cores_at_capacity": cap.cpu_cores, "mem_mb": cap.mem_mb,
                "pss_mb": cap.pss_mb,
            }
        )  # fmt: skip
    out = pd.DataFrame(rows, columns=columns)
    for col in ("max_rps", "capacity_rps", "knee_rps", "usl_x_max"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    return out
