"""Sizing: from a per-replica capacity and a demand to replicas, cores and memory.

Pure functions, no I/O. The arithmetic, written out so it can be checked by hand::

    peak_rps = daily_requests / 86,400 x peak_factor      (when a daily volume is given)
    replicas = ceil(peak_rps / (capacity_per_replica x (1 - headroom)))
    totals   = replicas x per-replica CPU cores / memory / GPUs

``headroom`` is the share of each replica's capacity kept free at peak (0.3: replicas are
planned at 70% of what they can do under the SLO). CPU per replica is what a replica used at
its capacity, so totals cover every replica running flat out. Every :class:`Plan` carries its
assumptions as text lines.

Given a host size (``host_cores``, ``host_mem_gb``), replicas are packed onto hosts::

    replicas_per_host = min(floor(host_cores / cores per replica),
                            floor(host_mem_mb / memory per replica))
    hosts             = ceil(replicas / replicas_per_host)

Replicas on one host do not scale past its cores: a second replica on a host whose cores
the first already keeps busy adds little (measured: 1 worker 512 rps, 2 workers on the same
2 cores 575 rps, not 1,024). Packing by measured cores keeps a plan from counting on that.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from analysis.capacity import RunCapacity, run_capacity
from analysis.defaults import DEFAULT_HEADROOM, DEFAULT_MAX_ERROR_RATE, DEFAULT_MAX_REJECT_RATE
from analysis.limits import CpuLimit, limit_line, quota_cost_line
from analysis.openloop import RatePoint
from analysis.replicas import Balancer, ReplicaModel
from analysis.stages import json_safe

SECONDS_PER_DAY = 86_400

NOT_INCLUDED = (
    "Not included: redundancy for failures or deploys (add N+1 or a zone's worth), traffic "
    "growth, client retries, the load balancer and anything outside the measured target."
)


def peak_rps_from_daily(daily_requests: float, peak_factor: float) -> float:
    """Peak requests per second: the daily mean rate times the peak-to-mean factor."""
    if daily_requests <= 0:
        raise ValueError(f"daily_requests must be positive, got {daily_requests}")
    if peak_factor < 1:
        raise ValueError(f"peak_factor is peak / mean and must be at least 1, got {peak_factor}")
    return daily_requests / SECONDS_PER_DAY * peak_factor


def resolve_peak(
    peak_rps: float | None, daily_requests: float | None, peak_factor: float | None
) -> float:
    """``peak_rps``, or ``daily_requests`` with ``peak_factor``: exactly one of the two forms."""
    if peak_rps is not None and (daily_requests is not None or peak_factor is not None):
        raise ValueError("give either peak_rps or daily_requests with peak_factor, not both")
    if peak_rps is not None:
        if peak_rps <= 0:
            raise ValueError(f"peak_rps must be positive, got {peak_rps}")
        return float(peak_rps)
    if daily_requests is None or peak_factor is None:
        raise ValueError("give peak_rps, or daily_requests together with peak_factor")
    return peak_rps_from_daily(daily_requests, peak_factor)


def fmt_number(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


@dataclass(frozen=True)
class Plan:
    """A sizing: replicas and totals for a peak load, with its assumptions as text."""

    capacity_per_replica_rps: float
    peak_rps: float
    headroom: float
    replicas: int
    usable_rps_per_replica: float
    utilisation_at_peak: float
    """Peak load / the capacity of the planned replicas: how busy they are at peak."""
    cpu_cores_per_replica: float | None
    mem_mb_per_replica: float | None
    gpus_per_replica: float
    total_cpu_cores: float | None
    total_mem_mb: float | None
    total_gpus: float
    daily_requests: float | None = None
    peak_factor: float | None = None
    slo_p99_ms: float | None = None
    label: str = ""
    assumptions: tuple[str, ...] = field(default_factory=tuple)
    replicas_per_host: int | None = None
    """With a host size: replicas one host holds at capacity (by its cores and memory)."""
    hosts: int | None = None
    mem_peak_mb_per_replica: float | None = None
    """The highest RSS sample of a replica (memory limits are set from it)."""
    basis: str = "given"
    """What the capacity was measured with: open-loop arrivals, a closed-loop ramp, or given."""
    model: str | None = None
    """The model of N replicas (analysis.replicas) when the plan rests on one; None: linear."""
    balancer: str | None = None
    predicted_capacity_rps: float | None = None
    """What the planned replicas together can take under the SLO (model or linear)."""
    predicted_p99_at_peak_ms: float | None = None
    """The model's p99 at the peak over the planned replicas (None without a model)."""

    @property
    def total_mem_gb(self) -> float | None:
        return None if self.total_mem_mb is None else self.total_mem_mb / 1024

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["assumptions"] = list(self.assumptions)
        out["total_mem_gb"] = self.total_mem_gb
        return dict(json_safe(out))


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass(frozen=True)
class _Replicas:
    count: int
    capacity_rps: float
    """What ``count`` replicas take under the SLO."""
    p99_at_peak_ms: float | None
    lines: list[str]


