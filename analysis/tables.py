"""Stage tables: summary.json runs as DataFrames, per-request cost, the capacity curve.

Pure functions. **throughput** is ``goodput_rps`` (successful requests per second of the
steady window), falling back to ``rps`` when a summary has no goodput; a replica is "what one
target runs" (all its workers), so per-replica figures are the target's figures divided by
``replicas`` (1 unless given). :func:`curve` puts stages in capacity-curve order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from analysis.contract import stage_number

STAGE_COLUMNS = (
    "index", "users", "duration_s", "window_s", "requests", "measured_requests", "ok",
    "errors", "rejected", "rps", "goodput_rps", "error_rate", "reject_rate", "mean_ms",
    "max_ms", "bytes_per_request", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "cpu_pct",
    "cpu_max_pct", "mem_mb", "mem_max_mb", "pss_mb", "resource_samples", "generator_cpu_pct",
    "host_cpu_pct", "littles_law_users", "client_overhead_p50_ms", "server_batch_size_mean",
    "server_queue_ms", "server_model_ms",
)  # fmt: skip
"""Stage fields copied into :func:`stage_table` (missing ones become NaN)."""
STAGE_FLAGS = ("generator_ok", "generator_issues")
"""Stage fields kept as they are (set by ``analysis.stages.flag_generator``)."""
RUN_COLUMNS = (
    "source", "scenario", "target", "kind", "launcher", "status", "request_name",
    "paper_architecture", "paper_same_path",
)  # fmt: skip
BY_NAME_FIELDS = (
    "measured_requests", "ok", "errors", "rejected", "rps", "goodput_rps", "error_rate",
    "reject_rate", "mean_ms", "max_ms", "bytes_per_request", "p50_ms", "p90_ms", "p95_ms",
    "p99_ms",
)  # fmt: skip

StagesLike: TypeAlias = pd.DataFrame | Sequence[Mapping[str, Any]]


def cpu_seconds_per_request(cpu_pct: float | pd.Series, rps: float | pd.Series) -> Any:
    """CPU-seconds one request costs: ``cpu_pct / 100 / rps`` (NaN where rps is 0)."""
    if isinstance(cpu_pct, pd.Series) or isinstance(rps, pd.Series):
        rate = pd.Series(rps, dtype=float)
        return (pd.Series(cpu_pct, dtype=float) / 100.0) / rate.where(rate > 0)
    if not rps or not math.isfinite(rps) or rps <= 0:
        return math.nan
    return float(cpu_pct) / 100.0 / float(rps)


def memory_per_replica(mem_mb: float | pd.Series, replicas: int = 1) -> Any:
    """Memory of one replica when ``mem_mb`` was measured over ``replicas`` of them."""
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    return mem_mb / replicas


def stage_table(
    summary: Mapping[str, Any],
    name: str | None = None,
    replicas: int = 1,
    source: str | None = None,
) -> pd.DataFrame:
    """One row per target x stage of a ``summary.json``, with derived per-replica columns.

    ``name`` picks a request type's figures from ``by_name`` (e.g. the job queue's end-to-end
    ``job``) where a stage has them. ``source`` (e.g. the results folder's name) is copied to
    a column so tables of several folders can be concatenated. Added columns: ``stage``
    (= index), ``throughput_rps`` (goodput, else rps), ``cpu_cores``, ``cpu_s_per_request``,
    ``cpu_ms_per_request``, ``mem_mb_per_replica``, ``replicas``.
    """
    rows: list[dict[str, Any]] = []
    for run in summary.get("runs", []):
        for stage in run.get("stages") or []:
            row: dict[str, Any] = {
                "source": source,
                "scenario": summary.get("scenario"),
                "target": run.get("target"),
                "kind": run.get("kind"),
                "launcher": run.get("launcher"),
                "status": run.get("status"),
                "request_name": None,
                "paper_architecture": run.get("paper_architecture"),
                "paper_same_path": run.get("paper_same_path"),
            }
            row.update({c: stage.get(c) for c in STAGE_COLUMNS})
            row.update({c: stage.get(c) for c in STAGE_FLAGS})
            by_name = stage.get("by_name") or {}
            if name is not None and name in by_name:
                row.update({c: by_name[name].get(c) for c in BY_NAME_FIELDS})
                row["request_name"] = name
            rows.append(row)
    frame = pd.DataFrame(rows, columns=[*RUN_COLUMNS, *STAGE_COLUMNS, *STAGE_FLAGS])
    numeric = [c for c in STAGE_COLUMNS if c not in ("index", "users")]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce").astype(float)
    frame["index"] = pd.to_numeric(frame["index"], errors="coerce").astype("Int64")
    frame["users"] = pd.to_numeric(frame["users"], errors="coerce").astype("Int64")
    frame.insert(len(RUN_COLUMNS), "stage", stage_number(frame["index"]))  # shown: from 1
    frame["throughput_rps"] = frame["goodput_rps"].fillna(frame["rps"])
    frame["cpu_cores"] = frame["cpu_pct"] / 100.0
    frame["cpu_s_per_request"] = cpu_seconds_per_request(frame["cpu_pct"], frame["rps"])
    frame["cpu_ms_per_request"] = frame["cpu_s_per_request"] * 1000.0
    frame["replicas"] = replicas
    frame["mem_mb_per_replica"] = memory_per_replica(frame["mem_mb"], replicas)
    return frame


def stage_tables(
    summaries: Mapping[str, Mapping[str, Any]], name: str | None = None
) -> pd.DataFrame:
    """:func:`stage_table` of several summaries keyed by source (folder name), concatenated."""
    frames = [stage_table(s, name=name, source=src) for src, s in summaries.items()]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return stage_table({"runs": []})
    return pd.concat(frames, ignore_index=True)


def slo_goodput(
    requests: pd.DataFrame,
    slo_ms: float,
    window_s: Mapping[int, float] | pd.Series | None = None,
    name: str | None = None,
) -> pd.DataFrame:
    """Per stage, how many requests met the latency SLO, from the raw records.

    ``requests`` is ``requests.parquet`` (needs ``stage``, ``outcome``, ``latency_ms``;
    ``in_window`` is honoured when present). ``window_s`` maps stage index to its steady
    window length (``{s["index"]: s["window_s"]}`` from summary.json) for the rate column.
    Columns: ``measured``, ``ok``, ``ok_within_slo``, ``share_of_ok`` (ok requests at or
    under the SLO / ok requests), ``share_of_all`` (/ every measured request, errors and
    rejections count as misses), ``slo_goodput_rps``.
    """
    if "stage" not in requests:
        raise ValueError("requests need a 'stage' column: label them (analysis.stages)")
    sel = requests
    if "in_window" in sel:
        sel = sel[sel["in_window"].astype(bool)]
    if name is not None and "name" in sel:
        sel = sel[sel["name"] == name]
    ok = sel["outcome"] == "ok"
    good = ok & (sel["latency_ms"] <= slo_ms)
    grouped = pd.DataFrame({"stage": sel["stage"], "ok": ok, "good": good}).groupby("stage")
    out = pd.DataFrame(
        {
            "measured": grouped.size(),
            "ok": grouped["ok"].sum(),
            "ok_within_slo": grouped["good"].sum(),
        }
    ).astype(int)
    out["share_of_ok"] = out["ok_within_slo"] / out["ok"].where(out["ok"] > 0)
    out["share_of_all"] = out["ok_within_slo"] / out["measured"].where(out["measured"] > 0)
    windows = pd.Series(dict(window_s) if window_s is not None else {}, dtype=float)
    out["window_s"] = windows.reindex(out.index).to_numpy(dtype=float)
    out["slo_goodput_rps"] = out["ok_within_slo"] / out["window_s"].where(out["window_s"] > 0)
    out.insert(0, "slo_ms", float(slo_ms))
    return out.reset_index()


def curve(stages: StagesLike) -> pd.DataFrame:
    """Stages as a frame in capacity-curve order with ``throughput`` and ``concurrency``.

    Closed loop (users vary across stages): ordered by users, then index, and concurrency is
    the users. Otherwise (open-loop ``rate``, ``find-max`` and ``sequential`` runs, where
    users are 0 or constant): ordered by the offered rate (``rps``: every request sent or
    scheduled, so an overloaded stage whose goodput collapsed still sorts as the heavy load it
    was), and concurrency is the measured ``littles_law_users`` (throughput x mean latency).
    """
    frame = stages.copy() if isinstance(stages, pd.DataFrame) else pd.DataFrame(list(stages))
    for col in ("index", "users", "rps", "p99_ms", "error_rate", "reject_rate", "mean_ms",
                "littles_law_users"):  # fmt: skip
        if col not in frame:
            frame[col] = np.nan
    good = frame["goodput_rps"] if "goodput_rps" in frame else pd.Series(np.nan, frame.index)
    frame["throughput"] = pd.to_numeric(good, errors="coerce").fillna(
        pd.to_numeric(frame["rps"], errors="coerce")
    )
    if "measured_requests" in frame:
        measured = pd.to_numeric(frame["measured_requests"], errors="coerce")
        frame = frame[measured.fillna(0) > 0]
    for col in ("p99_ms", "error_rate", "reject_rate", "mean_ms", "rps", "littles_law_users"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    users = pd.to_numeric(frame["users"], errors="coerce")
    if users[users > 0].nunique() > 1:
        frame["concurrency"] = users.astype(float)
        frame = frame.sort_values(["users", "index"], kind="stable")
    else:
        frame["concurrency"] = frame["littles_law_users"]
        frame["offered"] = frame["rps"].fillna(frame["throughput"])
        frame = frame.sort_values(["offered", "index"], kind="stable").drop(columns="offered")
    return frame.reset_index(drop=True)


def as_int(value: Any) -> int | None:
    try:
        return None if value is None or pd.isna(value) else int(value)
    except (TypeError, ValueError):
        return None


def as_float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out
