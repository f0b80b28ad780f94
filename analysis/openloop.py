"""Open-loop capacity: the highest Poisson arrival rate whose p99 is shown to meet the SLO.

A closed-loop ramp never queues more requests than it has users, so its p99 looks good at
throughputs that open arrivals (clients that do not wait for each other) cannot sustain. A
capacity a plan rests on therefore comes from **open-loop** stages (``rate``, ``trace``,
``find-max``): each stage was offered ``arrival_rps`` whatever the answers did.

Pure functions. A stage's :class:`RatePoint` keeps what the judgement needs; a rate
**meets** the SLO when

* its p99 is *shown* to be within the SLO: the upper end of the p99's 95% confidence interval
  (order statistics, :mod:`analysis.intervals`) is at most ``slo_p99_ms``. With too few
  requests for an interval (fewer than 368) the point p99 is judged and a warning says so;
* its error and rejection shares are within their limits;
* the generator kept to its schedule (a stage it fell behind on is left out: its load was not
  what was planned).

The capacity (:func:`open_loop_capacity`) is the highest measured rate that meets the SLO
below the lowest one that breaks it: no interpolation, no extrapolation, so every capacity is
a rate that was run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from analysis.contract import stage_number
from analysis.defaults import DEFAULT_MAX_ERROR_RATE, DEFAULT_MAX_REJECT_RATE
from analysis.slo import MaxRps

OPEN_LOOP_MODES = frozenset({"rate", "find-max", "trace"})
"""Load modes whose stages offer arrivals on a schedule (``trace`` runs as ``rate``)."""
Basis = str
"""``open-loop`` | ``closed-loop`` | ``none`` (no load curve: sequential runs)."""


@dataclass(frozen=True)
class RatePoint:
    """One open-loop stage: the arrival rate offered and the latency it produced."""

    arrival_rps: float
    p99_ms: float
    """Point estimate, nearest rank (NaN when nothing succeeded)."""
    p99_upper_ms: float | None
    """Upper end of the p99's 95% interval; None with too few requests for one."""
    p50_ms: float = math.nan
    error_rate: float = 0.0
    reject_rate: float = 0.0
    goodput_rps: float = math.nan
    requests: int = 0
    stage: int | None = None
    latency_cv: float | None = None
    """Coefficient of variation (std / mean) of successful latencies, when recorded."""
    generator_behind: bool = False
    """The load generator did not keep to the schedule: the rate was not offered as planned
    (what counts of such a stage: :func:`counted_points`)."""

    @property
    def judged_p99_ms(self) -> float:
        """The p99 a verdict rests on: the upper bound where there is one, else the point."""
        return self.p99_ms if self.p99_upper_ms is None else self.p99_upper_ms

    def meets(self, slo_p99_ms: float, max_error_rate: float, max_reject_rate: float) -> bool:
        return not self.violations(slo_p99_ms, max_error_rate, max_reject_rate)

    def violations(self, slo_p99_ms: float, max_error_rate: float, max_reject_rate: float
                   ) -> list[str]:  # fmt: skip
        out = []
        if not self.judged_p99_ms <= slo_p99_ms:  # NaN (nothing succeeded) breaks it too
            out.append("p99")
        if self.error_rate > max_error_rate:
            out.append("error_rate")
        if self.reject_rate > max_reject_rate:
            out.append("reject_rate")
        return out


def basis_of(run: Mapping[str, Any]) -> Basis:
    """How a run's load was offered: its ``mode`` when recorded; older summaries by their
    stages (an ``arrival_rps`` or a find-max search means open loop)."""
    mode = run.get("mode")
    if mode is not None:
        if mode in OPEN_LOOP_MODES:
            return "open-loop"
        return "none" if mode == "sequential" else "closed-loop"
    stages = run.get("stages") or []
    if run.get("find_max") or any(s.get("arrival_rps") is not None for s in stages):
        return "open-loop"
    return "closed-loop" if stages else "none"