def _linear(capacity: float, peak: float, headroom: float, min_replicas: int) -> _Replicas:
    usable = capacity * (1.0 - headroom)
    # A hair of tolerance so that 10.0000000001 (float noise) does not become 11.
    count = max(min_replicas, math.ceil(peak / usable - 1e-9))
    lines = [
        f"Headroom: {headroom:.0%} of each replica's capacity kept free at peak, so each is "
        f"planned at {fmt_number(usable)} requests/s ({1 - headroom:.0%} of capacity).",
        f"Replicas: ceil({fmt_number(peak)} / {fmt_number(usable)}) = {count}"
        + (f" (at least {min_replicas})" if min_replicas > 1 else "")
        + f"; at peak they run at {peak / (count * capacity):.0%} of capacity.",
        "Replicas scale linearly (no model of N replicas: the capacity was not measured with "
        "open arrivals): no shared bottleneck (database, network, load balancer) limits them, "
        "and each gets the hardware the measurement ran on.",
    ]
    return _Replicas(count, count * capacity, None, lines)


def _modelled(model: ReplicaModel, peak: float, headroom: float, min_replicas: int) -> _Replicas:
    grown = peak / (1.0 - headroom)
    count = max(min_replicas, model.replicas_for(grown))
    capacity = model.capacity_rps(count) or 0.0
    p99 = model.p99_ms(peak, count)
    fewer = model.capacity_rps(count - 1) if count > 1 else None
    lines = [
        *model.assumptions(),
        f"Headroom: {headroom:.0%} for growth: the replicas must hold the SLO at peak / "
        f"(1 - {headroom:g}) = {fmt_number(grown)} requests/s.",
        f"Replicas: {count}, the fewest whose predicted capacity reaches {fmt_number(grown)} "
        f"requests/s: {count} x {fmt_number(capacity / count)} = {fmt_number(capacity)} requests/s"
        + (f" ({count - 1} would take {fmt_number(fewer)})" if fewer is not None else "")
        + (f"; at least {min_replicas}" if min_replicas > 1 else "")
        + f". At peak they run at {peak / capacity:.0%} of it, predicted p99 "
        + (f"{p99:.1f} ms." if p99 is not None else "beyond the measurement."),
    ]
    return _Replicas(count, capacity, p99, lines)


