"""CPU limits: what form a replica's CPU was limited in, and what a quota cost the tail.

A CFS quota (``docker --cpus``, a Kubernetes CPU limit) gives a process ``cpus`` x 100 ms of
CPU time per 100 ms period (a target's ``cpu_period_ms`` sets another period): once a burst
has used it up, the process waits for the next period, which shows in p99 long before the
average CPU is used. A whole pinned core (``cpuset`` alone; Kubernetes' static CPU manager
with integer requests) is never throttled. A plan assumes the form the capacity was measured
with (:func:`limit_line`); when a results folder holds runs of the same kind in both forms
(scenario ``cpu-limits``), the plan says what the quota cost, measured
(:func:`quota_cost_line`). Pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_CFS_PERIOD_MS = 100.0
"""Docker's and Kubernetes' CFS period, over which a quota is enforced."""


@dataclass(frozen=True)
class CpuLimit:
    """A target's CPU limit as it was measured."""

    cpus: float | None = None
    """CFS quota in CPUs (None: no quota)."""
    cpuset: str | None = None
    """CPUs it was pinned to (None: any)."""
    period_ms: float | None = None
    """The CFS period of the quota (None: the default 100 ms)."""

    @property
    def form(self) -> str:
        """``quota``, ``pinned`` (whole CPUs, no quota) or ``none``."""
        if self.cpus is not None:
            return "quota"
        return "pinned" if self.cpuset else "none"


def limit_line(limit: CpuLimit) -> str:
    """The CPU limit a plan assumes, for its text."""
    where = f" on CPU(s) {limit.cpuset}" if limit.cpuset else ""
    if limit.form == "quota":
        period = limit.period_ms or DEFAULT_CFS_PERIOD_MS
        nodes = ("" if limit.period_ms is None else
                 f"; on nodes whose kubelet sets cpuCFSQuotaPeriod to {period:g} ms, not the "
                 f"default {DEFAULT_CFS_PERIOD_MS:g} ms; longer ones throttle longer")  # fmt: skip
        return (f"CPU limit assumed: a CFS quota of {limit.cpus:g} CPU per replica{where} over "
                f"a {period:g} ms period, as measured (Kubernetes: CPU limit = that quota"
                f"{nodes}). A quota throttles bursts: a replica that used its share of a "
                f"period waits up to {(1 - min(limit.cpus or 0, 1)) * period:.0f} ms for the "
                "next one, which shows in p99 (`servecap run cpu-limits --launcher docker` "
                "measures what it costs against a whole pinned core).")  # fmt: skip
    if limit.form == "pinned":
        return (f"CPU limit assumed: whole CPUs pinned{where}, no quota, as measured "
                "(Kubernetes: the static CPU manager with integer CPU requests equal to "
                "limits).")  # fmt: skip
    return (
        "CPU limit assumed: none; the replica used the host's CPUs as it wanted. A "
        "deployment with a CPU limit (a quota) differs: measure with `cpus:` set."
    )


def _light_p99_ms(run: Mapping[str, Any]) -> float:
    stages = [s for s in run.get("stages") or [] if s.get("measured_requests")]
    if not stages:
        return math.nan
    light = min(stages, key=lambda s: s.get("arrival_rps") or s.get("rps") or math.inf)
    return float(light.get("p99_ms") or math.nan)


def quota_cost_line(
    runs: Sequence[Mapping[str, Any]], limits: Mapping[str, CpuLimit],
    capacities: Mapping[str, float | None], target: str,
) -> str | None:  # fmt: skip
    """For ``target`` measured with a quota: the same kind measured on pinned whole CPUs in
    the same folder, side by side (capacity per CPU, p99 at the lightest rate); None
    without such a pair."""
    by_name = {str(r.get("target")): r for r in runs}
    mine, limit = by_name.get(target), limits.get(target)
    if mine is None or limit is None or limit.form != "quota" or not limit.cpus:
        return None
    for name, other in limits.items():
        run = by_name.get(name)
        if other.form != "pinned" or run is None or run.get("kind") != mine.get("kind"):
            continue
        cores = len(_cpus(other.cpuset))
        cap_q, cap_p = capacities.get(target), capacities.get(name)
        if not cap_q or not cap_p or not cores:
            continue
        return (f"Measured in this folder: with a quota of {limit.cpus:g} CPU, {cap_q:.1f} "
                f"requests/s ({cap_q / limit.cpus:.1f} per CPU) and p99 "
                f"{_light_p99_ms(mine):.1f} ms at the lightest rate; on {cores} whole pinned "
                f"CPU(s) ('{name}'), {cap_p:.1f} requests/s ({cap_p / cores:.1f} per CPU) and "
                f"p99 {_light_p99_ms(run):.1f} ms.")  # fmt: skip
    return None


def _cpus(cpuset: str | None) -> list[int]:
    out: list[int] = []
    for part in (cpuset or "").split(","):
        if part:
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    return out
