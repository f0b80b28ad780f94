"""Capacity model: from per-stage statistics to "how much load can one replica take".

Pure functions: ``summary.json`` dicts, stage lists or DataFrames in; numbers, small
dataclasses and tables out. No plotting, no file I/O. :func:`run_capacity` applies each part
to one run: the stage table and capacity points (:mod:`analysis.tables`), the max RPS under
the SLO (:mod:`analysis.slo`), the knee (:mod:`analysis.knee`), the Universal Scalability Law
(:mod:`analysis.usl`) and Little's law (:mod:`analysis.littles`); :func:`capacity_section`
is what summary.json stores. Comparisons of several runs: :mod:`analysis.compare`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from analysis.contract import stage_number
from analysis.defaults import DEFAULT_MAX_ERROR_RATE, DEFAULT_MAX_REJECT_RATE, DEFAULT_SLO_P99_MS
from analysis.knee import Knee, find_knee
from analysis.littles import littles_law_check
from analysis.openloop import Basis, RatePoint, basis_of, open_loop_capacity, rate_points
from analysis.slo import MaxRps, max_rps_under_slo
from analysis.stages import json_safe
from analysis.tables import (
    as_float,
    as_int,
    cpu_seconds_per_request,
    curve,
    memory_per_replica,
    stage_table,
)
from analysis.usl import UslFit, fit_usl_stages


@dataclass(frozen=True)
class RunCapacity:
    """Everything the capacity model says about one run (one target)."""

    target: str | None
    kind: str | None
    status: str | None
    max_rps: MaxRps
    knee: Knee
    usl: UslFit
    littles_law: pd.DataFrame
    replicas: int
    cpu_cores: float
    """Per replica, at ``capacity_rps`` (interpolated between the evidence stages)."""
    cpu_s_per_request: float
    mem_mb: float
    """Per replica: the largest stage-mean RSS (memory barely depends on load; stage means
    rather than single-sample peaks, which one stray sample can double)."""
    pss_mb: float
    warnings: list[str]
    mem_peak_mb: float = math.nan
    """Per replica: the highest single RSS sample of any stage (limits are set from it)."""
    find_max: dict[str, Any] | None = None
    """The run's own find-max search result (``find-max`` mode), when it has one."""
    basis: Basis = "closed-loop"
    """open-loop: the capacity is the highest Poisson arrival rate shown to meet the SLO
    (:mod:`analysis.openloop`); closed-loop: read off a ramp of users, optimistic for open
    traffic (no queue builds beyond the users); none: no load curve (sequential)."""
    curve: tuple[RatePoint, ...] = ()
    """Open loop: the measured rates, what :mod:`analysis.replicas` models N replicas from."""
    estimate: dict[str, Any] | None = None
    """Beyond the measurement, only when a model supports it, labelled with the model: the
    ramp ended below the SLO (a lower bound) and a well-fitting USL levels off higher."""

    @property
    def capacity_rps(self) -> float | None:
        """Per replica: the measured capacity divided by the replicas it was measured over."""
        cap = self.max_rps.capacity_rps
        return None if cap is None else cap / self.replicas

    def to_dict(self) -> dict[str, Any]:
        """The ``capacity`` section of a run in summary.json (strict JSON, rounded)."""
        m = self.max_rps
        suspect = self.littles_law[self.littles_law["suspect"]]
        return dict(
            json_safe(
                {
                    "slo": {
                        "p99_ms": m.slo_p99_ms,
                        "max_error_rate": m.max_error_rate,
                        "max_reject_rate": m.max_reject_rate,
                    },
                    "basis": self.basis,
                    "throughput": "arrival_rps" if self.basis == "open-loop" else "goodput_rps",
                    "max_rps": _round(m.max_rps),
                    "capacity_rps": _round(m.capacity_rps),
                    "method": m.method,
                    "extrapolated": m.extrapolated,
                    "limited_by": m.limited_by,
                    "evidence_stages": m.evidence_stages,
                    "knee": {
                        "found": self.knee.found,
                        "index": self.knee.index,
                        "users": self.knee.users,
                        "throughput_rps": _round(self.knee.throughput_rps),
                        "p99_ms": _round(self.knee.p99_ms),
                        "score": _round(self.knee.score),
                        "method": self.knee.method,
                    },
                    "usl": {
                        "lambda": _round(self.usl.lam),
                        "sigma": _round(self.usl.sigma, 5),
                        "kappa": _round(self.usl.kappa, 7),
                        "r2": _round(self.usl.r2, 4),
                        "n_star": _round(self.usl.n_star),
                        "x_max": _round(self.usl.x_max),
                        "poor_fit": self.usl.poor_fit,
                        "reason": self.usl.reason,
                    },
                    "per_replica": {
                        "replicas_measured": self.replicas,
                        "capacity_rps": _round(self.capacity_rps),
                        "cpu_cores": _round(self.cpu_cores),
                        "cpu_s_per_request": _round(self.cpu_s_per_request, 6),
                        "mem_mb": _round(self.mem_mb),
                        "pss_mb": _round(self.pss_mb),
                    },
                    "find_max": self.find_max,
                    "estimate": self.estimate,
                    "littles_law_suspect_stages": [
                        as_int(v) for v in suspect.get("index", suspect.get("stage", []))
                    ],
                    "warnings": self.warnings,
                }
            )
        )