def plan(
    capacity_per_replica_rps: float,
    peak_rps: float | None = None,
    *,
    daily_requests: float | None = None,
    peak_factor: float | None = None,
    headroom: float = DEFAULT_HEADROOM,
    cpu_cores_per_replica: float | None = None,
    mem_mb_per_replica: float | None = None,
    gpus_per_replica: float = 0.0,
    slo_p99_ms: float | None = None,
    min_replicas: int = 1,
    label: str = "",
    host_cores: float | None = None,
    host_mem_gb: float | None = None,
    model: ReplicaModel | None = None,
    basis: str | None = None,
) -> Plan:
    """Replicas and totals for a peak load (``peak_rps``, or ``daily_requests`` x factor).

    With a ``model`` (an open-loop curve, :mod:`analysis.replicas`) the replicas are the
    fewest whose predicted p99 at peak / (1 - headroom) meets the SLO; without one, capacity
    per replica x replicas (linear). "100 million requests a day, peak factor 3, p99 under
    200 ms" is ``plan(capacity, daily_requests=100e6, peak_factor=3, slo_p99_ms=200)``
    (:func:`plan_targets` does it from a summary).
    """
    if not capacity_per_replica_rps > 0 or not math.isfinite(capacity_per_replica_rps):
        raise ValueError(f"capacity per replica must be positive, got {capacity_per_replica_rps}")
    if not 0 <= headroom < 1:
        raise ValueError(f"headroom is a share of capacity in [0, 1), got {headroom}")
    if min_replicas < 1:
        raise ValueError(f"min_replicas must be at least 1, got {min_replicas}")
    for name, size in (("host_cores", host_cores), ("host_mem_gb", host_mem_gb)):
        if size is not None and not size > 0:
            raise ValueError(f"{name} must be positive, got {size}")
    peak = resolve_peak(peak_rps, daily_requests, peak_factor)
    sized = (_linear(capacity_per_replica_rps, peak, headroom, min_replicas) if model is None
             else _modelled(model, peak, headroom, min_replicas))  # fmt: skip
    replicas = sized.count
    cpu, mem = _finite(cpu_cores_per_replica), _finite(mem_mb_per_replica)
    total_cpu = None if cpu is None else replicas * cpu
    total_mem = None if mem is None else replicas * mem
    slo = f" with p99 <= {slo_p99_ms:g} ms" if slo_p99_ms is not None else ""
    basis = "open-loop" if model is not None else basis
    lines = [
        _demand_line(peak, peak_rps, daily_requests, peak_factor),
        f"Capacity: {fmt_number(capacity_per_replica_rps)} requests/s per replica{slo}"
        + (f" ({basis})." if basis else "."),
        *sized.lines,
    ]
    per = []
    if cpu is not None and total_cpu is not None:
        per.append(f"{cpu:.2f} CPU cores (used at capacity) -> {total_cpu:,.1f} cores")
    if mem is not None and total_mem is not None:
        per.append(f"{mem:,.0f} MB memory (RSS) -> {total_mem / 1024:,.1f} GB")
    if gpus_per_replica:
        per.append(f"{gpus_per_replica:g} GPU(s) -> {replicas * gpus_per_replica:g} GPUs")
    if per:
        lines.append("Per replica: " + "; ".join(per) + " in total.")
    per_host, hosts = _pack(replicas, cpu, mem, host_cores, host_mem_gb, lines)
    lines.append(NOT_INCLUDED)
    return Plan(
        capacity_per_replica_rps=float(capacity_per_replica_rps), peak_rps=peak,
        headroom=float(headroom), replicas=replicas,
        usable_rps_per_replica=sized.capacity_rps * (1.0 - headroom) / replicas,
        utilisation_at_peak=peak / sized.capacity_rps, cpu_cores_per_replica=cpu,
        mem_mb_per_replica=mem, gpus_per_replica=float(gpus_per_replica),
        total_cpu_cores=total_cpu, total_mem_mb=total_mem,
        total_gpus=replicas * float(gpus_per_replica), daily_requests=daily_requests,
        peak_factor=peak_factor, slo_p99_ms=slo_p99_ms, label=label,
        assumptions=tuple(lines), replicas_per_host=per_host, hosts=hosts,
        basis=basis or "given",
        model=None if model is None else model.name,
        balancer=None if model is None else model.balancer,
        predicted_capacity_rps=sized.capacity_rps,
        predicted_p99_at_peak_ms=sized.p99_at_peak_ms,
    )  # fmt: skip


def _demand_line(
    peak: float, peak_rps: float | None, daily: float | None, factor: float | None
) -> str:
    if peak_rps is not None:
        return f"Peak load: {fmt_number(peak)} requests/s (given)."
    daily = daily or 0.0
    return (f"Peak load: {fmt_number(daily, 0)} requests/day / {SECONDS_PER_DAY:,} s x peak "
            f"factor {factor:g} = {fmt_number(peak)} requests/s (mean "
            f"{fmt_number(daily / SECONDS_PER_DAY)} requests/s).")  # fmt: skip


