"""Per-stage statistics from raw results: the numbers in ``summary.json``.

Pure functions, DataFrames in and plain values out. Conventions:

* a request belongs to the stage during which it **started**; requests started before the
  first stage count in it, those started after the last stage ended (users stopping) count
  in the last one, so stage counts always add up to the number of records;
* each stage's **steady window** drops its first ``settle_s`` seconds (spawning, warm-up)
  and ends with the stage; rates, percentiles and resource means come from the window only;
* percentiles are exact, from every successful request in the window, by the nearest-rank
  definition (``numpy.percentile(method="inverted_cdf")``): the smallest latency such that
  at least q% of requests were as fast or faster. No buckets, no interpolation;
* ``rps`` counts every completed request (ok, error or rejected) per second of the window;
  ``goodput_rps`` counts successful ones;
* when a run records several request types (the job queue's ``submit``, ``poll`` and
  end-to-end ``job``), the headline figures come from the ``primary`` type and every type
  gets its own figures under ``by_name``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.contract import JOB_REQUEST
from analysis.defaults import DEFAULT_LATE_MS, GENERATOR_CPU_LIMIT_PCT, LATE_SHARE_LIMIT
from analysis.intervals import min_samples, quantile_interval

PERCENTILES = {"p50_ms": 50.0, "p90_ms": 90.0, "p95_ms": 95.0, "p99_ms": 99.0}


def primary_request(run: dict[str, Any]) -> str | None:
    """The request type a run's headline figures describe when it records several (the job
    queue's ``job``; its stages say so under ``by_name``), else None: every record counts."""
    names = {n for s in run.get("stages") or [] for n in (s.get("by_name") or {})}
    return JOB_REQUEST if JOB_REQUEST in names else None


def percentile_ms(latencies_ms: np.ndarray | pd.Series, q: float) -> float:
    """Exact nearest-rank percentile; NaN for no data."""
    values = np.asarray(latencies_ms, dtype=float)
    if values.size == 0:
        return math.nan
    return float(np.percentile(values, q, method="inverted_cdf"))


def timeline_frame(
    timeline: list[dict[str, Any]], open_end_ts: float | None = None
) -> pd.DataFrame:
    """Stage boundaries as a frame indexed by stage index, sorted by start.

    A stage still open (``end_ts`` null: an interrupted sequential run or find-max point) ends
    at ``open_end_ts``; without it, open stages are left out.
    """
    frame = pd.DataFrame(timeline)
    if frame.empty:
        raise ValueError("timeline has no stages")
    frame["end_ts"] = pd.to_numeric(frame["end_ts"], errors="coerce")
    if open_end_ts is None:
        frame = frame[frame["end_ts"].notna()]
    else:
        frame["end_ts"] = frame["end_ts"].fillna(max(open_end_ts, frame["start_ts"].max()))
    frame["duration_s"] = frame["end_ts"] - frame["start_ts"]
    frame = frame.sort_values("start_ts").set_index("index")
    if frame.empty:
        raise ValueError("timeline has no finished stages")
    return frame


def assign_stage(ts: pd.Series, timeline: pd.DataFrame, clip: bool = True) -> pd.Series:
    """Stage index of each timestamp.

    ``clip=True`` (requests): before the first stage counts as the first, after the last as
    the last (see the module docstring). ``clip=False`` (resource samples): -1 outside the
    stages.
    """
    starts = timeline["start_ts"].to_numpy()
    values = ts.to_numpy(dtype=float)
    pos = np.searchsorted(starts, values, side="right") - 1
    outside = (pos < 0) | (values >= timeline["end_ts"].to_numpy()[-1])
    pos = np.clip(pos, 0, len(starts) - 1)
    stage = timeline.index.to_numpy()[pos]
    if not clip:
        stage = np.where(outside, -1, stage)
    return pd.Series(stage, index=ts.index, name="stage")