def _max(frame: pd.DataFrame, column: str) -> float:
    if column not in frame:
        return math.nan
    values = pd.to_numeric(frame[column], errors="coerce")
    return float(values.max()) if values.notna().any() else math.nan


def _round(value: float | None, digits: int = 3) -> float | None:
    if value is None or not math.isfinite(value):
        return value
    return round(float(value), digits)


def _at_capacity(points: pd.DataFrame, m: MaxRps, column: str) -> float:
    """``column`` at the capacity: interpolated between the evidence stages, else the lower."""
    if m.capacity_rps is None or column not in points or m.lower_stage is None:
        return math.nan
    by_index = points.set_index("index")
    lo = by_index.loc[m.lower_stage]
    y_lo = as_float(lo[column])
    if m.method == "interpolated" and m.upper_stage is not None:
        hi = by_index.loc[m.upper_stage]
        x_lo, x_hi = as_float(lo["throughput"]), as_float(hi["throughput"])
        y_hi = as_float(hi[column])
        if x_hi > x_lo and math.isfinite(y_hi) and math.isfinite(y_lo):
            return y_lo + (m.capacity_rps - x_lo) * (y_hi - y_lo) / (x_hi - x_lo)
    return y_lo


def _find_max_info(
    found: Mapping[str, Any] | None, m: MaxRps, warnings: list[str]
) -> dict[str, Any] | None:
    """The find-max result beside the stage-based estimate; warns when they disagree."""
    if not found:
        return None
    info = {k: found.get(k) for k in ("max_rps", "lowest_failing_rps", "slo_p99_ms", "complete")}
    same_slo = info["slo_p99_ms"] is not None and math.isclose(
        float(info["slo_p99_ms"]), m.slo_p99_ms
    )
    if same_slo and m.capacity_rps and info["max_rps"]:
        ratio = float(info["max_rps"]) / m.capacity_rps
        if abs(ratio - 1) > 0.25:
            warnings.append(
                f"find-max found {float(info['max_rps']):.1f} rps, the stages give "
                f"{m.capacity_rps:.1f} rps: more than 25% apart"
            )
    elif not same_slo:
        warnings.append(
            f"find-max searched against p99 {info['slo_p99_ms']} ms, not {m.slo_p99_ms:g} ms"
        )
    return info


def usl_estimate(m: MaxRps, usl: UslFit) -> dict[str, Any] | None:
    """A labelled estimate above a lower-bound capacity: the throughput ceiling of a
    well-fitting USL. None when the capacity is not a lower bound or the model does not
    support more (poor fit, no ceiling, a ceiling at or below what was measured)."""
    if m.method != "lower_bound" or m.capacity_rps is None or usl.poor_fit:
        return None
    if not math.isfinite(usl.x_max) or usl.x_max <= m.capacity_rps:
        return None
    return {
        "rps": _round(usl.x_max),
        "model": "usl",
        "label": "estimate",
        "note": f"the fitted USL (R^2 {usl.r2:.3f}) levels off at {usl.x_max:.1f} rps; the SLO "
        f"may break before that. Measured: at least {m.capacity_rps:.1f} rps",
    }


