"""The published figures of Lee et al. (J. KICS 2020/2021) as data, and ours beside them.

The paper sent 1 to 10,000 requests one after another (no concurrency) to four
architectures and reported the mean total time (Table 3) and the mean CPU % of 8 cores and
RAM while serving 10,000 requests (Table 4). Runs made in ``sequential`` mode carry the
measured totals (their summary's ``sequential`` section) and are used as such. For any other
run our side is **derived from the ramp's 1-user stage** (a closed loop with one user is
sequential): ``total seconds = mean latency x N`` (time between requests in the client is
not counted). Table 4's CPU and memory are the means over the longest 1-user stages: in a
sequential run, every repeat of its largest N (the paper's "while serving 10,000 requests"),
labelled measured; in a ramp, its 1-user stage, labelled derived.

Each kind says where it sits among the paper's architectures (``paper`` in its declaration,
recorded per run as ``paper_architecture`` and ``paper_same_path``): the Django kinds
reproduce its request path (nginx -> Gunicorn -> Django -> model server); the model servers
alone are labelled "server only". Runs of kinds outside the paper are left out of its tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

ARCHITECTURES = ("embedded", "Flask API", "FastAPI", "TF Serving")
REQUEST_COUNTS = (1, 10, 100, 1_000, 10_000)
PAPER_CORES = 8
"""The paper's i7-9700K: CPU % in Table 4 is of these 8 cores."""
SOURCE = (
    "Lee, Kang, Kim, Kim, 'Design and Performance Comparison of Docker Container Based Deep "
    "Learning Model Management System for Real-Time Analysis', J. KICS, 2020/2021"
)

TABLE3_TOTAL_S: dict[str, dict[int, float]] = {
    "embedded": {1: 0.038, 10: 0.296, 100: 2.927, 1_000: 37.840, 10_000: 289.219},
    "Flask API": {1: 2.090, 10: 20.851, 100: 209.449, 1_000: 2059.050, 10_000: 20702.672},
    "FastAPI": {1: 0.056, 10: 0.577, 100: 5.763, 1_000: 56.694, 10_000: 531.959},
    "TF Serving": {1: 0.009, 10: 0.082, 100: 0.826, 1_000: 8.167, 10_000: 82.519},
}
"""Table 3: mean total processing time (s) of N sequential requests."""

TABLE4: dict[str, dict[str, Any]] = {
    "embedded": {"model_types": "any", "language": "Python",
                 "request_type": "none (function call)", "cpu_pct": 21.7, "ram_mb": 450.5},
    "Flask API": {"model_types": "any", "language": "Python", "request_type": "REST",
                  "cpu_pct": 5.4, "ram_mb": 200.7},
    "FastAPI": {"model_types": "any", "language": "Python", "request_type": "REST",
                "cpu_pct": 18.2, "ram_mb": 260.2},
    "TF Serving": {"model_types": "TensorFlow SavedModel only", "language": "C++",
                   "request_type": "REST, gRPC", "cpu_pct": 23.7, "ram_mb": 275.6},
}  # fmt: skip
"""Table 4: resources while serving 10,000 requests; ``cpu_pct`` is % of 8 cores."""


def architecture_of(run: Mapping[str, Any] | pd.Series) -> tuple[str, bool] | None:
    """The paper's architecture of a run and whether its request path is the paper's, as
    the run recorded them (its kind's declaration: ``paper_architecture``,
    ``paper_same_path``); None for a kind with no place in the paper."""
    name = run.get("paper_architecture")
    if name is None or (isinstance(name, float) and math.isnan(name)) or name not in ARCHITECTURES:
        return None
    return str(name), bool(run.get("paper_same_path"))


def sequential_figures(table: pd.DataFrame, users: int = 1) -> pd.DataFrame:
    """Per run of a stage table, its ``users``-user stage as the paper's sequential figures.

    ``table`` is :func:`analysis.tables.stage_table` / ``stage_tables`` output (a ``label``
    column is used when present). Runs whose kind has no paper architecture are left out.
    Columns: source, label, target, kind, architecture, same_path, mean_ms, cpu_pct,
    cpu_pct_of_8, mem_mb, pss_mb, and ``stages`` / ``stage_requests``: how many of the
    longest such stages (a sequential run's repeats of its largest N) the figures average.
    """
    cols = ["source", "label", "target", "kind", "architecture", "same_path", "mean_ms",
            "cpu_pct", "cpu_pct_of_8", "mem_mb", "pss_mb", "stages", "stage_requests"]  # fmt: skip
    rows = []
    if table.empty:
        return pd.DataFrame(columns=cols)
    stage = table[table["users"] == users]
    for (source, _target), g in stage.groupby(["source", "target"], dropna=False, sort=False):
        # the longest such stages: the ramp's one, or every repeat of a sequential largest N
        measured = pd.to_numeric(g["measured_requests"], errors="coerce").fillna(0)
        longest = g[measured == measured.max()] if measured.any() else g.sort_values("index")[:1]
        row = longest.iloc[0]
        arch = architecture_of(row)
        if arch is None:
            continue
        label = row["label"] if "label" in g and pd.notna(row.get("label")) else row["target"]
        means = (
            longest[["mean_ms", "cpu_pct", "mem_mb", "pss_mb"]]
            .apply(pd.to_numeric, errors="coerce")
            .mean()
        )
        rows.append(
            {
                "source": source, "label": label, "target": row["target"], "kind": row["kind"],
                "architecture": arch[0], "same_path": arch[1], **means.astype(float).to_dict(),
                "cpu_pct_of_8": float(means["cpu_pct"]) / PAPER_CORES, "stages": len(longest),
                "stage_requests": int(measured.max()),
            }
        )  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def _ours_name(row: pd.Series) -> str:
    path = "" if row["same_path"] else ", server only"
    return f"ours (derived): {row['label']}{path}"


