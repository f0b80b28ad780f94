"""find-max: search the highest arrival rate that meets the p99 SLO.

Pure logic, no Locust: :class:`FindMaxSearch` is told the measurements of each window at the
current rate and decides when a rate passes or fails and which rate to try next.

* A rate **passes** when its last ``stable_windows`` windows all meet the SLO (p99 and error
  rate) and agree with each other: their p99 differ by at most ``stability`` x the SLO (an
  absolute spread: far below the SLO, relative noise does not matter).
* It **fails** when its last ``stable_windows`` windows all break the SLO.
* Held ``max_hold_s`` without either, it is decided by the p99 and error rate of **every**
  request sent at that rate (occasional stalls count exactly as often as they happened).
* The windows that decided a rate are its **steady state** (``Point.steady_from_ts``): the
  stage's reported figures come from them, so the backlog a failed rate left behind, drained
  in the next rate's first windows, neither decides nor colours the next rate.
* Search: step up by ``step_factor`` from ``start_rps`` until a rate fails (stepping down
  instead when the first rate fails), then bisect (geometric mean) between the highest
  passing and the lowest failing rate until they are within ``tolerance``.

Requests still in flight and older than the SLO when a window closes count as SLO breaches
with their age as latency: a server that stopped answering cannot look fast. A window in which
the generator itself fell behind (more than 1% of sends over ``late_ms`` late: its host was
busy, not the target) is kept as evidence but decides nothing: the rate is held for another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from analysis.defaults import DEFAULT_LATE_MS, DEFAULT_MAX_ERROR_RATE, LATE_SHARE_LIMIT
from analysis.stages import percentile_ms
from loadtests.spec import FindMax


@dataclass
class WindowResult:
    start_ts: float
    end_ts: float
    requests: int
    errors: int
    p99_ms: float
    overdue: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    """Successful requests' latencies plus overdue ages (to pool windows)."""
    late_share: float = 0.0
    """Share of the window's sends that left more than ``late_ms`` behind schedule."""

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def generator_behind(self) -> bool:
        return self.late_share > LATE_SHARE_LIMIT


def window_result(
    start_ts: float,
    end_ts: float,
    observed: list[tuple[float, float, str, float]],
    in_flight_ages_ms: list[float],
    slo_p99_ms: float,
    late_ms: float = DEFAULT_LATE_MS,
) -> WindowResult:
    """Summarise the requests scheduled in [start_ts, end_ts) (plus overdue in-flight ones)."""
    inside = [(lat, out, lag) for ts, lat, out, lag in observed if start_ts <= ts < end_ts]
    overdue = [age for age in in_flight_ages_ms if age > slo_p99_ms]
    latencies = [lat for lat, out, _ in inside if out == "ok"] + overdue
    errors = sum(1 for _, out, _ in inside if out != "ok")
    late = sum(1 for _, _, lag in inside if lag > late_ms) / len(inside) if inside else 0.0
    return WindowResult(start_ts, end_ts, len(inside) + len(overdue), errors,
                        percentile_ms(latencies, 99), len(overdue), latencies, late)  # fmt: skip


@dataclass
class Point:
    rps: float
    windows: list[WindowResult] = field(default_factory=list)
    passed: bool | None = None
    reason: str = ""
    steady_from_ts: float | None = None
    """Start of the windows that decided the rate."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "rps": self.rps,
            "passed": self.passed,
            "reason": self.reason,
            "steady_from_ts": self.steady_from_ts,
            "windows": [
                {
                    "p99_ms": w.p99_ms,
                    "requests": w.requests,
                    "error_rate": w.error_rate,
                    "overdue": w.overdue,
                    "late_share": w.late_share,
                    "counted": not w.generator_behind,
                    "start_ts": w.start_ts,
                    "end_ts": w.end_ts,
                }
                for w in self.windows
            ],
        }


class FindMaxSearch:
    def __init__(
        self, plan: FindMax, slo_p99_ms: float, max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
        late_ms: float = DEFAULT_LATE_MS,
    ) -> None:  # fmt: skip
        self.plan = plan
        self.late_ms = late_ms
        self.slo_p99_ms = slo_p99_ms
        self.max_error_rate = max_error_rate
        self.points: list[Point] = [Point(plan.start_rps)]
        self.lo: float | None = None  # highest passing rate
        self.hi: float | None = None  # lowest failing rate
        self.done = False

    @property
    def current(self) -> Point:
        return self.points[-1]

    def _meets(self, w: WindowResult) -> bool:
        ok_p99 = not math.isnan(w.p99_ms) and w.p99_ms <= self.slo_p99_ms
        return ok_p99 and w.error_rate <= self.max_error_rate and w.requests > 0

    def add_window(self, window: WindowResult, held_s: float) -> bool:
        """Record a window at the current rate; True when the rate has been decided."""
        point = self.current
        point.windows.append(window)
        counted = [w for w in point.windows if not w.generator_behind]
        last = counted[-self.plan.stable_windows :]
        if not window.generator_behind and len(last) == self.plan.stable_windows:
            p99s = [w.p99_ms for w in last]
            if all(self._meets(w) for w in last):
                if max(p99s) - min(p99s) <= self.plan.stability * self.slo_p99_ms:
                    point.steady_from_ts = last[0].start_ts
                    return self._decide(True, "met the SLO in consecutive stable windows")
            elif not any(self._meets(w) for w in last):
                point.steady_from_ts = last[0].start_ts
                return self._decide(False, "broke the SLO in consecutive windows")
        if held_s >= self.plan.max_hold_s:
            pool = counted or point.windows  # every window late: judge them all, as they were
            pooled = WindowResult(
                pool[0].start_ts, window.end_ts,
                sum(w.requests for w in pool), sum(w.errors for w in pool),
                percentile_ms([x for w in pool for x in w.latencies_ms], 99),
            )  # fmt: skip
            verdict = "met" if self._meets(pooled) else "broke"
            point.steady_from_ts = pool[0].start_ts
            return self._decide(
                self._meets(pooled),
                f"unsettled after {self.plan.max_hold_s:.0f} s; all its requests {verdict} "
                f"the SLO (p99 {pooled.p99_ms:.1f} ms)",
            )
        return False

    def _decide(self, passed: bool, reason: str) -> bool:
        point = self.current
        point.passed, point.reason = passed, reason
        if passed:
            self.lo = max(self.lo or 0.0, point.rps)
        else:
            self.hi = min(self.hi or math.inf, point.rps)
        nxt = self._next_rate()
        if nxt is None or len(self.points) >= self.plan.max_points:
            self.done = True
        else:
            self.points.append(Point(nxt))
        return True

    def _next_rate(self) -> float | None:
        p = self.plan
        if self.hi is None:  # still stepping up
            assert self.lo is not None
            if self.lo >= p.max_rps:
                return None
            return min(self.lo * p.step_factor, p.max_rps)
        if self.lo is None:  # even the first rate failed: step down
            nxt = self.hi / p.step_factor
            return nxt if nxt >= 0.1 else None
        if self.hi / self.lo - 1 <= p.tolerance:
            return None
        return math.sqrt(self.lo * self.hi)

    def result(self) -> dict[str, Any]:
        return {
            "max_rps": self.lo or 0.0,
            "lowest_failing_rps": self.hi,
            "slo_p99_ms": self.slo_p99_ms,
            "max_error_rate": self.max_error_rate,
            "complete": self.done,
            "points": [pt.as_dict() for pt in self.points if pt.passed is not None],
        }