def run_capacity(
    run: Mapping[str, Any],
    slo_p99_ms: float = DEFAULT_SLO_P99_MS,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE,
    think_time_s: float = 0.0,
    replicas: int = 1,
    name: str | None = None,
) -> RunCapacity:
    """The capacity model applied to one run of ``summary.json`` (see the module docstring)."""
    table = stage_table({"runs": [run]}, name=name, replicas=replicas)
    points = curve(table)
    basis = basis_of(run)
    measured: list[RatePoint] = []
    if basis == "open-loop":
        measured, left_out = rate_points(_stages_of(run, name))
        m = open_loop_capacity(measured, slo_p99_ms, max_error_rate, max_reject_rate)
        m = replace(m, warnings=[*left_out, *m.warnings])
    else:
        m = max_rps_under_slo(points, slo_p99_ms, max_error_rate, max_reject_rate)
    knee = find_knee(points)
    usl = fit_usl_stages(points)
    littles = littles_law_check(table, think_time_s)
    warnings = [*m.warnings]
    if run.get("status") not in (None, "ok"):
        warnings.insert(0, f"run status is {run.get('status')!r}: {run.get('error') or ''}".strip())
    cpu_pct = _at_capacity(points, m, "cpu_pct")
    cpu_cores = memory_per_replica(cpu_pct / 100.0, replicas)
    if m.capacity_rps is not None and not math.isfinite(cpu_pct):
        warnings.append("no CPU samples at the capacity stages: CPU per replica unknown")
    mem = _max(points, "mem_mb")
    pss = _max(points, "pss_mb")
    if usl.poor_fit:
        warnings.append(f"USL: {usl.reason}")
    if basis == "closed-loop":  # open loop has no users to check the law against
        for _, row in littles[littles["suspect"]].iterrows():
            warnings.append(f"stage {stage_number(as_int(row.get('index')))}: Little's law "
                            f"check: {row['note']}")  # fmt: skip
    find_max = _find_max_info(run.get("find_max"), m, warnings)
    return RunCapacity(
        basis=basis,
        curve=tuple(measured),
        find_max=find_max,
        estimate=usl_estimate(m, usl),
        target=run.get("target"),
        kind=run.get("kind"),
        status=run.get("status"),
        max_rps=m,
        knee=knee,
        usl=usl,
        littles_law=littles,
        replicas=replicas,
        cpu_cores=float(cpu_cores),
        cpu_s_per_request=cpu_seconds_per_request(cpu_pct, m.capacity_rps or 0.0),
        mem_mb=float(memory_per_replica(mem, replicas)),
        pss_mb=float(memory_per_replica(pss, replicas)),
        warnings=warnings,
        mem_peak_mb=float(memory_per_replica(_max(table, "mem_max_mb"), replicas)),
    )


def _stages_of(run: Mapping[str, Any], name: str | None) -> list[dict[str, Any]]:
    """The run's stages, with a request type's figures (``by_name``) where one is named."""
    out = []
    for stage in run.get("stages") or []:
        by_name = (stage.get("by_name") or {}).get(name) if name else None
        out.append({**stage, **by_name} if by_name else dict(stage))
    return out


def capacity_section(
    run: Mapping[str, Any],
    slo_p99_ms: float = DEFAULT_SLO_P99_MS,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE,
    think_time_s: float = 0.0,
    replicas: int = 1,
    name: str | None = None,
) -> dict[str, Any]:
    """The ``capacity`` section of one run in summary.json: JSON-safe, never raises on data."""
    return run_capacity(
        run, slo_p99_ms, max_error_rate, max_reject_rate, think_time_s, replicas, name
    ).to_dict()