def _pack(
    replicas: int,
    cpu: float | None,
    mem_mb: float | None,
    host_cores: float | None,
    host_mem_gb: float | None,
    lines: list[str],
) -> tuple[int | None, int | None]:
    """Replicas per host and hosts, appending the reasoning to ``lines``; (None, None) if no
    host size is given or nothing measured bounds a replica."""
    if host_cores is None and host_mem_gb is None:
        return None, None
    limits = []
    if host_cores is not None and cpu is not None and cpu > 0:
        limits.append((math.floor(host_cores / cpu + 1e-9), f"{host_cores:g} cores / {cpu:.2f}"))
    if host_mem_gb is not None and mem_mb is not None and mem_mb > 0:
        fits = math.floor(host_mem_gb * 1024 / mem_mb + 1e-9)
        limits.append((fits, f"{host_mem_gb:g} GB / {mem_mb:,.0f} MB"))
    if not limits:
        lines.append("Hosts: not packed, the run measured no CPU or memory per replica.")
        return None, None
    per_host, why = min(limits)
    if per_host < 1:
        lines.append(f"Hosts: one replica does not fit a host ({why} < 1); use larger hosts.")
        return 0, None
    hosts = math.ceil(replicas / per_host)
    lines.append(
        f"Hosts: {per_host} replica(s) per host (floor({why})), so ceil({replicas} / "
        f"{per_host}) = {hosts} host(s); replicas on one host share its cores, so packing "
        "more than this onto it would not add capacity."
    )
    return per_host, hosts


@dataclass(frozen=True)
class TargetPlan:
    """One target of a summary: its measured capacity and the plan made from it."""

    target: str | None
    kind: str | None
    status: str | None
    capacity: RunCapacity
    plan: Plan | None
    reason: str = ""
    """Why there is no plan (no stage met the SLO, no data...)."""

    @property
    def warnings(self) -> list[str]:
        return self.capacity.warnings


CLOSED_LOOP_REFUSAL = (
    "capacity read off a closed-loop ramp (users wait for answers, so no queue builds beyond "
    "them): optimistic for open traffic, a plan from it breaks under Poisson arrivals. "
    "Measure open-loop (load.mode find-max or rate, e.g. `servecap run plan-proof`), or "
    "pass --allow-closed-loop to plan from it anyway"
)
CLOSED_LOOP_WARNING = (
    "OPTIMISTIC: the capacity comes from a closed-loop ramp, which never queues more "
    "requests than it has users; open arrivals at this rate queue more and break the p99 "
    "sooner. Measure open-loop (find-max) before you act on this plan."
)


