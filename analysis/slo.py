"""The highest throughput per replica that meets a p99 SLO and error/reject limits.

A stage *meets* the SLO when its p99 is at most ``slo_p99_ms`` and its error and reject rates
are at most their limits. Between the last stage meeting it and the first breaking it, each
broken criterion is linearly interpolated against throughput and the lowest crossing wins
(:func:`max_rps_under_slo`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.contract import stage_number
from analysis.defaults import DEFAULT_MAX_ERROR_RATE, DEFAULT_MAX_REJECT_RATE
from analysis.stages import json_safe
from analysis.tables import StagesLike, as_float, as_int, curve


@dataclass(frozen=True)
class MaxRps:
    """Max sustainable throughput per replica under an SLO, with the evidence used."""

    slo_p99_ms: float
    max_error_rate: float
    max_reject_rate: float
    max_rps: float | None
    """The capacity under the SLO, never above what was measured or interpolated between two
    measured stages; None when no stage meets the SLO."""
    capacity_rps: float | None
    """The value to size with: the same figure as ``max_rps``."""
    method: str
    """interpolated (between the evidence stages) | saturated (throughput stopped growing: the
    peak that met the SLO) | lower_bound (nothing broke: the highest measured throughput, the
    replica can do at least this) | none | no_data"""
    limited_by: str | None
    """p99 | error_rate | reject_rate | throughput (saturated); None when nothing broke."""
    lower_stage: int | None
    """Index of the last stage meeting the SLO before the first break."""
    upper_stage: int | None
    """Index of the first stage breaking it."""
    evidence: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def extrapolated(self) -> bool:
        """Always False: a capacity is never extrapolated beyond the measurement (kept as a
        summary.json key; estimates beyond it are separate and labelled, RunCapacity)."""
        return False

    @property
    def evidence_stages(self) -> list[int]:
        return [s for s in (self.lower_stage, self.upper_stage) if s is not None]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["extrapolated"] = self.extrapolated
        out["evidence_stages"] = self.evidence_stages
        return dict(json_safe(out))


def _violations(row: pd.Series, slo: float, max_err: float, max_rej: float) -> list[str]:
    out = []
    if not (row["p99_ms"] <= slo):  # NaN (no successful request) breaks it too
        out.append("p99")
    if row["error_rate"] > max_err:
        out.append("error_rate")
    if row["reject_rate"] > max_rej:
        out.append("reject_rate")
    return out


_LIMIT_COLUMN = {"p99": "p99_ms", "error_rate": "error_rate", "reject_rate": "reject_rate"}


def max_rps_under_slo(
    stages: StagesLike,
    slo_p99_ms: float,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE,
) -> MaxRps:
    """Highest throughput meeting the p99 SLO and the error/reject limits (see module doc)."""
    if slo_p99_ms <= 0:
        raise ValueError(f"slo_p99_ms must be positive, got {slo_p99_ms}")
    points = curve(stages)
    limits = {"p99": slo_p99_ms, "error_rate": max_error_rate, "reject_rate": max_reject_rate}
    base: dict[str, Any] = {
        "slo_p99_ms": float(slo_p99_ms),
        "max_error_rate": float(max_error_rate),
        "max_reject_rate": float(max_reject_rate),
    }
    if points.empty:
        return MaxRps(**base, max_rps=None, capacity_rps=None, method="no_data", limited_by=None,
                      lower_stage=None, upper_stage=None,
                      warnings=["no stage has measured requests"])  # fmt: skip
    broken = [
        _violations(r, slo_p99_ms, max_error_rate, max_reject_rate) for _, r in points.iterrows()
    ]
    evidence = [
        {
            "index": as_int(r["index"]),
            "users": as_int(r["users"]),
            "throughput_rps": as_float(r["throughput"]),
            "p99_ms": as_float(r["p99_ms"]),
            "error_rate": as_float(r["error_rate"]),
            "reject_rate": as_float(r["reject_rate"]),
            "meets": not v,
            "violations": v,
        }
        for (_, r), v in zip(points.iterrows(), broken, strict=True)
    ]
    first = next((i for i, v in enumerate(broken) if v), None)
    if first == 0:
        r = points.iloc[0]
        warning = (
            f"no stage meets the SLO: already {_describe(points, 0)} breaks it on "
            f"{', '.join(broken[0])} (p99 {as_float(r['p99_ms']):.1f} ms, errors "
            f"{as_float(r['error_rate']):.1%}, rejected {as_float(r['reject_rate']):.1%}); "
            "start the ramp lower or relax the SLO"
        )
        return MaxRps(**base, max_rps=None, capacity_rps=None, method="none",
                      limited_by=broken[0][0], lower_stage=None,
                      upper_stage=as_int(r["index"]), evidence=evidence,
                      warnings=[warning])  # fmt: skip
    if first is None:
        return _unbroken(points, base, evidence)
    return _crossing(points, broken, first, limits, base, evidence)


def _describe(points: pd.DataFrame, i: int) -> str:
    r = points.iloc[i]
    return f"stage {stage_number(as_int(r['index']))} ({as_int(r['users'])} users)"


def _unbroken(points: pd.DataFrame, base: dict[str, Any], evidence: list[dict[str, Any]]
              ) -> MaxRps:  # fmt: skip
    """Every stage met the SLO: throughput saturated before it, or the ramp stopped short."""
    x = points["throughput"].to_numpy(dtype=float)
    peak = int(np.nanargmax(x))
    bound = float(x[peak])
    peak_stage = as_int(points.iloc[peak]["index"])
    if peak < len(points) - 1:
        # Every stage meets the SLO, but adding users stopped adding throughput.
        warning = (
            f"every stage meets the SLO but throughput peaked at {_describe(points, peak)} "
            f"({bound:.1f} rps) and did not grow with more users: the replica saturates before "
            "the SLO is reached; capacity is that peak"
        )
        return MaxRps(**base, max_rps=bound, capacity_rps=bound, method="saturated",
                      limited_by="throughput", lower_stage=peak_stage, upper_stage=None,
                      evidence=evidence, warnings=[warning])  # fmt: skip
    # Nothing broke and throughput still grew: the ramp stopped short of capacity. Closed
    # loop p99 rises with queueing, not along a line in throughput: no extrapolation.
    warning = (
        "no stage breaks the SLO: the ramp stopped before capacity; the capacity is the "
        f"highest measured throughput meeting it ({bound:.1f} rps), a lower bound: extend "
        "the ramp to measure it"
    )
    return MaxRps(**base, max_rps=bound, capacity_rps=bound, method="lower_bound",
                  limited_by=None, lower_stage=peak_stage, upper_stage=None,
                  evidence=evidence, warnings=[warning])  # fmt: skip


def _crossing(
    points: pd.DataFrame, broken: list[list[str]], first: int, limits: dict[str, float],
    base: dict[str, Any], evidence: list[dict[str, Any]],
) -> MaxRps:  # fmt: skip
    """Stage ``first`` broke the SLO: interpolate each broken criterion between the stage
    before it and it, the lowest crossing wins (or the peak, when throughput did not grow)."""
    warnings: list[str] = []
    x = points["throughput"].to_numpy(dtype=float)
    last_ok = first - 1
    lower = points.iloc[last_ok]
    peak = int(np.nanargmax(x[:first]))
    bound = float(x[peak])
    peak_stage = as_int(points.iloc[peak]["index"])
    upper = points.iloc[first]
    lower_stage = as_int(lower["index"])
    x_lo, x_hi = as_float(lower["throughput"]), as_float(upper["throughput"])
    if not x_hi > x_lo:
        estimate, method, limited = bound, "saturated", "throughput"
        warnings.append(
            f"throughput did not grow from {_describe(points, last_ok)} to "
            f"{_describe(points, first)} ({x_lo:.1f} -> {x_hi:.1f} rps) while it broke the SLO "
            f"({', '.join(broken[first])}): "
            "the replica saturated; capacity is the highest throughput that met the SLO"
        )
        lower_stage = peak_stage
    else:
        crossings: dict[str, float] = {}
        for crit in broken[first]:
            col = _LIMIT_COLUMN[crit]
            y_lo, y_hi = as_float(lower[col]), as_float(upper[col])
            if not math.isfinite(y_hi):  # no successful request left: p99 undefined
                continue
            crossings[crit] = x_lo + (limits[crit] - y_lo) * (x_hi - x_lo) / (y_hi - y_lo)
        if not crossings:  # only an undefined p99 broke it
            crossings["p99"] = x_lo
        limited = min(crossings, key=lambda k: crossings[k])
        estimate, method = crossings[limited], "interpolated"
        if bound > estimate:  # an earlier stage did better than the crossing
            estimate, method, limited, lower_stage = bound, "saturated", "throughput", peak_stage
            warnings.append(
                f"{_describe(points, peak)} reached {bound:.1f} rps within the SLO, more than the "
                f"crossing before {_describe(points, first)}: throughput fell as users were added"
            )
    later = [
        i for i in range(first + 1, len(points)) if not broken[i] and x[i] > estimate
    ]  # fmt: skip
    if later:
        warnings.append(
            f"{_describe(points, later[0])} meets the SLO again at {x[later[0]]:.1f} rps after "
            f"{_describe(points, first)} broke it: noisy stages? the estimate uses the first break"
        )
    return MaxRps(**base, max_rps=estimate, capacity_rps=estimate, method=method,
                  limited_by=limited, lower_stage=lower_stage,
                  upper_stage=as_int(upper["index"]), evidence=evidence,
                  warnings=warnings)  # fmt: skip
