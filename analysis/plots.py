"""Figures of load-test results: frames in, a matplotlib ``Figure`` out.

Figures are built with the object API on the Agg canvas (no pyplot, no global state, no
display needed), so they work headless, in threads and in notebooks alike. Nothing is
written to disk except by :func:`save`. Inputs are the tables of :mod:`analysis.capacity`
(``stage_table`` / ``stage_tables``, ``compare_runs``) and the frames of
:mod:`analysis.load` (``read_samples``, ``read_timeline``). Curves are labelled by the
table's ``label`` column when present (see ``capacity.label_runs``), else by ``target``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.knee import Knee
from analysis.slo import MaxRps
from analysis.usl import UslFit

PERCENTILE_STYLES = {"p50_ms": ":", "p95_ms": "--", "p99_ms": "-"}
SLO_COLOR = "tab:red"


def new_figure(width: float = 8.0, height: float = 4.5, **kwargs: Any) -> Figure:
    """A Figure on the Agg canvas, laid out with constrained layout."""
    fig = Figure(figsize=(width, height), layout="constrained", **kwargs)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix); the only file I/O here."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def to_png(fig: Figure, dpi: int = 110) -> bytes:
    """PNG bytes of ``fig`` (for embedding in notebooks and HTML)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _label_col(table: pd.DataFrame) -> str:
    return "label" if "label" in table else "target"


