"""The report sections the notebooks show: overviews of runs, stages, capacity, plans.

Pure functions from :class:`analysis.results.Results` and capacity objects to frames and
text; the notebooks (thin) call these and the display helpers of :mod:`analysis.display`.
Executing the notebooks is :mod:`analysis.notebooks`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from analysis.capacity import RunCapacity
from analysis.contract import JOB_REQUEST, stage_number
from analysis.cost import Prices
from analysis.defaults import DEFAULT_HEADROOM
from analysis.display import DASH
from analysis.frameworks import configs_of, framework_table
from analysis.results import Results, unique_names
from analysis.stages import primary_request
from analysis.usl import UslFit


def run_overview(results: Results) -> str:
    """Markdown: what was run, where, when, on what."""
    meta, host = results.meta, results.meta.get("host") or {}
    versions = meta.get("versions") or {}
    plan = results.load_plan
    stages = plan.get("stages") or []
    lines = [
        f"**Scenario** `{results.summary.get('scenario')}` from `{results.path}`",
        "",
        f"- started {meta.get('started_at', '?')}, launcher `{meta.get('launcher', '?')}`",
        f"- host: {host.get('cpu_model', '?')}, {host.get('cpu_count_logical', '?')} logical "
        f"CPUs, {host.get('mem_total_mb', '?')} MB RAM, Python {host.get('python', '?')}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- load: mode `{plan.get('mode', 'ramp')}`, {len(stages)} stage(s) "
        + ", ".join(
            f"{s.get('users') or s.get('rps')} {'users' if s.get('users') else 'rps'} x "
            f"{s.get('duration_s'):g} s"
            for s in stages
        )
        + f"; encoding `{plan.get('encoding', '?')}`, {plan.get('images_per_request', '?')} "
        f"image(s)/request, think time {results.think_time_s:g} s, first "
        f"{plan.get('settle_s', '?')} s of each stage excluded",
    ]
    return "\n".join(lines)


def runs_overview(results: Sequence[Results]) -> pd.DataFrame:
    """One row per run of the folders: status, readiness, requests."""
    rows = []
    for name, r in zip(unique_names(results), results, strict=True):
        for run in r.summary.get("runs", []):
            rows.append({
                "folder": name, "scenario": r.summary.get("scenario"),
                "target": run.get("target"), "kind": run.get("kind"),
                "status": run.get("status"), "time to ready (s)": run.get("time_to_ready_s"),
                "stages": len(run.get("stages") or []), "requests": run.get("requests"),
                "resources": run.get("resources", ""), "error": run.get("error") or "",
            })  # fmt: skip
    return pd.DataFrame(rows)


STAGE_VIEW = {
    "label": "run", "users": "users", "throughput_rps": "goodput (rps)", "p50_ms": "p50 ms",
    "p95_ms": "p95 ms", "p99_ms": "p99 ms", "error_rate": "error rate",
    "reject_rate": "reject rate", "cpu_cores": "CPU cores", "cpu_ms_per_request": "CPU ms/req",
    "mem_mb": "RSS MB", "pss_mb": "PSS MB", "generator_cpu_pct": "generator CPU %",
}  # fmt: skip


def stage_overview(table: pd.DataFrame) -> pd.DataFrame:
    """The stage table's key columns with readable names."""
    cols = [c for c in STAGE_VIEW if c in table]
    return table[cols].rename(columns=STAGE_VIEW)


