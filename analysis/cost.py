"""Cost: what a plan costs per hour at peak, and per million inferences.

Pure functions, no I/O. Two figures per target, written out so they can be checked by hand::

    per_hour_at_peak   = total cores x price_core_hour + total GB x price_gb_hour
                         + total GPUs x price_gpu_hour                   (resource prices)
                       = hosts x price_host_hour                         (a host price)
    per_million_at_peak = per_hour_at_peak / (peak_rps x 3,600) x 10^6   (what you provision)

    per_million_at_capacity = 10^6 / 3,600 x (cpu_s_per_request x price_core_hour
                              + mem_gb_per_replica / capacity_rps x price_gb_hour
                              + gpus_per_replica / capacity_rps x price_gpu_hour)

The second is the architecture's efficiency: the measured CPU seconds a request takes and the
memory a replica holds for the time it serves one, at its capacity under the SLO; no headroom,
no rounding up to whole replicas. The first is what the plan's replicas cost when the peak
comes, headroom and rounding included. Neither counts the load balancer, the network, storage
or idle hours off peak.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from analysis.sizing import Plan, TargetPlan

SECONDS_PER_HOUR = 3_600
MILLION = 1_000_000


@dataclass(frozen=True)
class Prices:
    """Prices per hour (any currency, the same for all)."""

    core_hour: float = 0.0
    gb_hour: float = 0.0
    """Per GB (1,024 MB) of memory."""
    gpu_hour: float = 0.0
    host_hour: float | None = None
    """One host of the plan's host size (``--host-cores``/``--host-mem-gb``): with it, the
    cost at peak is hosts x this, and resource prices give only the per-request figure."""

    def __post_init__(self) -> None:
        for name in ("core_hour", "gb_hour", "gpu_hour", "host_hour"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ValueError(f"price {name} must be a number >= 0, got {value}")

    @property
    def given(self) -> bool:
        return bool(self.core_hour or self.gb_hour or self.gpu_hour or self.host_hour)


@dataclass(frozen=True)
class Cost:
    per_hour_at_peak: float | None
    per_million_at_peak: float | None
    per_million_at_capacity: float | None
    basis: str
    """``resources`` (cores, memory, GPUs priced) or ``hosts`` (whole hosts priced)."""
    lines: tuple[str, ...]
    """The arithmetic, one line a figure."""


def plan_cost(plan: Plan, prices: Prices, cpu_s_per_request: float | None) -> Cost:
    """The cost of ``plan`` at ``prices``; ``cpu_s_per_request`` as measured at capacity."""
    lines: list[str] = []
    per_hour: float | None
    if prices.host_hour is not None:
        basis = "hosts"
        if plan.hosts is None:
            per_hour = None
            lines.append("Per hour at peak: no host count (give --host-cores/--host-mem-gb).")
        else:
            per_hour = plan.hosts * prices.host_hour
            lines.append(f"Per hour at peak: {plan.hosts} host(s) x {prices.host_hour:g} = "
                         f"{per_hour:,.4g}.")  # fmt: skip
    else:
        basis = "resources"
        cores, mem_gb = plan.total_cpu_cores, plan.total_mem_gb
        if cores is None or mem_gb is None:
            per_hour = None
            lines.append("Per hour at peak: the run measured no CPU or memory per replica.")
        else:
            per_hour = (cores * prices.core_hour + mem_gb * prices.gb_hour
                        + plan.total_gpus * prices.gpu_hour)  # fmt: skip
            gpus = (f" + {plan.total_gpus:g} GPUs x {prices.gpu_hour:g}"
                    if plan.total_gpus else "")  # fmt: skip
            lines.append(
                f"Per hour at peak: {cores:.2f} cores x {prices.core_hour:g} + {mem_gb:.2f} GB x "
                f"{prices.gb_hour:g}{gpus} = {per_hour:,.4g}."
            )
    per_million_peak = None
    if per_hour is not None:
        per_million_peak = per_hour / (plan.peak_rps * SECONDS_PER_HOUR) * MILLION
        lines.append(
            f"Per million at peak: {per_hour:,.4g} / ({plan.peak_rps:,.1f} requests/s x 3,600) "
            f"x 10^6 = {per_million_peak:,.4g}."
        )
    at_capacity = _at_capacity(plan, prices, cpu_s_per_request, lines)
    return Cost(per_hour, per_million_peak, at_capacity, basis, tuple(lines))


def _at_capacity(
    plan: Plan, prices: Prices, cpu_s_per_request: float | None, lines: list[str]
) -> float | None:
    mem_mb = plan.mem_mb_per_replica
    capacity = plan.capacity_per_replica_rps
    if cpu_s_per_request is None or not math.isfinite(cpu_s_per_request) or mem_mb is None:
        lines.append("Per million at capacity: the run measured no CPU or memory per request.")
        return None
    mem_gb_s = mem_mb / 1024 / capacity
    gpu_s = plan.gpus_per_replica / capacity
    core_h, gb_h, gpu_h = hours_per_million(cpu_s_per_request, mem_mb, capacity,
                                            plan.gpus_per_replica)  # fmt: skip
    value = core_h * prices.core_hour + gb_h * prices.gb_hour + gpu_h * prices.gpu_hour
    lines.append(
        f"Per million at capacity: 10^6 / 3,600 x ({cpu_s_per_request:.4g} CPU-s x "
        f"{prices.core_hour:g} + {mem_gb_s:.4g} GB-s x {prices.gb_hour:g}"
        + (f" + {gpu_s:.4g} GPU-s x {prices.gpu_hour:g}" if gpu_s else "")
        + f") per request = {value:,.4g} (measured CPU and memory per request, no headroom)."
    )
    return value


def hours_per_million(
    cpu_s_per_request: float, mem_mb_per_replica: float, capacity_rps: float, gpus: float = 0.0
) -> tuple[float, float, float]:
    """Core-hours, GB-hours and GPU-hours a million requests take at capacity: the measured
    CPU seconds per request, and a replica's memory (and GPUs) for 1 / capacity seconds each."""
    scale = MILLION / SECONDS_PER_HOUR
    return (cpu_s_per_request * scale, mem_mb_per_replica / 1024 / capacity_rps * scale,
            gpus / capacity_rps * scale)  # fmt: skip