def measured_sequential(
    table: pd.DataFrame, summaries: Mapping[str, Mapping[str, Any]] | None
) -> list[dict[str, Any]]:
    """Runs with a real ``sequential`` section (sequential mode), as Table 3 rows."""
    rows: list[dict[str, Any]] = []
    labels: dict[tuple[Any, Any], str] = {}
    if not table.empty and "label" in table:
        labels = {(r["source"], r["target"]): str(r["label"]) for _, r in table.iterrows()}
    for source, summary in (summaries or {}).items():
        for run in summary.get("runs", []):
            arch = architecture_of(run)
            if arch is None or not run.get("sequential"):
                continue
            label = labels.get((source, run.get("target")), str(run.get("target")))
            name = f"ours (measured): {label}{'' if arch[1] else ', server only'}"
            for entry in run["sequential"]:
                rows.append({"architecture": arch[0], "requests": int(entry["requests"]),
                             "source": name, "total_s": float(entry["mean_total_s"]),
                             "derived": False, "label": label})  # fmt: skip
    return rows


def table3_long(
    table: pd.DataFrame,
    users: int = 1,
    summaries: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Tidy Table 3: one row per architecture x N x source (paper or one of our runs).

    Runs with a real sequential section (``summaries``, keyed like the table's ``source``)
    give measured totals; every other run of a mapped kind gives derived ones.
    """
    rows: list[dict[str, Any]] = []
    for arch in ARCHITECTURES:
        for n in REQUEST_COUNTS:
            rows.append({"architecture": arch, "requests": n, "source": "paper",
                         "total_s": TABLE3_TOTAL_S[arch][n], "derived": False})  # fmt: skip
    measured = measured_sequential(table, summaries)
    rows += [{k: v for k, v in r.items() if k != "label"} for r in measured]
    done = {r["label"] for r in measured}
    for _, row in sequential_figures(table, users).iterrows():
        if row["label"] in done:
            continue
        for n in REQUEST_COUNTS:
            total = row["mean_ms"] * n / 1000.0 if math.isfinite(row["mean_ms"]) else math.nan
            rows.append({"architecture": row["architecture"], "requests": n,
                         "source": _ours_name(row), "total_s": total,
                         "derived": True})  # fmt: skip
    out = pd.DataFrame(rows)
    paper = out[out["source"] == "paper"].set_index(["architecture", "requests"])["total_s"]
    keys = pd.MultiIndex.from_frame(out[["architecture", "requests"]])
    out["vs_paper"] = out["total_s"].to_numpy() / paper.reindex(keys).to_numpy()
    return out


def table3(
    table: pd.DataFrame,
    users: int = 1,
    summaries: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Table 3's shape: rows N requests, columns (architecture, paper | ours) in seconds.

    Ours are measured where a run has a sequential section (pass ``summaries``), else
    derived from the ``users``-user ramp stage: mean latency x N.
    """
    long = table3_long(table, users, summaries)
    wide = long.pivot_table(index="requests", columns=["architecture", "source"],
                            values="total_s", sort=False)  # fmt: skip
    order = [(a, s) for a in ARCHITECTURES for s in long[long["architecture"] == a]["source"]
             .drop_duplicates()]  # fmt: skip
    wide = wide.reindex(columns=pd.MultiIndex.from_tuples(order, names=[None, None]))
    wide.index.name = "requests"
    return wide


def table4(
    table: pd.DataFrame,
    users: int = 1,
    summaries: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Table 4's shape, one row per architecture and source (paper, then each of our runs).

    CPU is given as the paper gives it, % of 8 cores, and in cores. Ours are measured while
    serving a sequential run's largest N (runs with a sequential section in ``summaries``,
    averaged over its repeats), else derived from the ``users``-user ramp stage. RAM: the
    paper's figure; ours is the RSS of the target's processes (PSS beside it).
    """
    rows = []
    ours = sequential_figures(table, users)
    sequential = {
        (source, run.get("target"))
        for source, summary in (summaries or {}).items()
        for run in summary.get("runs", [])
        if run.get("sequential")
    }
    for arch in ARCHITECTURES:
        published = TABLE4[arch]
        rows.append(
            {
                "architecture": arch, "source": "paper", "model types": published["model_types"],
                "language": published["language"], "request type": published["request_type"],
                "CPU % of 8 cores": published["cpu_pct"],
                "CPU cores": published["cpu_pct"] / 100.0 * PAPER_CORES,
                "RAM MB": published["ram_mb"], "PSS MB": math.nan,
            }
        )  # fmt: skip
        for _, row in ours[ours["architecture"] == arch].iterrows():
            path = "" if row["same_path"] else ", server only"
            if (row["source"], row["target"]) in sequential:
                name = (f"ours (measured): {row['label']}{path} ({row['stages']} x "
                        f"{row['stage_requests']:,} sequential requests)")  # fmt: skip
            else:
                name = f"{_ours_name(row)} ({users}-user stage)"
            rows.append(
                {
                    "architecture": arch, "source": name,
                    "model types": "", "language": "", "request type": "",
                    "CPU % of 8 cores": row["cpu_pct_of_8"], "CPU cores": row["cpu_pct"] / 100.0,
                    "RAM MB": row["mem_mb"], "PSS MB": row["pss_mb"],
                }
            )  # fmt: skip
    return pd.DataFrame(rows)
