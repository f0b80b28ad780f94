"""The knee of the p99-vs-throughput points: Kneedle (Satopaa et al., 2011).

Both axes are normalised to [0, 1] and the knee is the stage where ``x_norm - y_norm`` is
largest, i.e. the point furthest below the chord of a convex (hockey-stick) points: the last
stage before latency starts rising faster than throughput. A straight line scores 0, so a
knee needs a score of at least ``min_score``. The per-step elasticity
``dln(p99) / dln(throughput)`` is returned as evidence (above 1: p99 grows faster than
throughput).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from analysis.contract import stage_number
from analysis.stages import json_safe
from analysis.tables import StagesLike, as_int, curve

KNEE_MIN_SCORE = 0.1


@dataclass(frozen=True)
class Knee:
    """The knee of the p99-vs-throughput points (Kneedle), with the per-stage evidence."""

    found: bool
    index: int | None
    users: int | None
    throughput_rps: float | None
    p99_ms: float | None
    score: float | None
    """max(x_norm - y_norm): 0 for a straight line, towards 1 for a sharp hockey stick."""
    reason: str
    method: str = "kneedle"
    evidence: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(json_safe(asdict(self)))


def find_knee(
    stages: StagesLike, min_score: float = KNEE_MIN_SCORE, latency: str = "p99_ms"
) -> Knee:
    """Kneedle knee of latency (``p99_ms``) vs throughput; see the module docstring."""
    points = curve(stages)
    if latency not in points:
        points[latency] = np.nan
    points = points[np.isfinite(points["throughput"]) & np.isfinite(points[latency].astype(float))]
    none: dict[str, Any] = {"found": False, "index": None, "users": None,
                            "throughput_rps": None, "p99_ms": None, "score": None}  # fmt: skip
    if len(points) < 3:
        return Knee(**none, reason=f"{len(points)} usable stage(s): a knee needs at least 3")
    x = points["throughput"].to_numpy(dtype=float)
    y = points[latency].to_numpy(dtype=float)
    x_span, y_span = np.ptp(x), np.ptp(y)
    if x_span <= 0 or y_span <= 0:
        return Knee(**none, reason="throughput or latency does not vary across stages")
    xn, yn = (x - x.min()) / x_span, (y - y.min()) / y_span
    diff = xn - yn
    with np.errstate(divide="ignore", invalid="ignore"):
        dlx = np.diff(np.log(x))
        dly = np.diff(np.log(y))
        elasticity = np.where(dlx > 0, dly / dlx, np.where(dly > 0, np.inf, np.nan))
    evidence = [
        {
            "index": as_int(r["index"]),
            "users": as_int(r["users"]),
            "throughput_rps": float(x[i]),
            "p99_ms": float(y[i]),
            "x_norm": float(xn[i]),
            "y_norm": float(yn[i]),
            "difference": float(diff[i]),
            "elasticity_from_previous": float(elasticity[i - 1]) if i else math.nan,
        }
        for i, (_, r) in enumerate(points.iterrows())
    ]
    k = int(np.argmax(diff))
    score = float(diff[k])
    row = points.iloc[k]
    if score < min_score:
        return Knee(**{**none, "score": score}, evidence=evidence,
                    reason=f"no knee: the points is not convex enough (score {score:.2f} < "
                           f"{min_score}); latency grows in step with throughput")  # fmt: skip
    return Knee(
        found=True,
        index=as_int(row["index"]),
        users=as_int(row["users"]),
        throughput_rps=float(x[k]),
        p99_ms=float(y[k]),
        score=score,
        reason=(
            f"stage {stage_number(as_int(row['index']))} ({as_int(row['users'])} users, "
            f"{x[k]:.1f} rps, p99 {y[k]:.1f} ms) is furthest below the normalised chord "
            f"(score {score:.2f}); beyond it p99 grows faster than throughput"
        ),
        evidence=evidence,
    )
