"""What each injected fault cost, from the raw records in one-second windows.

Pure functions: the per-request records and the fault events in, one impact per fault out::

    baseline     the windows of the 10 s before the fault: goodput/s, p99, errors/s
    errors       failed requests (errors and timeouts, not 503 rejections) from the fault to
                 recovery, beyond the baseline's error rate; error_duration_s: from the fault
                 to the end of the last window with an error before 3 clean windows in a row
    p99_recovery_s   from the fault to the first of 3 consecutive windows whose p99 is within
                 the limit (the SLO's p99; without an SLO, twice the baseline p99: said so)
    dip          the lowest window goodput within 30 s after the fault / the baseline goodput
    model_versions   (model_update) which version answered when, seconds from the update,
                 and how long two versions answered side by side (mixed_s)
    jobs         (job queue) accepted = submits answered 202; finished = job rows that ended
                 well; lost = accepted jobs that failed or timed out; unresolved = accepted
                 jobs still waiting when the load ended: once for the run
    jobs_lost    (job queue, per fault) the lost jobs this fault is charged with: a lost job
                 counts against the first fault that hit while it was in flight, else the last
                 one before it was submitted (its window: not yet recovered); one lost before
                 any fault counts against none. So each lost job is counted once, by one fault

Windows are by request start (open loop: scheduled send time). Each fault is measured until
the next fault hits or the load ends (``measured_until_s``): a fault in the last seconds may
not show its recovery, and ``recovered`` is False then, never a guess.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from analysis.contract import JOB_REQUEST, JOB_SUBMIT_REQUEST

BASELINE_S = 10.0
DIP_WINDOW_S = 30.0
CLEAN_WINDOWS = 3


def _windows(records: pd.DataFrame, t0: float, t1: float) -> pd.DataFrame:
    """Per 1-s window from t0 (inclusive) to t1: ok count, errors, p99 of ok latencies."""
    sel = records[(records["ts"] >= t0) & (records["ts"] < t1)]
    index = np.arange(0, max(0, math.ceil(t1 - t0)))
    if sel.empty:
        return pd.DataFrame({"ok": 0, "errors": 0, "p99_ms": np.nan}, index=index)
    w = np.floor(sel["ts"].to_numpy(dtype=float) - t0).astype(int)
    frame = sel.assign(w=w)
    ok = frame[frame["outcome"] == "ok"]
    out = pd.DataFrame(index=index)
    out["ok"] = ok.groupby("w").size().reindex(index, fill_value=0)
    out["errors"] = frame[frame["outcome"] == "error"].groupby("w").size().reindex(
        index, fill_value=0)  # fmt: skip
    out["p99_ms"] = ok.groupby("w")["latency_ms"].quantile(0.99).reindex(index)
    return out


def _first_run(flags: Sequence[bool], length: int = CLEAN_WINDOWS) -> int | None:
    """Index of the first of ``length`` consecutive True values."""
    run = 0
    for i, flag in enumerate(flags):
        run = run + 1 if flag else 0
        if run == length:
            return i - length + 1
    return None


def fault_impact(
    records: pd.DataFrame, fault_ts: float, end_ts: float, slo_p99_ms: float | None,
    request_name: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One fault's cost (see the module docstring)."""
    if request_name is not None and "name" in records:
        records = records[records["name"] == request_name]
    base = _windows(records, max(float(records["ts"].min()) if len(records) else fault_ts,
                                 fault_ts - BASELINE_S), fault_ts)  # fmt: skip
    after = _windows(records, fault_ts, end_ts)
    base_ok = float(base["ok"].mean()) if len(base) else math.nan
    base_err = float(base["errors"].mean()) if len(base) else 0.0
    base_p99 = float(np.nanmedian(base["p99_ms"])) if base["p99_ms"].notna().any() else math.nan
    limit, limit_from = slo_p99_ms, "slo"
    if limit is None:
        limit, limit_from = 2 * base_p99, "twice the baseline p99 (no SLO)"
    clean = _first_run(list(after["errors"] == 0))
    recovered_p99 = _first_run([bool(v <= limit) for v in after["p99_ms"].fillna(math.inf)])
    upto = clean if clean is not None else len(after)
    err_windows = [i for i in range(upto) if after["errors"].iloc[i] > 0]
    errors = int(after["errors"].iloc[:upto].sum()) if upto else 0
    excess = max(0, round(errors - base_err * upto))
    dip_span = after["ok"].iloc[: int(DIP_WINDOW_S)]
    dip = float(dip_span.min()) / base_ok if len(dip_span) and base_ok > 0 else math.nan
    return {
        "baseline_goodput_rps": _r(base_ok), "baseline_p99_ms": _r(base_p99),
        "errors": errors, "errors_beyond_baseline": excess,
        "error_duration_s": float(err_windows[-1] + 1) if err_windows else 0.0,
        "errors_cleared": clean is not None,
        "p99_limit_ms": _r(limit), "p99_limit_from": limit_from,
        "p99_recovery_s": float(recovered_p99) if recovered_p99 is not None else None,
        "recovered": recovered_p99 is not None,
        "goodput_dip": _r(dip), "lowest_goodput_rps": _r(float(dip_span.min()))
        if len(dip_span) else None,
    }  # fmt: skip