def time_breakdown(table: pd.DataFrame) -> pd.DataFrame:
    """Where a request's time goes, per run and stage, in mean milliseconds: waiting in the
    server's queue (its batcher), in the model call, and the rest (client and network, the
    HTTP server, decoding and encoding), from the end-to-end mean and the server's own
    metrics; plus the mean batch size. Runs whose server exposes no metrics are left out."""
    columns = ["run", "users", "rps", "end to end ms", "queue ms", "model ms", "rest ms",
               "rest share", "batch size"]  # fmt: skip
    if table.empty or "server_model_ms" not in table:
        return pd.DataFrame(columns=columns)
    known = table[pd.to_numeric(table["server_model_ms"], errors="coerce").notna()]
    rows = []
    for _, r in known.iterrows():
        total = float(r["mean_ms"])
        queue = float(r.get("server_queue_ms") or 0.0)
        model = float(r["server_model_ms"])
        rest = total - queue - model
        rows.append({
            "run": r.get("label", r["target"]), "users": r["users"],
            "rps": r["throughput_rps"], "end to end ms": total, "queue ms": queue,
            "model ms": model, "rest ms": rest,
            "rest share": rest / total if total > 0 else math.nan,
            "batch size": r.get("server_batch_size_mean"),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def capacity_overview(caps: Mapping[str, RunCapacity]) -> pd.DataFrame:
    """One row per run: capacity under the SLO, how it was found, knee, USL."""
    rows = []
    for label, c in caps.items():
        m = c.max_rps
        rows.append({
            "run": label, "SLO p99 ms": m.slo_p99_ms, "max RPS": m.max_rps,
            "capacity RPS (sized)": c.capacity_rps, "method": m.method,
            "limited by": m.limited_by or DASH,
            "evidence stages": ", ".join(str(stage_number(s)) for s in m.evidence_stages) or DASH,
            "knee RPS": c.knee.throughput_rps, "knee users": c.knee.users,
            "USL λ": c.usl.lam, "USL \u03c3": c.usl.sigma, "USL κ": c.usl.kappa, "USL R²": c.usl.r2,
            "USL N*": c.usl.n_star, "USL Xmax": c.usl.x_max,
            "USL fit": usl_verdict(c.usl),
            "CPU cores/replica": c.cpu_cores, "RSS MB/replica": c.mem_mb,
        })  # fmt: skip
    return pd.DataFrame(rows)


def usl_verdict(usl: UslFit) -> str:
    """ok, poor, or not fitted (too few levels: the reason says)."""
    if math.isnan(usl.lam):
        return "not fitted"
    return "poor" if usl.poor_fit else "ok"


def littles_law_overview(caps: Mapping[str, RunCapacity]) -> pd.DataFrame:
    """Little's-law check of every stage of every run, with the flags."""
    frames = []
    for label, c in caps.items():
        f = c.littles_law.assign(run=label)
        f["index"] = stage_number(f["index"])  # shown as "stage", from 1
        frames.append(f[["run", "index", "users", "rps", "mean_ms", "expected_users", "ratio",
                         "generator_cpu_pct", "suspect", "note"]])  # fmt: skip
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True).rename(
        columns={
            "index": "stage",
            "mean_ms": "mean ms",
            "expected_users": "rps x (mean+think)",
            "generator_cpu_pct": "generator CPU %",
        }
    )


def warnings_markdown(caps: Mapping[str, RunCapacity]) -> str:
    lines = []
    for label, c in caps.items():
        for w in c.warnings:
            lines.append(f"- **{label}**: {w}")
    return "\n".join(lines) or "No warnings."


def slo_goodput_table(results: Results, slo_p99_ms: float) -> pd.DataFrame:
    """Per target and stage, the share of its work done within the SLO (raw records): of its
    requests, or for a job queue of its jobs (end to end, submit to result; the submits and
    polls that make a job are not counted again). ``counted`` says which."""
    from analysis.tables import slo_goodput

    frames = []
    for run in results.summary.get("runs", []):
        target = str(run.get("target"))
        requests = results.requests(target)
        if requests.empty or "stage" not in requests:
            continue
        windows = {s["index"]: s["window_s"] for s in run.get("stages") or []}
        name = primary_request(run)
        frames.append(slo_goodput(requests, slo_p99_ms, windows, name=name).assign(
            target=target, counted="jobs" if name == JOB_REQUEST else "requests"))  # fmt: skip
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    out["stage"] = stage_number(out["stage"])
    return out[["target", "stage", "counted", "measured", "ok", "ok_within_slo", "share_of_ok",
                "share_of_all", "slo_goodput_rps"]].rename(
        columns={"ok_within_slo": "ok within SLO", "share_of_ok": "within SLO / ok",
                 "share_of_all": "within SLO / all", "slo_goodput_rps": "SLO goodput (/s)"}
    )  # fmt: skip


COMPARISON_VIEW = {
    "label": "run", "kind": "kind", "capacity_rps": "max RPS under SLO (sized)",
    "method": "method", "max_rps": "estimate RPS", "knee_rps": "knee RPS",
    "usl_x_max": "USL Xmax", "at_users": "common users", "rps_at_users": "goodput at common",
    "p99_at_users_ms": "p99 ms at common", "cpu_ms_per_request": "CPU ms/req at common",
    "cpu_cores_at_capacity": "CPU cores at capacity", "mem_mb": "RSS MB", "pss_mb": "PSS MB",
}  # fmt: skip


def comparison_overview(comparison: pd.DataFrame) -> pd.DataFrame:
    """``capacity.compare_runs`` output with readable column names."""
    cols = [c for c in COMPARISON_VIEW if c in comparison]
    return comparison[cols].rename(columns=COMPARISON_VIEW)


def plans_overview(
    results: Sequence[Results],
    slo_p99_ms: float,
    daily_requests: float | None = None,
    peak_factor: float | None = None,
    headroom: float = DEFAULT_HEADROOM,
    peak_rps: float | None = None,
) -> pd.DataFrame:
    """The plans of every folder, one row per run, with readable columns. Closed-loop
    capacities are planned too, with their basis shown (``servecap plan`` refuses them)."""
    from analysis.plans import plans_frame
    from analysis.sizing import plan_targets

    frames = []
    for name, r in zip(unique_names(results), results, strict=True):
        plans = plan_targets(r.summary, slo_p99_ms, peak_rps, daily_requests=daily_requests,
                             peak_factor=peak_factor, headroom=headroom,
                             think_time_s=r.think_time_s, allow_closed_loop=True)  # fmt: skip
        frames.append(plans_frame(plans).assign(folder=name))
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    view = {"folder": "folder", "target": "target", "kind": "kind",
            "capacity_rps": "RPS/replica", "basis": "measured with", "method": "method",
            "peak_rps": "peak RPS",
            "replicas": "replicas", "utilisation_at_peak": "utilisation at peak",
            "total_cpu_cores": "CPU cores", "total_mem_gb": "memory GB",
            "note": "note"}  # fmt: skip
    return out[list(view)].rename(columns=view)


def faults_overview(results: Sequence[Results]) -> pd.DataFrame:
    """One row per injected fault of every run: what it hit and what it cost (summary.json
    ``faults``, :mod:`analysis.faults`); for a job queue the lost jobs charged to that fault
    (each lost job once; the run's totals: :func:`jobs_overview`)."""
    rows = []
    for name, r in zip(unique_names(results), results, strict=True):
        for run in r.summary.get("runs", []):
            section = run.get("faults") or {}
            for f in section.get("injected", []):
                impact = f.get("impact") or {}
                rows.append({
                    "folder": name, "target": run.get("target"), "kind": run.get("kind"),
                    "fault": f"{f.get('action')} {f.get('part')} {f.get('part_index')}",
                    "at (s)": f.get("planned_s"), "hit": f.get("what") or f.get("error"),
                    "errors": impact.get("errors_beyond_baseline"),
                    "errors for (s)": impact.get("error_duration_s"),
                    "p99 back within (s)": impact.get("p99_recovery_s"),
                    "goodput dip": impact.get("goodput_dip"),
                    "jobs lost": impact.get("jobs_lost"),
                })  # fmt: skip
    return pd.DataFrame(rows)


def jobs_overview(results: Sequence[Results]) -> pd.DataFrame:
    """One row per job-queue run with faults: its jobs once, accepted, finished, lost (failed
    or timed out) and unresolved (still waiting when the load ended)."""
    rows = []
    for name, r in zip(unique_names(results), results, strict=True):
        for run in r.summary.get("runs", []):
            jobs = (run.get("faults") or {}).get("jobs")
            if jobs:
                rows.append(
                    {
                        "folder": name,
                        "target": run.get("target"),
                        **{
                            f"jobs {k}": jobs.get(k)
                            for k in ("accepted", "finished", "lost", "unresolved")
                        },
                    }
                )
    return pd.DataFrame(rows)


def frameworks_overview(
    results: Sequence[Results], table: pd.DataFrame, slo_p99_ms: float, prices: Prices
) -> pd.DataFrame:
    """Every run, batching off and on (its target's config): capacity under the SLO, p50 at
    light load, CPU and RAM per 1,000 rps, cost per million (:mod:`analysis.frameworks`).
    ``table`` is :func:`analysis.results.combined_table` of ``results``."""
    scenarios = [(name, r.scenario) for name, r in zip(unique_names(results), results,
                                                       strict=True)]  # fmt: skip
    return framework_table(table, configs_of(scenarios), slo_p99_ms, prices)