def steady_windows(timeline: pd.DataFrame, settle_s: float) -> pd.DataFrame:
    """``window_start``/``window_end`` per stage: the stage minus its first ``settle_s``, or,
    for a find-max rate, exactly the windows that decided it (``steady_from_ts`` to
    ``steady_to_ts``: the requests find-max judged, no fewer)."""
    out = timeline[["start_ts", "end_ts"]].copy()
    start = out["start_ts"] + settle_s
    end = out["end_ts"]
    if "steady_from_ts" in timeline:
        steady = pd.to_numeric(timeline["steady_from_ts"], errors="coerce")
        start = steady.where(steady.notna(), start).clip(lower=out["start_ts"])
    if "steady_to_ts" in timeline:
        steady_to = pd.to_numeric(timeline["steady_to_ts"], errors="coerce")
        end = np.minimum(end, steady_to.fillna(np.inf))
    out["window_start"] = np.minimum(start, end)
    out["window_end"] = end
    return out[["window_start", "window_end"]]


def in_window(ts: pd.Series, stage: pd.Series, windows: pd.DataFrame) -> pd.Series:
    """True where a timestamp lies inside its stage's steady window."""
    lo = windows["window_start"].reindex(stage.to_numpy()).to_numpy()
    hi = windows["window_end"].reindex(stage.to_numpy()).to_numpy()
    values = ts.to_numpy(dtype=float)
    return pd.Series((values >= lo) & (values < hi), index=ts.index, name="in_window")


def label_requests(requests: pd.DataFrame, timeline: pd.DataFrame, settle_s: float) -> pd.DataFrame:
    """``requests`` with ``stage`` and ``in_window`` columns added."""
    out = requests.copy()
    out["stage"] = assign_stage(out["ts"], timeline)
    out["in_window"] = in_window(out["ts"], out["stage"], steady_windows(timeline, settle_s))
    return out


def _resource_means(samples: pd.DataFrame, role: str, start: float, end: float) -> dict[str, float]:
    if samples.empty:
        return {}
    sel = samples[(samples["role"] == role) & (samples["ts"] >= start) & (samples["ts"] < end)]
    if sel.empty:
        return {}
    # Several containers or replicas: sum them per sampling instant, then average over time.
    # Each source is averaged per whole second first: two samples of one source whose
    # timestamps round to the same second (1 s sampling with jitter) must not add up.
    cols = ["cpu_pct", "mem_mb", "pss_mb"]
    source = sel["name"] if "name" in sel else pd.Series("", index=sel.index)
    per_source = sel.groupby([sel["ts"].round(0), source])[cols].mean()
    per_instant = per_source.groupby(level=0).sum(min_count=1)
    return {
        "cpu_pct": float(per_instant["cpu_pct"].mean()),
        "cpu_max_pct": float(per_instant["cpu_pct"].max()),
        "mem_mb": float(per_instant["mem_mb"].mean()),
        "mem_max_mb": float(per_instant["mem_mb"].max()),
        "pss_mb": float(per_instant["pss_mb"].mean()),
        "samples": len(per_instant),
    }


