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
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from analysis.capacity import RunCapacity, run_capacity
from analysis.contract import stage_number
from analysis.defaults import DEFAULT_HEADROOM, DEFAULT_MAX_ERROR_RATE, DEFAULT_MAX_REJECT_RATE
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


def _n(value: float, digits: int = 1) -> str:
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
    """Peak load / (replicas x capacity): how busy replicas are at peak (<= 1 - headroom)."""
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
) -> Plan:
    """Replicas and totals for a peak load (``peak_rps``, or ``daily_requests`` x factor).

    "100 million requests a day, peak factor 3, p99 under 200 ms" is
    ``plan(capacity, daily_requests=100e6, peak_factor=3, slo_p99_ms=200)`` with the
    capacity measured under that SLO (:func:`plan_targets` does both from a summary).
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
    usable = capacity_per_replica_rps * (1.0 - headroom)
    # A hair of tolerance so that 10.0000000001 (float noise) does not become 11.
    replicas = max(min_replicas, math.ceil(peak / usable - 1e-9))
    cpu = _finite(cpu_cores_per_replica)
    mem = _finite(mem_mb_per_replica)
    total_cpu = None if cpu is None else replicas * cpu
    total_mem = None if mem is None else replicas * mem
    utilisation = peak / (replicas * capacity_per_replica_rps)

    lines = []
    if peak_rps is None:
        lines.append(
            f"Peak load: {_n(daily_requests or 0, 0)} requests/day / {SECONDS_PER_DAY:,} s x "
            f"peak factor {peak_factor:g} = {_n(peak)} requests/s (mean "
            f"{_n((daily_requests or 0) / SECONDS_PER_DAY)} requests/s)."
        )
    else:
        lines.append(f"Peak load: {_n(peak)} requests/s (given).")
    slo = f" with p99 <= {slo_p99_ms:g} ms" if slo_p99_ms is not None else ""
    lines.append(f"Capacity: {_n(capacity_per_replica_rps)} requests/s per replica{slo}.")
    lines.append(
        f"Headroom: {headroom:.0%} of each replica's capacity kept free at peak, so each is "
        f"planned at {_n(usable)} requests/s ({1 - headroom:.0%} of capacity)."
    )
    lines.append(
        f"Replicas: ceil({_n(peak)} / {_n(usable)}) = {replicas}"
        + (f" (at least {min_replicas})" if min_replicas > 1 else "")
        + f"; at peak they run at {utilisation:.0%} of capacity."
    )
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
    lines.append(
        "Replicas scale linearly: no shared bottleneck (database, network, load balancer) "
        "limits them, and each gets the hardware the measurement ran on."
    )
    lines.append(NOT_INCLUDED)
    return Plan(
        capacity_per_replica_rps=float(capacity_per_replica_rps),
        peak_rps=peak,
        headroom=float(headroom),
        replicas=replicas,
        usable_rps_per_replica=usable,
        utilisation_at_peak=utilisation,
        cpu_cores_per_replica=cpu,
        mem_mb_per_replica=mem,
        gpus_per_replica=float(gpus_per_replica),
        total_cpu_cores=total_cpu,
        total_mem_mb=total_mem,
        total_gpus=replicas * float(gpus_per_replica),
        daily_requests=daily_requests,
        peak_factor=peak_factor,
        slo_p99_ms=slo_p99_ms,
        label=label,
        assumptions=tuple(lines),
        replicas_per_host=per_host,
        hosts=hosts,
    )


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
) -> list[TargetPlan]:
    """A :class:`Plan` for every run of a summary, from its capacity under the SLO."""
    resolve_peak(peak_rps, daily_requests, peak_factor)  # validate before any work
    out = []
    for run in summary.get("runs", []):
        cap = run_capacity(run, slo_p99_ms, max_error_rate, max_reject_rate, think_time_s,
                           replicas_measured)  # fmt: skip
        per_replica = cap.capacity_rps
        made: Plan | None = None
        reason = ""
        if per_replica is None or not per_replica > 0:
            reason = cap.max_rps.warnings[0] if cap.max_rps.warnings else "no capacity measured"
        else:
            made = plan(
                per_replica, peak_rps, daily_requests=daily_requests, peak_factor=peak_factor,
                headroom=headroom, cpu_cores_per_replica=cap.cpu_cores,
                mem_mb_per_replica=cap.mem_mb, gpus_per_replica=gpus_per_replica,
                slo_p99_ms=slo_p99_ms, label=str(run.get("target")), host_cores=host_cores,
                host_mem_gb=host_mem_gb,
            )  # fmt: skip
            made = _with_note(made, _capacity_note(cap))
            made = Plan(**{**asdict(made), "mem_peak_mb_per_replica": _finite(cap.mem_peak_mb)})
        out.append(TargetPlan(run.get("target"), run.get("kind"), run.get("status"), cap, made,
                              reason))  # fmt: skip
    return out


def _capacity_note(cap: RunCapacity) -> str:
    m = cap.max_rps
    per = f" over {cap.replicas} replicas" if cap.replicas > 1 else ""
    # stage numbers as a person reads them (from 1), not the files' 0-based indexes
    lower, upper = (None if s is None else stage_number(s) for s in (m.lower_stage, m.upper_stage))
    if m.method == "interpolated":
        return f"Measured{per}: interpolated on {m.limited_by} between stages {lower} and {upper}."
    if m.method == "saturated":
        broke = f"; stage {upper} broke the SLO" if upper is not None else ""
        return (f"Measured{per}: the peak throughput that met the SLO (stage {lower}), "
                f"the replica saturated{broke}.")  # fmt: skip
    if m.method in ("extrapolated", "lower_bound"):
        return f"Measured{per}: a lower bound (stage {lower}); no stage broke the SLO."
    return f"Measured{per}: {m.method}."


def _with_note(p: Plan, note: str) -> Plan:
    lines = list(p.assumptions)
    lines.insert(2, note)
    return Plan(**{**asdict(p), "assumptions": tuple(lines)})


PLAN_COLUMNS = (
    "target", "kind", "status", "capacity_rps", "method", "limited_by", "slo_p99_ms",
    "peak_rps", "headroom", "replicas", "utilisation_at_peak", "cpu_cores_per_replica",
    "mem_mb_per_replica", "total_cpu_cores", "total_mem_gb", "total_gpus", "replicas_per_host",
    "hosts", "note",
)  # fmt: skip


def plans_frame(plans: Sequence[TargetPlan]) -> pd.DataFrame:
    """One row per target of :func:`plan_targets`."""
    rows = []
    for tp in plans:
        p, m = tp.plan, tp.capacity.max_rps
        rows.append(
            {
                "target": tp.target, "kind": tp.kind, "status": tp.status,
                "capacity_rps": tp.capacity.capacity_rps, "method": m.method,
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
                "note": tp.reason or ("; ".join(tp.warnings[:1])),
            }
        )  # fmt: skip
    frame = pd.DataFrame(rows, columns=list(PLAN_COLUMNS))
    for col in ("replicas", "replicas_per_host", "hosts"):
        frame[col] = frame[col].astype("Int64")
    for col in ("capacity_rps", "cpu_cores_per_replica", "mem_mb_per_replica",
                "total_cpu_cores", "total_mem_gb"):  # fmt: skip
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
) -> pd.DataFrame:
    """One row per target of a summary: capacity used under the SLO, replicas and totals."""
    return plans_frame(
        plan_targets(
            summary, slo_p99_ms, peak_rps, daily_requests=daily_requests,
            peak_factor=peak_factor, headroom=headroom, max_error_rate=max_error_rate,
            gpus_per_replica=gpus_per_replica,
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
        demand = f"peak {_n(first.peak_rps)} requests/s"
        if first.daily_requests is not None:
            demand += f" ({_n(first.daily_requests, 0)}/day x peak factor {first.peak_factor:g})"
        lines.append(
            f"Capacity plan: {demand}, p99 <= {first.slo_p99_ms:g} ms, "
            f"headroom {first.headroom:.0%}"
        )
    elif plans:
        lines.append(f"Capacity plan: p99 <= {plans[0].capacity.max_rps.slo_p99_ms:g} ms")
    packed = any(tp.plan is not None and tp.plan.replicas_per_host is not None for tp in plans)
    header = (f"{'target':<22} {'rps/replica':>11}  {'method':<12} {'replicas':>8} "
              f"{'CPU cores':>9} {'memory GB':>9}")  # fmt: skip
    header += f" {'hosts':>5}" if packed else ""
    lines += ["", header, "-" * len(header)]
    for tp in plans:
        p = tp.plan
        lines.append(
            f"{str(tp.target)[:22]:<22} {_cell(tp.capacity.capacity_rps, '11.1f')} "
            f" {tp.capacity.max_rps.method:<12} {_cell(p.replicas if p else None, '8d')} "
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