def version_spans(records: pd.DataFrame, t0: float) -> dict[str, Any]:
    """Which model version answered when (``model_version`` of the records, seconds after
    ``t0``): per version its requests and first and last answer; ``mixed_s``: how long two
    versions answered side by side (0: a clean switch)."""
    if "model_version" not in records:
        return {"versions": {}, "mixed_s": None}
    ok = records[(records["outcome"] == "ok") & (records["model_version"].astype(str) != "")]
    spans: dict[str, Any] = {}
    for version, group in ok.groupby(ok["model_version"].astype(str), sort=False):
        spans[str(version)] = {"requests": len(group),
                               "first_s": round(float(group["ts"].min()) - t0, 3),
                               "last_s": round(float(group["ts"].max()) - t0, 3)}  # fmt: skip
    ordered = sorted(spans.values(), key=lambda v: v["first_s"])
    mixed = sum(max(0.0, a["last_s"] - b["first_s"]) for a, b in pairwise(ordered))
    return {"versions": spans, "mixed_s": round(mixed, 3) if len(ordered) > 1 else None}


def lost_jobs(records: pd.DataFrame) -> pd.DataFrame:
    """The job rows of accepted jobs that failed or timed out (not the refused submits)."""
    jobs = records[(records["name"] == JOB_REQUEST) & (records["outcome"] == "error")]
    return jobs[~jobs["error"].astype(str).str.contains("submit answered", regex=False)]


def job_accounting(records: pd.DataFrame) -> dict[str, int]:
    """The job queue's jobs over the run: accepted, finished, lost, unresolved."""
    submits = records[records["name"] == JOB_SUBMIT_REQUEST]
    accepted = int((submits["outcome"] == "ok").sum())
    finished = int(((records["name"] == JOB_REQUEST) & (records["outcome"] == "ok")).sum())
    lost = len(lost_jobs(records))
    return {"accepted": accepted, "finished": finished, "lost": lost,
            "unresolved": max(0, accepted - finished - lost)}  # fmt: skip


def charge_lost_jobs(records: pd.DataFrame, fault_starts: Sequence[float]) -> list[int]:
    """Lost jobs per fault (sorted starts; the rule in the module docstring)."""
    starts = np.sort(np.asarray(fault_starts, dtype=float))
    counts = [0] * len(starts)
    lost = lost_jobs(records)
    begin = lost["ts"].to_numpy(dtype=float)
    end = begin + lost["latency_ms"].to_numpy(dtype=float) / 1000.0
    for b, e in zip(begin, end, strict=True):
        hit = np.flatnonzero((starts >= b) & (starts <= e))
        before = np.flatnonzero(starts < b)
        if len(hit):
            counts[int(hit[0])] += 1
        elif len(before):
            counts[int(before[-1])] += 1
    return counts


def impacts(
    records: pd.DataFrame, events: Sequence[Mapping[str, Any]], end_ts: float,
    slo_p99_ms: float | None, request_name: str | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Every injected fault with its impact (faults that failed to inject: as recorded)."""
    starts = sorted(float(e["start_ts"]) for e in events
                    if e.get("start_ts") is not None and not e.get("error"))  # fmt: skip
    jobs = "name" in records and bool((records["name"] == JOB_SUBMIT_REQUEST).any())
    charged = charge_lost_jobs(records, starts) if jobs else []
    slot = {start: starts.index(start) for start in starts}  # equal starts: taken in turn
    out = []
    for event in events:
        entry = dict(event)
        if event.get("start_ts") is not None and not event.get("error"):
            start = float(event["start_ts"])
            # each fault is measured until the next one hits, so their costs are not mixed
            until = min([s for s in starts if s > start] + [end_ts])
            entry["impact"] = fault_impact(records, start, until, slo_p99_ms, request_name)
            entry["impact"]["measured_until_s"] = round(until - start, 3)
            if jobs:
                entry["impact"]["jobs_lost"] = charged[slot[start]]
                slot[start] += 1
            if event.get("action") == "model_update":
                entry["model_versions"] = version_spans(records, start)
        out.append(entry)
    return out


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)