def window_stats(
    window: pd.DataFrame, window_s: float, late_ms: float | None = None
) -> dict[str, Any]:
    """Rates, outcome shares and exact latency percentiles of the requests in one window;
    ``late_share``: requests sent more than ``late_ms`` behind schedule (open loop)."""
    n = len(window)
    ok = window[window["outcome"] == "ok"]
    errors = int((window["outcome"] == "error").sum())
    rejected = int((window["outcome"] == "rejected").sum())
    row: dict[str, Any] = {
        "measured_requests": n,
        "ok": len(ok),
        "errors": errors,
        "rejected": rejected,
        "rps": n / window_s if window_s > 0 else math.nan,
        "goodput_rps": len(ok) / window_s if window_s > 0 else math.nan,
        "error_rate": errors / n if n else math.nan,
        "reject_rate": rejected / n if n else math.nan,
        "mean_ms": float(ok["latency_ms"].mean()) if len(ok) else math.nan,
        "latency_cv": _cv(ok["latency_ms"]),
        "max_ms": float(ok["latency_ms"].max()) if len(ok) else math.nan,
        "bytes_per_request": float(window["bytes"].mean()) if n else math.nan,
    }
    for key, q in PERCENTILES.items():
        row[key] = percentile_ms(ok["latency_ms"], q)
    in_order = ok.sort_values("ts") if "ts" in ok.columns else ok
    row.update(percentile_intervals(in_order["latency_ms"].to_numpy(dtype=float)))
    refused = window[window["outcome"] == "rejected"]
    if len(refused):  # how fast a refusal comes back (max_works answers at once)
        row["reject_p50_ms"] = percentile_ms(refused["latency_ms"], 50)
        row["reject_p99_ms"] = percentile_ms(refused["latency_ms"], 99)
    failed = window[window["outcome"] == "error"]
    if len(failed) and "error" in failed:
        row["top_error"] = str(failed["error"].value_counts().index[0])
    if "client_ms" in ok and len(ok):  # the generator's own time around the wire time
        row["client_overhead_p50_ms"] = percentile_ms(ok["client_ms"].astype(float), 50)
    if "lag_ms" in window and n:
        lag = window["lag_ms"].astype(float)
        row["send_lag_p99_ms"] = percentile_ms(lag, 99)
        row["late_share"] = float((lag > (DEFAULT_LATE_MS if late_ms is None else late_ms)).mean())
    return row


def _cv(latencies_ms: pd.Series) -> float:
    """Coefficient of variation (std / mean) of latencies; NaN with fewer than two."""
    if len(latencies_ms) < 2:
        return math.nan
    mean = float(latencies_ms.mean())
    return float(latencies_ms.std(ddof=1)) / mean if mean > 0 else math.nan


CI_PERCENTILES = {"p50_ci_ms": 0.50, "p95_ci_ms": 0.95, "p99_ci_ms": 0.99}


def percentile_intervals(latencies_ms: np.ndarray) -> dict[str, Any]:
    """95% confidence intervals of p50, p95 and p99 (:mod:`analysis.intervals`) as
    ``[low, high]``, from latencies in time order: each upper end allows for correlated
    neighbours (batch means); None, with ``p99_ci_note`` saying how many requests it takes,
    when there are too few."""
    out: dict[str, Any] = {}
    for key, q in CI_PERCENTILES.items():
        interval = quantile_interval(latencies_ms, q)
        out[key] = None if interval is None else [interval[0], interval[1]]
    if out["p99_ci_ms"] is None:
        out["p99_ci_note"] = (
            f"p99 rests on {len(latencies_ms)} successful requests; a 95% interval needs "
            f"{min_samples(0.99)}"
        )
    return out