COST_COLUMNS = ("label", "kind", "capacity_rps", "p99_at_users_ms", "at_users",
                "core_hours_per_million", "gb_hours_per_million", "cost_per_million",
                "meets_slo", "cheapest")  # fmt: skip


def cost_table(comparison: pd.DataFrame, prices: Prices) -> pd.DataFrame:
    """Per run of an architecture comparison (:func:`analysis.compare.compare_runs`): what a
    million requests take at capacity, in core- and GB-hours and, with prices, in money, beside
    the p99 at the load every run measured. ``cheapest``: the lowest cost (core-hours without
    prices) among the runs with a capacity under the SLO."""
    rows = []
    for _, r in comparison.iterrows():
        capacity = r.get("capacity_rps")
        ok = capacity is not None and math.isfinite(capacity) and capacity > 0
        cores = r.get("cpu_cores_at_capacity")
        if ok and cores is not None and math.isfinite(cores) and math.isfinite(r["mem_mb"]):
            core_h, gb_h, _ = hours_per_million(cores / capacity, r["mem_mb"], capacity)
            cost = core_h * prices.core_hour + gb_h * prices.gb_hour if prices.given else math.nan
        else:
            core_h = gb_h = cost = math.nan
        rows.append({"label": r["label"], "kind": r["kind"],
                     "capacity_rps": capacity if ok else math.nan,
                     "p99_at_users_ms": r.get("p99_at_users_ms", math.nan),
                     "at_users": r.get("at_users"), "core_hours_per_million": core_h,
                     "gb_hours_per_million": gb_h, "cost_per_million": cost,
                     "meets_slo": bool(ok), "cheapest": False})  # fmt: skip
    out = pd.DataFrame(rows, columns=list(COST_COLUMNS))
    key = "cost_per_million" if prices.given else "core_hours_per_million"
    eligible = out[out["meets_slo"] & out[key].notna()]
    if len(eligible):
        out.loc[eligible[key].astype(float).idxmin(), "cheapest"] = True
    return out


def format_costs(plans: Sequence[TargetPlan], prices: Prices) -> str:
    """Plain-text cost table of :func:`analysis.sizing.plan_targets` output, with the
    arithmetic per target."""
    basis = "hosts" if prices.host_hour is not None else "cores, memory and GPUs"
    header = f"{'target':<22} {'per hour at peak':>16} {'per million at peak':>19} " \
             f"{'per million at capacity':>23}"  # fmt: skip
    lines = [f"Cost (priced by {basis}; the same currency as the prices):", "", header,
             "-" * len(header)]  # fmt: skip
    details: list[str] = []
    for tp in plans:
        if tp.plan is None:
            lines.append(f"{str(tp.target)[:22]:<22} {'-':>16} {'-':>19} {'-':>23}")
            continue
        cost = plan_cost(tp.plan, prices, tp.capacity.cpu_s_per_request)
        lines.append(
            f"{str(tp.target)[:22]:<22} {_money(cost.per_hour_at_peak):>16} "
            f"{_money(cost.per_million_at_peak):>19} {_money(cost.per_million_at_capacity):>23}"
        )
        details += ["", f"{tp.target}:", *(f"  - {line}" for line in cost.lines)]
    return "\n".join(lines + details)


def _money(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:,.4g}"