def _number(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def rate_points(stages: Sequence[Mapping[str, Any]]) -> tuple[list[RatePoint], list[str]]:
    """The open-loop stages of a run as points sorted by arrival rate (stages with no arrival
    rate or no measured request left out), and a warning for each stage whose generator fell
    behind its schedule (flagged: :func:`counted_points` says what counts of it)."""
    points: list[RatePoint] = []
    warnings: list[str] = []
    for stage in stages:
        rate = _number(stage.get("arrival_rps"))
        index = stage.get("index")
        label = f"stage {stage_number(int(index))}" if isinstance(index, int) else "a stage"
        if not rate > 0 or not stage.get("measured_requests"):
            continue
        behind = stage.get("generator_ok") is False
        if behind:
            issues = "; ".join(stage.get("generator_issues") or [])
            warnings.append(f"{label} ({rate:.1f} rps): the load generator did not keep to the "
                            f"schedule ({issues}); it counts only as a break of a rate also "
                            "measured on schedule")  # fmt: skip
        ci = stage.get("p99_ci_ms")
        upper = _number(ci[1]) if isinstance(ci, list | tuple) and len(ci) == 2 else math.nan
        cv = _number(stage.get("latency_cv"))
        points.append(RatePoint(
            arrival_rps=rate, p99_ms=_number(stage.get("p99_ms")),
            p99_upper_ms=upper if math.isfinite(upper) else None,
            p50_ms=_number(stage.get("p50_ms")),
            error_rate=_number(stage.get("error_rate")) or 0.0,
            reject_rate=_number(stage.get("reject_rate")) or 0.0,
            goodput_rps=_number(stage.get("goodput_rps")),
            requests=int(stage.get("measured_requests") or 0),
            stage=index if isinstance(index, int) else None,
            latency_cv=cv if math.isfinite(cv) else None, generator_behind=behind,
        ))  # fmt: skip
    points.sort(key=lambda p: p.arrival_rps)
    return points, warnings


def _describe(p: RatePoint) -> str:
    where = f"stage {stage_number(p.stage)}, " if p.stage is not None else ""
    return f"{p.arrival_rps:.1f} rps ({where}p99 {p.p99_ms:.1f} ms)"


def counted_points(
    points: Sequence[RatePoint], slo_p99_ms: float, max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE,
) -> list[RatePoint]:  # fmt: skip
    """The points a capacity rests on: every stage offered on schedule, and a stage the
    generator fell behind on only where it broke the SLO at a rate also run on schedule (a
    find-max confirmation that failed: measured, 42.7 rps passed, then broke with p99 1,165 ms
    while the generator lagged; left out, 42.7 made the capacity where the search had settled
    on 40.4). A lagging stage that met the SLO proves nothing; one alone at its rate neither."""
    clean = {round(p.arrival_rps, 6) for p in points if not p.generator_behind}
    return [p for p in points if not p.generator_behind or (
        round(p.arrival_rps, 6) in clean
        and p.violations(slo_p99_ms, max_error_rate, max_reject_rate))]  # fmt: skip


def open_loop_capacity(
    points: Sequence[RatePoint],
    slo_p99_ms: float,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE,
) -> MaxRps:
    """The highest arrival rate meeting the SLO below the lowest rate breaking it."""
    if slo_p99_ms <= 0:
        raise ValueError(f"slo_p99_ms must be positive, got {slo_p99_ms}")
    base: dict[str, Any] = {"slo_p99_ms": float(slo_p99_ms), "max_error_rate": max_error_rate,
                            "max_reject_rate": max_reject_rate}  # fmt: skip
    # a rate run twice (find-max's confirmation) that once broke the SLO counts as breaking
    judged = sorted(((p, p.violations(slo_p99_ms, max_error_rate, max_reject_rate))
                     for p in counted_points(points, slo_p99_ms, max_error_rate, max_reject_rate)),
                    key=lambda pv: (pv[0].arrival_rps, not pv[1]))  # fmt: skip
    if not judged:
        return MaxRps(**base, max_rps=None, capacity_rps=None, method="no_data",
                      limited_by=None, lower_stage=None, upper_stage=None,
                      warnings=["no open-loop stage has measured requests"])  # fmt: skip
    ordered = [p for p, _ in judged]
    broken = [v for _, v in judged]
    evidence = [{"arrival_rps": p.arrival_rps, "stage": p.stage, "p99_ms": p.p99_ms,
                 "p99_upper_ms": p.p99_upper_ms, "error_rate": p.error_rate,
                 "reject_rate": p.reject_rate, "meets": not v, "violations": v}
                for p, v in zip(ordered, broken, strict=True)]  # fmt: skip
    warnings = [f"{_describe(p)}: too few requests ({p.requests}) for a 95% bound on p99; "
                "judged on the point estimate"
                for p in ordered if p.p99_upper_ms is None]  # fmt: skip
    first = next((i for i, v in enumerate(broken) if v), None)
    if first == 0:
        warnings.append(f"no rate meets the SLO: already {_describe(ordered[0])} breaks it on "
                        f"{', '.join(broken[0])}; start lower or relax the SLO")  # fmt: skip
        return MaxRps(**base, max_rps=None, capacity_rps=None, method="none",
                      limited_by=broken[0][0], lower_stage=None, upper_stage=ordered[0].stage,
                      evidence=evidence, warnings=warnings)  # fmt: skip
    last_ok = ordered[(len(ordered) if first is None else first) - 1]
    if first is not None:
        above = [p for p, v in zip(ordered[first + 1 :], broken[first + 1 :], strict=True)
                 if not v]  # fmt: skip
        if above:
            warnings.append(f"{_describe(above[-1])} met the SLO above {_describe(ordered[first])}"
                            ", which broke it: noisy probes; the capacity stays below the first "
                            "break")  # fmt: skip
    if first is None:
        warnings.append(f"no rate broke the SLO: the capacity is at least {last_ok.arrival_rps:.1f}"
                        " rps (a lower bound); offer more to measure it")  # fmt: skip
        return MaxRps(**base, max_rps=last_ok.arrival_rps, capacity_rps=last_ok.arrival_rps,
                      method="lower_bound", limited_by=None, lower_stage=last_ok.stage,
                      upper_stage=None, evidence=evidence, warnings=warnings)  # fmt: skip
    upper = ordered[first]
    return MaxRps(**base, max_rps=last_ok.arrival_rps, capacity_rps=last_ok.arrival_rps,
                  method="highest_passing_rate", limited_by=broken[first][0],
                  lower_stage=last_ok.stage, upper_stage=upper.stage, evidence=evidence,
                  warnings=warnings)  # fmt: skip