def overall_stats(
    requests: pd.DataFrame, timeline: pd.DataFrame, settle_s: float, primary: str | None = None,
    late_ms: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The whole run's steady windows taken together: the figures overall SLO gates check."""
    labelled = label_requests(requests, timeline, settle_s)
    windows = steady_windows(timeline, settle_s)
    window_s = float((windows["window_end"] - windows["window_start"]).sum())
    inside = labelled[labelled["in_window"]]
    if primary is not None:
        inside = inside[inside["name"] == primary]
    return {"window_s": window_s, **window_stats(inside, window_s, late_ms)}


def flag_generator(
    stats: list[dict[str, Any]], workers: int = 1, host_cpus: int | None = None,
    late_ms: float = DEFAULT_LATE_MS,
    pinned: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """Mark stages where the load generator, not the target, limited the load.

    A stage is invalid when the generator's CPU exceeded 90% of a core per generator process;
    when the whole host was above 90% busy (``host_cpus`` given: generator and target then
    compete for CPU, so the generator cannot send or time requests as planned; not checked
    when the generator is ``pinned`` to CPUs of its own, where a busy host is the target at
    work); or (open loop) when more than 1% of its requests left over ``late_ms`` behind
    schedule. Adds ``generator_ok`` and ``generator_issues`` to each stage.
    """
    for row in stats:
        issues = []
        cpu = row.get("generator_cpu_pct")
        if cpu is not None and not math.isnan(cpu) and cpu > GENERATOR_CPU_LIMIT_PCT * workers:
            issues.append(f"generator CPU {cpu:.0f}% > {GENERATOR_CPU_LIMIT_PCT * workers:.0f}%")
        host = row.get("host_cpu_pct")
        limit = GENERATOR_CPU_LIMIT_PCT * (host_cpus or 0)
        if not pinned and host_cpus and host is not None and not math.isnan(host) and host > limit:
            issues.append(f"host CPU {host:.0f}% of {100 * host_cpus}%: the generator competes "
                          "with the target for CPU")  # fmt: skip
        late = row.get("late_share")
        if late is not None and not math.isnan(late) and late > LATE_SHARE_LIMIT:
            issues.append(f"{late:.1%} of sends more than {late_ms:g} ms late")
        row["generator_ok"] = not issues
        row["generator_issues"] = issues
    return stats


def stage_stats(
    requests: pd.DataFrame,
    samples: pd.DataFrame,
    timeline: pd.DataFrame,
    settle_s: float,
    primary: str | None = None,
    late_ms: float | None = None,
) -> list[dict[str, Any]]:
    """One dict per stage: :class:`analysis.contract.StageSummary`.

    ``requests`` needs ts, latency_ms, outcome, bytes (and name when ``primary`` is given);
    ``samples`` the collector columns.
    """
    labelled = label_requests(requests, timeline, settle_s)
    windows = steady_windows(timeline, settle_s)
    names = sorted(labelled["name"].unique()) if "name" in labelled else []
    stats: list[dict[str, Any]] = []
    for index, stage in timeline.iterrows():
        ws, we = windows.loc[index, "window_start"], windows.loc[index, "window_end"]
        in_stage = labelled[labelled["stage"] == index]
        window = in_stage[in_stage["in_window"]]
        window_s = float(we - ws)
        headline = window if primary is None else window[window["name"] == primary]
        row: dict[str, Any] = {
            "index": int(index),
            "users": int(stage["users"]),
            "duration_s": float(stage["duration_s"]),
            "start_ts": float(stage["start_ts"]),
            "window_s": window_s,
            "requests": len(in_stage),
            **window_stats(headline, window_s, late_ms),
        }
        arrival = pd.to_numeric(pd.Series([stage.get("rps")]), errors="coerce").iloc[0]
        if pd.notna(arrival):  # open loop (rate, trace, find-max): the rate offered
            row["arrival_rps"] = float(arrival)
        n = row["measured_requests"]
        if len(names) > 1:
            row["by_name"] = {
                name: window_stats(window[window["name"] == name], window_s, late_ms)
                for name in names
            }
        target = _resource_means(samples, "target", ws, we)
        row.update({k: target.get(k, math.nan) for k in
                    ("cpu_pct", "cpu_max_pct", "mem_mb", "mem_max_mb", "pss_mb")})  # fmt: skip
        row["resource_samples"] = target.get("samples", 0)
        row["generator_cpu_pct"] = _resource_means(samples, "generator", ws, we).get(
            "cpu_pct", math.nan
        )
        row["host_cpu_pct"] = _resource_means(samples, "host", ws, we).get("cpu_pct", math.nan)
        # Little's law: users in the system = throughput x time in the system.
        row["littles_law_users"] = (
            row["rps"] * (headline["latency_ms"].mean() / 1000) if n else math.nan
        )
        stats.append(row)
    return stats


def json_safe(value: Any) -> Any:
    """NaN and infinities become None, recursively, so summary.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
