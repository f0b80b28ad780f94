"""find-max: search the highest arrival rate that meets the p99 SLO.

Pure logic, no Locust: :class:`FindMaxSearch` is told the measurements of each window at the
current rate and decides when a rate passes or fails and which rate to try next.

* A rate **passes** when its last ``stable_windows`` windows all meet the SLO (p99 and error
  rate) and agree with each other (their p99 differ by at most ``stability`` x the SLO: an
  absolute spread, far below the SLO relative noise does not matter), and the p99 of the
  meeting windows pooled is *shown* within the SLO: the upper end of its 95% confidence
  interval (:mod:`analysis.intervals`, at least 368 requests; widened by batch means where
  neighbours are correlated, as they are near the knee) is at most the SLO. While the
  pool is too small for a bound, or its bound is above the SLO, the rate is held longer.
* It **fails** when its last ``stable_windows`` windows all break the SLO.
* Held ``max_hold_s`` without either, it is decided by **every** counted request sent at that
  rate (occasional stalls count exactly as often as they happened), on the same upper bound
  (the point p99 when too few requests for one).
* The windows that decided a rate are its **steady state** (``Point.steady_from_ts`` to
  ``steady_to_ts``): the stage's reported figures come from them.
* Probes are **independent**: before the next rate starts, the generator waits until nothing
  it sent is in flight (the previous rate's backlog drained) and then idles ``drain_idle_s``
  (:mod:`loadtests.users`); each point records how long that took (``drain_s``).
* Search: step up by ``step_factor`` from ``start_rps`` until a rate fails (stepping down
  instead when the first rate fails), then bisect (geometric mean) between the highest
  passing and the lowest failing rate until they are within ``tolerance``.
* **Confirmation** (``confirm``): the highest passing rate is the best of several noisy
  probes, so it flatters (the winner's curse: one replica's capacity measured 38.5, 34.1 and
  33.4 rps in three searches minutes apart). Once settled, that rate is held again; if it
  fails, the next lower passing rate is, until one passes twice. A rate that passed and then
  failed counts as failing (:func:`analysis.openloop.open_loop_capacity`).

A window is judged once the next one has been sent (:mod:`loadtests.users`), so each rate
holds one window more than it needs: by then every request the window sent has its final
latency, as the analysis of the raw records later sees it, or is still in flight after a
whole window and counts as an SLO breach with its age as latency (a server that stopped
answering cannot look fast). Judged as the window closed, the requests then in flight (the
slowest) were left out, and rates find-max passed failed in the analysis (three replicas:
102 requests/s passed twice, the analysis of the same requests said 81.6). A window in which
the generator itself fell behind (more than 1% of sends over ``late_ms`` late: its host was
busy, not the target) is kept as evidence but decides nothing: the rate is held for another.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis.defaults import DEFAULT_LATE_MS, DEFAULT_MAX_ERROR_RATE, LATE_SHARE_LIMIT
from analysis.intervals import quantile_upper
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


def judged_window(
    sent: tuple[float, float], now: float, observed: list[tuple[float, float, str, float]],
    in_flight_ts: Iterable[float], slo_p99_ms: float, late_ms: float = DEFAULT_LATE_MS,
) -> WindowResult:  # fmt: skip
    """The window that sent its requests in ``sent`` (start, end), judged at ``now``, a window
    later: those still in flight (scheduled at ``in_flight_ts``) count with their age."""
    start, end = sent
    ages = [(now - ts) * 1000 for ts in in_flight_ts if start <= ts < end]
    return window_result(start, end, observed, ages, slo_p99_ms, late_ms)


@dataclass
class Point:
    rps: float
    windows: list[WindowResult] = field(default_factory=list)
    passed: bool | None = None
    reason: str = ""
    steady_from_ts: float | None = None
    """Start of the windows that decided the rate."""
    steady_to_ts: float | None = None
    """End of the windows that decided the rate (windows after them decided nothing)."""
    p99_ms: float | None = None
    p99_upper_ms: float | None = None
    """The deciding windows' pooled p99 and the upper end of its 95% interval."""
    requests: int = 0
    """Requests in the deciding windows."""
    drain_s: float | None = None
    """Seconds its requests still in flight took to finish once the rate was decided."""
    drained: bool | None = None
    """Whether they all finished (within the request timeout) before the next rate."""
    confirms: bool = False
    """A second hold of a rate that passed (``FindMax.confirm``)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "rps": self.rps,
            "passed": self.passed,
            "reason": self.reason,
            "steady_from_ts": self.steady_from_ts,
            "steady_to_ts": self.steady_to_ts,
            "p99_ms": self.p99_ms,
            "p99_upper_ms": self.p99_upper_ms,
            "requests": self.requests,
            "drain_s": self.drain_s,
            "drained": self.drained,
            "confirms": self.confirms,
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
        self.confirming = False  # the search settled; holding its answer again
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
        k = self.plan.stable_windows
        if not window.generator_behind and len(counted) >= k:
            last = counted[-k:]
            if not any(self._meets(w) for w in last):
                return self._decide(False, "broke the SLO in consecutive windows", last)
            p99s = [w.p99_ms for w in last]
            stable = max(p99s) - min(p99s) <= self.plan.stability * self.slo_p99_ms
            if stable and all(self._meets(w) for w in last):
                steady = self._meeting_suffix(counted)
                upper = _p99_upper(steady)
                if upper is not None and upper <= self.slo_p99_ms:
                    return self._decide(True, "met the SLO in consecutive stable windows, its "
                                        f"p99 shown within it (upper bound {upper:.1f} ms)",
                                        steady)  # fmt: skip
        if held_s >= self.plan.max_hold_s:
            pool = counted or point.windows  # every window late: judge them all, as they were
            if len(pool) > k:  # the first window carries the change of rate
                pool = pool[1:]
            pooled = _pooled(pool)
            upper = _p99_upper(pool)
            judged = pooled.p99_ms if upper is None else upper
            passed = self._meets(pooled) and judged <= self.slo_p99_ms
            basis = "its p99" if upper is None else "the upper bound of its p99"
            return self._decide(
                passed,
                f"unsettled after {self.plan.max_hold_s:.0f} s; judged on all its requests: "
                f"{basis} ({judged:.1f} ms) {'met' if passed else 'broke'} the SLO",
                pool,
            )
        return False

    def _meeting_suffix(self, counted: list[WindowResult]) -> list[WindowResult]:
        """The longest run of windows at the end that all meet the SLO."""
        out: list[WindowResult] = []
        for w in reversed(counted):
            if not self._meets(w):
                break
            out.insert(0, w)
        return out

    def _decide(self, passed: bool, reason: str, deciding: list[WindowResult]) -> bool:
        point = self.current
        point.passed, point.reason = passed, reason
        pooled = _pooled(deciding)
        point.steady_from_ts, point.steady_to_ts = deciding[0].start_ts, deciding[-1].end_ts
        point.p99_ms = None if math.isnan(pooled.p99_ms) else pooled.p99_ms
        point.p99_upper_ms = _p99_upper(deciding)
        point.requests = pooled.requests
        if passed:
            self.lo = max(self.lo or 0.0, point.rps)
        else:
            self.hi = min(self.hi or math.inf, point.rps)
        if self.confirming:  # confirmed, or the next lower rate that passed is held again
            nxt = None if passed else self._highest_pass_below(point.rps)
            if not passed:
                self.lo = nxt
        else:
            nxt = self._next_rate()
            if nxt is None and self.plan.confirm and self.lo is not None:
                self.confirming, nxt = True, self.lo
        if nxt is None or len(self.points) >= self.plan.max_points:
            self.done = True
        else:
            self.points.append(Point(nxt, confirms=self.confirming))
        return True

    def _highest_pass_below(self, rate: float) -> float | None:
        passed = [p.rps for p in self.points if p.passed and p.rps < rate - 1e-9]
        return max(passed) if passed else None

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


def _pooled(windows: list[WindowResult]) -> WindowResult:
    """Several windows as one: requests and errors added, p99 of every latency."""
    return WindowResult(
        windows[0].start_ts, windows[-1].end_ts, sum(w.requests for w in windows),
        sum(w.errors for w in windows),
        percentile_ms([x for w in windows for x in w.latencies_ms], 99),
    )  # fmt: skip


def _p99_upper(windows: list[WindowResult]) -> float | None:
    """Upper end of the 95% interval of the pooled p99; None with too few latencies."""
    latencies = [x for w in windows for x in w.latencies_ms]  # in the order they were sent
    return quantile_upper(np.asarray(latencies, dtype=float), 0.99) if latencies else None
