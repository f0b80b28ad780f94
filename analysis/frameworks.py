"""Serving frameworks side by side: per target, batching off and on, what a request costs.

Pure functions, no I/O, shared by ``python -m benchmarks.frameworks`` and the architecture
report. Per run (a target of a results folder)::

    capacity_rps            the highest open-loop rate meeting the SLO (find-max or rate steps)
    p50_light_ms            p50 of the lightest stage (lowest throughput) the run measured
    cpu_cores_per_1000_rps  cores used at capacity / capacity x 1,000
    ram_gb_per_1000_rps     RSS at capacity (GB) / capacity x 1,000
    core_hours_per_million, gb_hours_per_million, cost_per_million
                            :func:`analysis.cost.hours_per_million` at capacity, priced

``batching``: whether the target's config turns server-side batching on (a framework's
``max_batch_size`` > 1, servecap's ``batch_max``); ``batch_mean`` what its server measured.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from analysis.compare import compare_runs, label_runs
from analysis.cost import Prices, hours_per_million

FIGURES = ("capacity_rps", "p50_light_ms", "cpu_cores_per_1000_rps", "ram_gb_per_1000_rps",
           "core_hours_per_million", "gb_hours_per_million", "cost_per_million")  # fmt: skip
COLUMNS = ("label", "target", "kind", "batching", "batch_mean", *FIGURES)
BATCH_KNOBS = (("max_batch_size", 1), ("batch_max", 0))
"""Config keys that turn server-side batching on above the given value."""


def batching(config: Mapping[str, Any]) -> bool:
    """Whether a target's config (as scenarios.yaml gives it) batches on the server."""
    return any(float(config.get(key) or 0) > off for key, off in BATCH_KNOBS if key in config)


def figures(
    capacity_rps: float, p50_light_ms: float, cpu_cores: float, mem_mb: float, prices: Prices
) -> dict[str, float]:
    """The :data:`FIGURES` of one target from what it measured at capacity (NaN where a
    figure is missing)."""
    nan = math.nan
    if not (math.isfinite(capacity_rps) and capacity_rps > 0):
        return {**dict.fromkeys(FIGURES, nan), "p50_light_ms": p50_light_ms}
    per_k = 1000.0 / capacity_rps
    cores = cpu_cores if math.isfinite(cpu_cores) else nan
    memory = mem_mb if math.isfinite(mem_mb) else nan
    measured = math.isfinite(cores) and math.isfinite(memory)
    core_h, gb_h, _ = (
        hours_per_million(cores / capacity_rps, memory, capacity_rps) if measured else (nan,) * 3
    )
    cost = core_h * prices.core_hour + gb_h * prices.gb_hour if prices.given else nan
    return {"capacity_rps": capacity_rps, "p50_light_ms": p50_light_ms,
            "cpu_cores_per_1000_rps": cores * per_k,
            "ram_gb_per_1000_rps": memory / 1024 * per_k,
            "core_hours_per_million": core_h, "gb_hours_per_million": gb_h,
            "cost_per_million": cost}  # fmt: skip


def framework_table(
    table: pd.DataFrame,
    configs: Mapping[tuple[str, str], Mapping[str, Any]],
    slo_p99_ms: float,
    prices: Prices,
) -> pd.DataFrame:
    """One row per run of ``table`` (:func:`analysis.results.combined_table`): its
    :data:`COLUMNS`. ``configs``: each run's target config by (source, target)."""
    if table.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    labelled = label_runs(table)
    comparison = compare_runs(table, slo_p99_ms).set_index("label")
    rows = []
    for label, runs in labelled.groupby("label", sort=False):
        first, found = runs.iloc[0], comparison.loc[label]
        light = runs.sort_values("throughput_rps").iloc[0]
        config = configs.get((str(first["source"]), str(first["target"])), {})
        at = runs.iloc[(runs["throughput_rps"] - float(found["capacity_rps"])).abs().argsort()[:1]]
        batch = at["server_batch_size_mean"].iloc[0] if "server_batch_size_mean" in at else None
        rows.append({
            "label": label, "target": first["target"], "kind": first["kind"],
            "batching": batching(config), "batch_mean": _number(batch),
            **figures(_number(found["capacity_rps"]), _number(light["p50_ms"]),
                      _number(found["cpu_cores_at_capacity"]), _number(found["mem_mb"]), prices),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=list(COLUMNS))


def ratios(row: Mapping[str, float], reference: Mapping[str, float]) -> dict[str, float]:
    """Each of :data:`FIGURES` of ``row`` divided by the reference's (NaN where either is)."""
    return {name: _number(row.get(name)) / _number(reference.get(name)) for name in FIGURES}


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def configs_of(
    sources: Sequence[tuple[str, Mapping[str, Any]]],
) -> dict[tuple[str, str], Mapping[str, Any]]:
    """(source, target) -> config from each results folder's resolved scenario."""
    found: dict[tuple[str, str], Mapping[str, Any]] = {}
    for source, scenario in sources:
        for target, config in (scenario.get("targets") or {}).items():
            found[(source, target)] = config
    return found
