"""Plans as tables and text: :func:`plans_frame` (one row per target, for reports) and
:func:`format_plan` (the CLI's plain text). Pure; the plans come from :mod:`analysis.sizing`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from analysis.defaults import DEFAULT_HEADROOM, DEFAULT_MAX_ERROR_RATE
from analysis.sizing import Plan, TargetPlan, fmt_number, plan_targets

PLAN_COLUMNS = (
    "target", "kind", "status", "capacity_rps", "basis", "method", "limited_by", "slo_p99_ms",
    "peak_rps", "headroom", "replicas", "utilisation_at_peak", "cpu_cores_per_replica",
    "mem_mb_per_replica", "total_cpu_cores", "total_mem_gb", "total_gpus", "replicas_per_host",
    "hosts", "model", "predicted_capacity_rps", "predicted_p99_at_peak_ms", "note",
)  # fmt: skip


def plans_frame(plans: Sequence[TargetPlan]) -> pd.DataFrame:
    """One row per target of :func:`plan_targets`."""
    rows = []
    for tp in plans:
        p, m = tp.plan, tp.capacity.max_rps
        rows.append(
            {
                "target": tp.target, "kind": tp.kind, "status": tp.status,
                "capacity_rps": tp.capacity.capacity_rps, "basis": tp.capacity.basis,
                "method": m.method,
                "limited_by": m.limited_by, "slo_p99_ms": m.slo_p99_ms,
                "peak_rps": p.peak_rps if p else math.nan,
                "headroom": p.headroom if p else math.nan,
                "replicas": p.replicas if p else pd.NA,
                "utilisation_at_peak": p.utilisation_at_peak if p else math.nan,
                "cpu_cores_per_replica": p.cpu_cores_per_replica if p else math.nan,
                "mem_mb_per_replica": p.mem_mb_per_replica if p else math.nan,
                "total_cpu_cores": p.total_cpu_cores if p else math.nan,
                "total_mem_gb": p.total_mem_gb if p else math.nan,
                "total_gpus": p.total_gpus if p else math.nan,
                "replicas_per_host": p.replicas_per_host if p else pd.NA,
                "hosts": p.hosts if p else pd.NA,
                "model": p.model if p else None,
                "predicted_capacity_rps": p.predicted_capacity_rps if p else math.nan,
                "predicted_p99_at_peak_ms": (
                    p.predicted_p99_at_peak_ms if p and p.predicted_p99_at_peak_ms is not None
                    else math.nan),
                "note": tp.reason or ("; ".join(tp.warnings[:1])),
            }
        )  # fmt: skip
    frame = pd.DataFrame(rows, columns=list(PLAN_COLUMNS))
    for col in ("replicas", "replicas_per_host", "hosts"):
        frame[col] = frame[col].astype("Int64")
    for col in ("capacity_rps", "cpu_cores_per_replica", "mem_mb_per_replica",
                "total_cpu_cores", "total_mem_gb", "predicted_capacity_rps",
                "predicted_p99_at_peak_ms"):  # fmt: skip
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame


def plan_table(
    summary: Mapping[str, Any],
    slo_p99_ms: float,
    peak_rps: float | None = None,
    *,
    daily_requests: float | None = None,
    peak_factor: float | None = None,
    headroom: float = DEFAULT_HEADROOM,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    gpus_per_replica: float = 0.0,
    allow_closed_loop: bool = False,
) -> pd.DataFrame:
    """One row per target of a summary: capacity used under the SLO, replicas and totals."""
    return plans_frame(
        plan_targets(
            summary, slo_p99_ms, peak_rps, daily_requests=daily_requests,
            peak_factor=peak_factor, headroom=headroom, max_error_rate=max_error_rate,
            gpus_per_replica=gpus_per_replica, allow_closed_loop=allow_closed_loop,
        )
    )  # fmt: skip


def _cell(value: Any, fmt: str) -> str:
    width = int("".join(ch for ch in fmt.split(".")[0] if ch.isdigit()) or 0)
    missing = value is None or (isinstance(value, float) and not math.isfinite(value))
    if not missing:
        try:
            missing = bool(pd.isna(value))
        except (TypeError, ValueError):
            missing = False
    return "-".rjust(width) if missing else format(value, fmt)


def format_plan(plans: Plan | Sequence[TargetPlan], show_warnings: bool = True) -> str:
    """Plain-text rendering for the CLI: a table per target, then assumptions and warnings."""
    if isinstance(plans, Plan):
        head = f"Capacity plan{f' for {plans.label}' if plans.label else ''}"
        body = [
            f"{head}: {plans.replicas} replica(s)",
            *(f"  - {line}" for line in plans.assumptions),
        ]
        return "\n".join(body)
    lines: list[str] = []
    first = next((tp.plan for tp in plans if tp.plan is not None), None)
    if first is not None:
        demand = f"peak {fmt_number(first.peak_rps)} requests/s"
        if first.daily_requests is not None:
            daily = fmt_number(first.daily_requests, 0)
            demand += f" ({daily}/day x peak factor {first.peak_factor:g})"
        lines.append(
            f"Capacity plan: {demand}, p99 <= {first.slo_p99_ms:g} ms, "
            f"headroom {first.headroom:.0%}"
        )
    elif plans:
        lines.append(f"Capacity plan: p99 <= {plans[0].capacity.max_rps.slo_p99_ms:g} ms")
    packed = any(tp.plan is not None and tp.plan.replicas_per_host is not None for tp in plans)
    header = (f"{'target':<22} {'rps/replica':>11}  {'basis':<11} {'replicas':>8} "
              f"{'CPU cores':>9} {'memory GB':>9}")  # fmt: skip
    header += f" {'hosts':>5}" if packed else ""
    lines += ["", header, "-" * len(header)]
    for tp in plans:
        p = tp.plan
        lines.append(
            f"{str(tp.target)[:22]:<22} {_cell(tp.capacity.capacity_rps, '11.1f')} "
            f" {tp.capacity.basis:<11} {_cell(p.replicas if p else None, '8d')} "
            f"{_cell(p.total_cpu_cores if p else None, '9.1f')} "
            f"{_cell(p.total_mem_gb if p else None, '9.1f')}"
            + (f" {_cell(p.hosts if p else None, '5d')}" if packed else "")
        )
    for tp in plans:
        lines += ["", f"{tp.target}:"]
        if tp.plan is None:
            lines.append(f"  no plan: {tp.reason}")
        else:
            lines += [f"  - {line}" for line in tp.plan.assumptions]
        if show_warnings:
            shown = [w for w in tp.warnings if w != tp.reason]
            lines += [f"  ! {w}" for w in shown]
    return "\n".join(lines)