def plan_targets(
    summary: Mapping[str, Any],
    slo_p99_ms: float,
    peak_rps: float | None = None,
    *,
    daily_requests: float | None = None,
    peak_factor: float | None = None,
    headroom: float = DEFAULT_HEADROOM,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE,
    gpus_per_replica: float = 0.0,
    replicas_measured: int = 1,
    think_time_s: float = 0.0,
    host_cores: float | None = None,
    host_mem_gb: float | None = None,
    balancer: Balancer = "reuseport",
    allow_closed_loop: bool = False,
    cpu_limits: Mapping[str, CpuLimit] | None = None,
) -> list[TargetPlan]:
    """A :class:`Plan` for every run of a summary, from its capacity under the SLO: with the
    model of N replicas behind ``balancer`` on an open-loop curve; a closed-loop capacity is
    refused (no plan, the reason says why) unless ``allow_closed_loop``, then planned
    linearly with a warning first in its text. ``cpu_limits`` (per target: how its CPU was
    limited when measured) adds the limit the plan assumes, and a quota's measured cost when
    the summary has the same kind on whole pinned CPUs (:mod:`analysis.limits`)."""
    resolve_peak(peak_rps, daily_requests, peak_factor)  # validate before any work
    out = []
    runs = summary.get("runs", [])
    capacities = {str(r.get("target")): run_capacity(r, slo_p99_ms, max_error_rate,
                  max_reject_rate, think_time_s).capacity_rps
                  for r in runs} if cpu_limits else {}  # fmt: skip
    for run in runs:
        cap = run_capacity(run, slo_p99_ms, max_error_rate, max_reject_rate, think_time_s,
                           replicas_measured)  # fmt: skip
        per_replica = cap.capacity_rps
        made: Plan | None = None
        reason = ""
        if per_replica is None or not per_replica > 0:
            reason = cap.max_rps.warnings[-1] if cap.max_rps.warnings else "no capacity measured"
        elif cap.basis == "closed-loop" and not allow_closed_loop:
            reason = CLOSED_LOOP_REFUSAL
        else:
            model = None
            if cap.basis == "open-loop":
                model = ReplicaModel(_per_replica(cap.curve, cap.replicas), slo_p99_ms, balancer,
                                     max_error_rate, max_reject_rate)  # fmt: skip
            made = plan(
                per_replica, peak_rps, daily_requests=daily_requests, peak_factor=peak_factor,
                headroom=headroom, cpu_cores_per_replica=cap.cpu_cores,
                mem_mb_per_replica=cap.mem_mb, gpus_per_replica=gpus_per_replica,
                slo_p99_ms=slo_p99_ms, label=str(run.get("target")), host_cores=host_cores,
                host_mem_gb=host_mem_gb, model=model, basis=cap.basis,
            )  # fmt: skip
            note = _capacity_note(cap)
            if cap.basis == "closed-loop":
                note = f"{CLOSED_LOOP_WARNING} {note}"
            made = _with_note(made, note)
            limit = (cpu_limits or {}).get(str(run.get("target")))
            if limit is not None:
                cost = quota_cost_line(runs, cpu_limits or {}, capacities, str(run.get("target")))
                made = _with_lines(made, [limit_line(limit), *([cost] if cost else [])])
            made = Plan(**{**asdict(made), "mem_peak_mb_per_replica": _finite(cap.mem_peak_mb)})
        out.append(TargetPlan(run.get("target"), run.get("kind"), run.get("status"), cap, made,
                              reason))  # fmt: skip
    return out


def _per_replica(points: Sequence[RatePoint], replicas: int) -> tuple[RatePoint, ...]:
    """A curve measured over ``replicas`` as one replica's (a random split: rate / replicas)."""
    if replicas == 1:
        return tuple(points)
    return tuple(replace(p, arrival_rps=p.arrival_rps / replicas) for p in points)


def _capacity_note(cap: RunCapacity) -> str:
    """Where the capacity was read, stages numbered from 1 as the console shows them."""
    m = cap.max_rps
    per = f" over {cap.replicas} replicas" if cap.replicas > 1 else ""
    lower = None if m.lower_stage is None else m.lower_stage + 1
    upper = None if m.upper_stage is None else m.upper_stage + 1
    if m.method == "highest_passing_rate":
        return (f"Measured{per} with Poisson arrivals: the highest rate whose p99 (upper 95% "
                f"bound) met the SLO (stage {lower}); the next rate, stage {upper}, broke it on "
                f"{m.limited_by}.")  # fmt: skip
    if m.method == "interpolated":
        return f"Measured{per}: interpolated on {m.limited_by} between stages {lower} and {upper}."
    if m.method == "saturated":
        broke = f"; stage {upper} broke the SLO" if upper is not None else ""
        return (f"Measured{per}: the peak throughput that met the SLO (stage {lower}), "
                f"the replica saturated{broke}.")  # fmt: skip
    if m.method in ("extrapolated", "lower_bound"):
        return f"Measured{per}: a lower bound (stage {lower}); no stage broke the SLO."
    return f"Measured{per}: {m.method}."


def _with_lines(p: Plan, added: list[str]) -> Plan:
    """``added`` before the plan's last line (what it does not include)."""
    lines = list(p.assumptions)
    return Plan(**{**asdict(p), "assumptions": (*lines[:-1], *added, *lines[-1:])})


def _with_note(p: Plan, note: str) -> Plan:
    lines = list(p.assumptions)
    lines.insert(2, note)
    return Plan(**{**asdict(p), "assumptions": tuple(lines)})