def _runs(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(label, stages in users order) per run of a stage table."""
    if table.empty:
        return []
    col = _label_col(table)
    return [
        (str(label), g.sort_values(["users", "index"], kind="stable"))
        for label, g in table.groupby(col, sort=False)
    ]


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _no_data(ax: Axes, what: str = "no data") -> None:
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, color="grey")


def throughput_vs_users(
    table: pd.DataFrame, usl: Mapping[str, UslFit] | None = None, title: str | None = None
) -> Figure:
    """Throughput (ok requests/s) vs concurrent users per run, with USL fits when given.

    One solid line with markers per run (``ax.lines`` in run order); a dashed fitted curve
    follows its run when ``usl`` has a finite fit for that label.
    """
    fig = new_figure()
    ax = fig.add_subplot()
    runs = _runs(table)
    colors = _colors(len(runs))
    max_users = 1.0
    for (label, g), color in zip(runs, colors, strict=True):
        users = g["users"].astype(float)
        ax.plot(users, g["throughput_rps"], marker="o", color=color, label=label)
        max_users = max(max_users, float(users.max()))
        fit = (usl or {}).get(label)
        if fit is not None and math.isfinite(fit.lam):
            n = np.linspace(1.0, float(users.max()) * 1.25, 200)
            quality = "poor fit" if fit.poor_fit else "fit"
            ax.plot(n, fit.predict(n), linestyle="--", color=color, alpha=0.7,
                    label=f"{label}: USL {quality}, R²={fit.r2:.2f}")  # fmt: skip
    if not runs:
        _no_data(ax)
    if max_users >= 8:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter("{x:g}")
    ax.set_xlabel("concurrent users")
    ax.set_ylabel("throughput (ok requests/s)")
    ax.set_ylim(bottom=0)
    ax.set_title(title or "Throughput vs concurrent users")
    ax.grid(alpha=0.3)
    if runs:
        ax.legend(fontsize="small")
    return fig


def latency_vs_throughput(
    table: pd.DataFrame,
    slo_p99_ms: float | None = None,
    knees: Mapping[str, Knee] | None = None,
    max_rps: Mapping[str, MaxRps] | None = None,
    percentiles: Sequence[str] = ("p50_ms", "p95_ms", "p99_ms"),
    log_y: bool = False,
    title: str | None = None,
) -> Figure:
    """The hockey stick: latency percentiles vs throughput, the SLO line and the knee.

    Per run, one line per percentile (p50 dotted, p95 dashed, p99 solid) in the run's
    colour; the p99 points are annotated with their users. ``slo_p99_ms`` draws a red
    horizontal line, ``knees`` a diamond on each knee, ``max_rps`` a vertical dotted line at
    each run's capacity under the SLO.
    """
    fig = new_figure(10.0, 4.8)
    ax = fig.add_subplot()
    runs = _runs(table)
    for (label, g), color in zip(runs, _colors(len(runs)), strict=True):
        x = g["throughput_rps"].to_numpy(dtype=float)
        for col in percentiles:
            ax.plot(x, g[col], linestyle=PERCENTILE_STYLES.get(col, "-"), marker=".",
                    color=color, label=f"{label} {col.removesuffix('_ms')}")  # fmt: skip
        if "p99_ms" in percentiles:
            for xi, yi, u in zip(x, g["p99_ms"], g["users"], strict=True):
                if math.isfinite(xi) and math.isfinite(float(yi)) and pd.notna(u) and u > 0:
                    ax.annotate(f"{u}u", (xi, yi), textcoords="offset points", xytext=(3, 4),
                                fontsize="x-small", color=color)  # fmt: skip
        knee = (knees or {}).get(label)
        if knee is not None and knee.throughput_rps is not None and knee.p99_ms is not None:
            ax.scatter([knee.throughput_rps], [knee.p99_ms], marker="D", s=80, zorder=5,
                       facecolor="none", edgecolor="black", linewidth=1.5,
                       label=f"{label} knee ({knee.throughput_rps:.0f} rps)")  # fmt: skip
        cap = (max_rps or {}).get(label)
        if cap is not None and cap.capacity_rps is not None:
            ax.axvline(cap.capacity_rps, color=color, linestyle=":", linewidth=1.5,
                       label=f"{label} max under SLO ({cap.capacity_rps:.0f} rps, "
                             f"{cap.method})")  # fmt: skip
    if slo_p99_ms is not None:
        ax.axhline(slo_p99_ms, color=SLO_COLOR, linestyle="--", linewidth=1.5,
                   label=f"SLO p99 ≤ {slo_p99_ms:g} ms")  # fmt: skip
    if not runs:
        _no_data(ax)
    if log_y:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.set_xlabel("throughput (ok requests/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(title or "Latency vs throughput")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _timeline(timeline: Sequence[Mapping[str, Any]] | pd.DataFrame | None) -> pd.DataFrame:
    if timeline is None:
        return pd.DataFrame(columns=["index", "users", "start_ts", "end_ts"])
    frame = timeline.reset_index() if isinstance(timeline, pd.DataFrame) else pd.DataFrame(
        list(timeline)
    )  # fmt: skip
    return frame.sort_values("start_ts").reset_index(drop=True)


def role_series(samples: pd.DataFrame, role: str, t0: float) -> pd.DataFrame:
    """One role's CPU/memory per instant (s since ``t0``), summed over its sources.

    Each source (process tree, container) is first averaged per whole second, so two samples
    of one source that fall in the same second are not added up.
    """
    sel = samples[samples["role"] == role]
    if sel.empty:
        return pd.DataFrame(columns=["t", "cpu_pct", "mem_mb", "pss_mb"])
    t = (sel["ts"].astype(float) - t0).round(0)
    name = sel["name"] if "name" in sel else pd.Series("", index=sel.index)
    cols = ["cpu_pct", "mem_mb", "pss_mb"]
    frame = sel[cols].apply(pd.to_numeric, errors="coerce").assign(t=t, name=name)
    per_source = frame.groupby(["t", "name"])[cols].mean()
    return per_source.groupby(level="t").sum(min_count=1).reset_index()


def resources_over_time(
    samples: pd.DataFrame,
    timeline: Sequence[Mapping[str, Any]] | pd.DataFrame | None,
    cpu_roles: Sequence[str] = ("target", "generator", "host"),
    mem_roles: Sequence[str] = ("target",),
    title: str | None = None,
) -> Figure:
    """CPU (100 = one core) and memory over time, with the load stages shaded and labelled.

    Two axes sharing time (s since the first stage): CPU per role in ``cpu_roles``; RSS
    (solid) and PSS (dashed) per role in ``mem_roles``.
    """
    fig = new_figure(9.0, 5.5)
    ax_cpu, ax_mem = fig.subplots(2, 1, sharex=True)
    stages = _timeline(timeline)
    if not stages.empty:
        t0 = float(stages["start_ts"].iloc[0])
    elif not samples.empty:
        t0 = float(samples["ts"].min())
    else:
        t0 = 0.0
    for i, st in stages.iterrows():
        lo, hi = float(st["start_ts"]) - t0, float(st["end_ts"]) - t0
        for ax in (ax_cpu, ax_mem):
            ax.axvspan(lo, hi, color="grey" if int(str(i)) % 2 else "tab:blue", alpha=0.07)
        ax_cpu.text((lo + hi) / 2, 1.0, f"{int(st['users'])}u", ha="center", va="bottom",
                    transform=ax_cpu.get_xaxis_transform(), fontsize="x-small")  # fmt: skip
    drawn = False
    for role in cpu_roles:
        series = role_series(samples, role, t0) if not samples.empty else None
        if series is not None and not series.empty:
            ax_cpu.plot(series["t"], series["cpu_pct"], label=role)
            drawn = True
    for role in mem_roles:
        series = role_series(samples, role, t0) if not samples.empty else None
        if series is not None and not series.empty:
            line = ax_mem.plot(series["t"], series["mem_mb"], label=f"{role} RSS")[0]
            if series["pss_mb"].notna().any():
                ax_mem.plot(series["t"], series["pss_mb"], linestyle="--", color=line.get_color(),
                            label=f"{role} PSS")  # fmt: skip
    if not drawn:
        _no_data(ax_cpu, "no resource samples")
    ax_cpu.set_ylabel("CPU % (100 = 1 core)")
    ax_cpu.set_ylim(bottom=0)
    ax_mem.set_ylabel("memory (MB)")
    ax_mem.set_ylim(bottom=0)
    ax_mem.set_xlabel("time since the first stage (s)")
    for ax in (ax_cpu, ax_mem):
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize="x-small", loc="lower right")
    fig.suptitle(title or "CPU and memory over time (stages shaded)")
    return fig


def outcomes_per_stage(table: pd.DataFrame, title: str | None = None) -> Figure:
    """Per run and stage: error and rejection rates (bars, %) and goodput (line, right axis).

    Made for ``max_works`` runs, where rejections (503) protect the latency of the rest.
    One subplot per run.
    """
    runs = _runs(table)
    n = max(len(runs), 1)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig = new_figure(5.0 * cols + 1, 3.6 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes[len(runs) :]:
        ax.set_visible(False)
    if not runs:
        axes[0].set_visible(True)
        _no_data(axes[0])
    for ax, (label, g) in zip(axes, runs, strict=False):
        pos = np.arange(len(g))
        width = 0.38
        ax.bar(pos - width / 2, g["error_rate"].fillna(0) * 100, width, label="errors",
               color="tab:red")  # fmt: skip
        ax.bar(pos + width / 2, g["reject_rate"].fillna(0) * 100, width, label="rejected (503)",
               color="tab:orange")  # fmt: skip
        ax.set_xticks(pos, [f"{u}u" for u in g["users"]])
        ax.set_ylabel("% of requests")
        ax.set_ylim(0, max(5.0, float((g[["error_rate", "reject_rate"]].max().max() or 0) * 110)))
        ax.set_title(label, fontsize="medium")
        ax.grid(alpha=0.3, axis="y")
        twin = ax.twinx()
        twin.plot(pos, g["goodput_rps"], color="tab:green", marker="o", label="goodput")
        twin.set_ylabel("goodput (ok requests/s)")
        twin.set_ylim(bottom=0)
        handles = ax.get_legend_handles_labels()
        extra = twin.get_legend_handles_labels()
        ax.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize="x-small",
                  loc="upper left")  # fmt: skip
    fig.suptitle(title or "Errors and rejections per stage")
    return fig


COMPARISON_PANELS = (
    ("capacity_rps", "max RPS under the SLO", "requests/s per replica"),
    ("p99_at_users_ms", "p99 at {users} users", "ms"),
    ("cpu_ms_per_request", "CPU per request at {users} users", "CPU-ms"),
    ("mem_mb", "memory (RSS)", "MB"),
)


def architecture_comparison(comparison: pd.DataFrame, title: str | None = None) -> Figure:
    """Bars per run: capacity under the SLO, p99 and CPU per request at a common stage, memory.

    ``comparison`` is :func:`analysis.compare.compare_runs` output. Capacities that are
    lower bounds (no stage broke the SLO) are hatched.
    """
    fig = new_figure(11.0, 7.0)
    axes = fig.subplots(2, 2).ravel()
    labels = comparison["label"].astype(str).tolist() if not comparison.empty else []
    users = comparison["at_users"].dropna().iloc[0] if len(comparison) else None
    colors = _colors(len(labels))
    pos = np.arange(len(labels))
    for ax, (col, name, unit) in zip(axes, COMPARISON_PANELS, strict=True):
        ax.set_title(name.format(users=users if users is not None else "?"), fontsize="medium")
        ax.set_ylabel(unit)
        if not labels:
            _no_data(ax)
            continue
        values = pd.to_numeric(comparison[col], errors="coerce").fillna(0).to_numpy()
        bars = ax.bar(pos, values, color=colors)
        if col == "capacity_rps":
            bounds = comparison["method"].isin(["extrapolated", "lower_bound"]).to_numpy()
            for bar, bound in zip(bars, bounds, strict=True):
                if bound:
                    bar.set_hatch("//")
                    bar.set_edgecolor("black")
            if bounds.any():
                ax.set_title(f"{ax.get_title()} (hatched: lower bound)", fontsize="medium")
        ax.bar_label(bars, fmt="%.3g", fontsize="x-small")
        ax.set_xticks(pos, labels, rotation=20, ha="right", fontsize="small")
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title or "Architecture comparison")
    return fig


def cost_vs_p99(costs: pd.DataFrame, slo_p99_ms: float, title: str | None = None) -> Figure:
    """Each run as a point: what a million requests cost at its capacity (money with prices,
    else core-hours) against its p99 at the load every run measured; the SLO as a line, the
    cheapest run that holds it ringed. ``costs`` is :func:`analysis.cost.cost_table` output."""
    fig = new_figure(8.0, 5.0)
    ax = fig.subplots()
    priced = bool(costs["cost_per_million"].notna().any()) if len(costs) else False
    col = "cost_per_million" if priced else "core_hours_per_million"
    ax.set_xlabel("cost per million requests" if priced else "core-hours per million requests")
    users = costs["at_users"].dropna().iloc[0] if len(costs) and costs["at_users"].notna().any() \
        else "?"  # fmt: skip
    ax.set_ylabel(f"p99 at {users} users (ms)")
    points = costs[costs[col].notna() & costs["p99_at_users_ms"].notna()]
    if points.empty:
        _no_data(ax, "no run with a capacity and a p99 to compare")
    for color, (_, r) in zip(_colors(len(points)), points.iterrows(), strict=True):
        ax.scatter([r[col]], [r["p99_at_users_ms"]], color=color, s=60, label=str(r["label"]))
        if r["cheapest"]:
            ax.scatter([r[col]], [r["p99_at_users_ms"]], s=300, facecolors="none",
                       edgecolors="black", linewidths=1.5)  # fmt: skip
            ax.annotate("cheapest meeting the SLO", (r[col], r["p99_at_users_ms"]),
                        textcoords="offset points", xytext=(10, 10), fontsize="small")  # fmt: skip
    ax.axhline(slo_p99_ms, color=SLO_COLOR, linestyle="--", label=f"SLO p99 {slo_p99_ms:g} ms")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(title or "Cost against p99 (cost at capacity, from measured CPU and memory)")
    return fig


def load_over_time(
    stages: pd.DataFrame, timeline: Sequence[Mapping[str, Any]] | pd.DataFrame | None,
    slo_p99_ms: float | None = None, title: str | None = None,
    faults: Sequence[Mapping[str, Any]] = (),
) -> Figure:  # fmt: skip
    """An open-loop run interval by interval: the planned arrival rate, the load offered
    (every request sent) and served (goodput), and p99 on a second axis. ``stages`` is one
    target's rows of the stage table; ``timeline`` its plan (``rps`` per stage). Made for
    ``rate`` and ``trace`` plans, where each stage is one interval of the trace."""
    fig = new_figure(10.0, 4.5)
    ax = fig.subplots()
    plan = _timeline(timeline)
    if stages.empty or plan.empty or "rps" not in plan:
        _no_data(ax, "no open-loop plan to show")
        return fig
    t0 = float(plan["start_ts"].min())
    merged = stages.merge(plan[["index", "start_ts", "end_ts", "rps"]], on="index",
                          suffixes=("", "_plan"))  # fmt: skip
    merged = merged.sort_values("index")
    mid = (merged["start_ts_plan"] + merged["end_ts"]) / 2 - t0
    edges = np.append(plan["start_ts"].to_numpy() - t0, plan["end_ts"].max() - t0)
    ax.stairs(plan["rps"].to_numpy(dtype=float), edges, label="planned (requests/s)",
              color="gray", linestyle="--")  # fmt: skip
    ax.plot(mid, merged["rps"], "o-", label="offered (sent/s)", color="tab:blue")
    ax.plot(mid, merged["throughput_rps"], "s-", label="served (goodput/s)", color="tab:green")
    ax.set_xlabel("time since the start of the load (s)")
    ax.set_ylabel("requests/s")
    ax.grid(alpha=0.3)
    right = ax.twinx()
    right.plot(mid, merged["p99_ms"], "^:", color="tab:orange", label="p99 (ms)")
    if slo_p99_ms is not None:
        right.axhline(slo_p99_ms, color=SLO_COLOR, linestyle="--", label="SLO p99")
    right.set_ylabel("p99 (ms)")
    right.set_ylim(bottom=0)
    for f in faults:  # markers: when each injected fault hit
        if f.get("start_ts") is None:
            continue
        x = float(f["start_ts"]) - t0
        ax.axvline(x, color="black", linestyle=":", alpha=0.7)
        ax.annotate(
            f"{f.get('action')} {f.get('part')}",
            (x, 0),
            xycoords=("data", "axes fraction"),
            xytext=(3, 5),
            textcoords="offset points",
            fontsize="x-small",
            rotation=90,
        )
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize="small", loc="upper left")
    ax.set_title(title or "Offered and served load, and p99, over time")
    return fig
