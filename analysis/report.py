"""Reports: execute the notebooks headless (papermill) and export them to HTML (nbconvert).

:func:`build_report` runs ``notebooks/capacity_report.ipynb`` once per results folder and
``notebooks/architecture_comparison.ipynb`` once over all of them, and writes the executed
notebooks and self-contained HTML files (images embedded, code hidden) to ``out_dir``.

The notebooks stay thin: they call :func:`load_results`, the pure functions of
:mod:`analysis.capacity`, :mod:`analysis.sizing`, :mod:`analysis.paper`,
:mod:`analysis.plots`, and the display helpers here (:func:`show`, :func:`show_table`,
:func:`show_text`), which turn figures and frames into notebook outputs that read well
once exported.

Kernel: papermill starts the kernel named by :func:`resolve_kernel_name`, ``python3`` when it
runs this interpreter (jupyter_client maps a spec whose argv starts with ``python`` to
``sys.executable``, so inside the venv it is the venv's ipykernel); otherwise a ``servecap``
kernelspec pointing at ``sys.executable`` is installed into ``sys.prefix`` (the venv), which
needs no global Jupyter install.
"""

from __future__ import annotations

import base64
import html
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from analysis.capacity import RunCapacity
from analysis.compare import label_runs
from analysis.defaults import (
    DEFAULT_DAILY_REQUESTS,
    DEFAULT_HEADROOM,
    DEFAULT_PEAK_FACTOR,
    DEFAULT_SLO_P99_MS,
)
from analysis.load import read_requests, read_samples, read_summary, read_timeline
from analysis.tables import stage_tables

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
SINGLE_RUN = "capacity_report"
COMPARISON = "architecture_comparison"
DEFAULT_KERNEL = "python3"
FALLBACK_KERNEL = "servecap"


# --------------------------------------------------------------------------- results folders


@dataclass
class Results:
    """One results folder: summary, meta and scenario eagerly; per-target frames on demand."""

    path: Path
    summary: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    scenario: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def targets(self) -> list[str]:
        return [str(r.get("target")) for r in self.summary.get("runs", [])]

    @property
    def load_plan(self) -> dict[str, Any]:
        plan: dict[str, Any] = (self.scenario.get("definition") or {}).get("load") or {}
        return plan

    @property
    def think_time_s(self) -> float:
        return float(self.load_plan.get("think_time_s") or 0.0)

    @property
    def slo_p99_ms(self) -> float | None:
        """The scenario's own SLO (``slo: {p99_ms: ...}``) when it sets one."""
        slo = (self.scenario.get("definition") or {}).get("slo") or {}
        value = slo.get("p99_ms") if isinstance(slo, dict) else None
        return float(value) if value is not None else None

    def target_dir(self, target: str) -> Path:
        return self.path / target

    def requests(self, target: str) -> pd.DataFrame:
        return read_requests(self.target_dir(target))

    def samples(self, target: str) -> pd.DataFrame:
        return read_samples(self.target_dir(target))

    def timeline(self, target: str) -> list[dict[str, Any]] | None:
        return read_timeline(self.target_dir(target))

    @cached_property
    def table(self) -> pd.DataFrame:
        """The labelled stage table of this folder (``capacity.stage_table``)."""
        return label_runs(stage_tables({self.name: self.summary}))


def load_results(path: str | Path) -> Results:
    """Read a results folder (``summary.json`` required; meta and scenario when present)."""
    path = Path(path)
    summary = read_summary(path)
    meta_path, scenario_path = path / "meta.json", path / "scenario.yaml"
    meta = read_json(meta_path) if meta_path.exists() else {}
    scenario = yaml.safe_load(scenario_path.read_text()) if scenario_path.exists() else {}
    return Results(path, summary, meta, scenario or {})


def read_json(path: Path) -> dict[str, Any]:
    import json

    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def combined_table(results: Sequence[Results]) -> pd.DataFrame:
    """One labelled stage table over several folders (labels unique across them)."""
    return label_runs(stage_tables(summaries(results)))


def summaries(results: Sequence[Results]) -> dict[str, dict[str, Any]]:
    """The folders' summaries keyed like :func:`combined_table`'s ``source``."""
    return dict(zip(_unique_names(results), (r.summary for r in results), strict=True))


def _unique_names(results: Sequence[Results]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for r in results:
        count = seen.get(r.name, 0)
        seen[r.name] = count + 1
        names.append(r.name if count == 0 else f"{r.name}#{count + 1}")
    return names


# --------------------------------------------------------------------------- display helpers


DASH = "\u2013"
PERCENT_WORDS = ("rate", "share", "within SLO /", "utilisation", "headroom")
"""Columns whose name contains one of these hold fractions, shown as percentages."""


def _fmt(value: Any, column: str = "") -> str:
    if value is None or value is pd.NA:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return DASH if math.isnan(value) else "∞"
        if any(word in column for word in PERCENT_WORDS):
            return f"{value:.2%}"
        if value == int(value) and abs(value) < 1e6 and "ms" not in column:
            return f"{int(value):,}"
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 100:
            return f"{value:,.1f}"
        if magnitude >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def format_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as display text: thousands separators, rates as %, NaN as a dash."""
    out = pd.DataFrame(index=frame.index)
    for col in frame.columns:
        name = " / ".join(map(str, col)) if isinstance(col, tuple) else str(col)
        out[col] = [_fmt(v.item() if hasattr(v, "item") else v, name) for v in frame[col]]
    out.columns = frame.columns
    return out


def table_html(frame: pd.DataFrame, index: bool = False, caption: str | None = None) -> str:
    """An HTML table of ``frame``: formatted cells (:func:`format_frame`), text left-aligned,
    numbers right-aligned, grouped column headers centred."""
    shown = frame if not index else frame.reset_index()
    styler = format_frame(shown).style.hide(axis="index")
    text = [c for c in shown.columns if not pd.api.types.is_numeric_dtype(shown[c])]
    styler = styler.set_properties(subset=text, **{"text-align": "left"})
    styles = [{"selector": "caption", "props": "caption-side: top; font-weight: bold;"}]
    if isinstance(shown.columns, pd.MultiIndex):
        styles.append({"selector": "th.col_heading.level0", "props": "text-align: center;"})
    styler = styler.set_table_styles(styles).set_table_attributes('class="dataframe"')
    if caption:
        styler = styler.set_caption(caption)
    return str(styler.to_html())


def _display(obj: Any) -> None:
    from IPython.display import display

    display(obj)


def figure_title(fig: Any) -> str:
    """The figure's suptitle, else its first axes title (the image's alternative text)."""
    suptitle = getattr(fig, "_suptitle", None)
    if suptitle is not None and suptitle.get_text():
        return str(suptitle.get_text())
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    return titles[0] if titles else "figure"


def figure_html(fig: Any, dpi: int = 110, alt: str | None = None) -> str:
    """An ``<img>`` with the PNG embedded as a data URI and alternative text."""
    from analysis.plots import to_png

    data = base64.b64encode(to_png(fig, dpi=dpi)).decode("ascii")
    text = html.escape(alt or figure_title(fig), quote=True)
    return f'<img alt="{text}" src="data:image/png;base64,{data}"/>'


def show(fig: Any, dpi: int = 110, alt: str | None = None) -> None:
    """Display a Figure as an embedded PNG with alternative text (no pyplot involved)."""
    from IPython.display import HTML

    _display(HTML(figure_html(fig, dpi, alt)))


def show_table(frame: pd.DataFrame, index: bool = False, caption: str | None = None) -> None:
    from IPython.display import HTML

    _display(HTML(table_html(frame, index=index, caption=caption)))


def show_text(markdown: str) -> None:
    """Display generated Markdown (headings, lists, emphasis)."""
    from IPython.display import Markdown

    _display(Markdown(markdown))


def show_preformatted(text: str) -> None:
    from IPython.display import HTML

    style = "font-family: 'DejaVu Sans Mono', Menlo, Consolas, monospace; font-size: 12px"
    _display(HTML(f'<pre style="{style}">{html.escape(text)}</pre>'))


# --------------------------------------------------------------------------- report sections


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
    for name, r in zip(_unique_names(results), results, strict=True):
        for run in r.summary.get("runs", []):
            rows.append({
                "folder": name, "scenario": r.summary.get("scenario"),
                "target": run.get("target"), "kind": run.get("kind"),
                "status": run.get("status"), "time to ready (s)": run.get("time_to_ready_s"),
                "stages": len(run.get("stages") or []), "requests": run.get("requests"),
                "error": run.get("error") or "",
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


def capacity_overview(caps: Mapping[str, RunCapacity]) -> pd.DataFrame:
    """One row per run: capacity under the SLO, how it was found, knee, USL."""
    rows = []
    for label, c in caps.items():
        m = c.max_rps
        rows.append({
            "run": label, "SLO p99 ms": m.slo_p99_ms, "max RPS": m.max_rps,
            "capacity RPS (sized)": c.capacity_rps, "method": m.method,
            "limited by": m.limited_by or DASH,
            "evidence stages": ", ".join(map(str, m.evidence_stages)) or DASH,
            "knee RPS": c.knee.throughput_rps, "knee users": c.knee.users,
            "USL λ": c.usl.lam, "USL \u03c3": c.usl.sigma, "USL κ": c.usl.kappa, "USL R²": c.usl.r2,
            "USL N*": c.usl.n_star, "USL Xmax": c.usl.x_max,
            "USL fit": "poor" if c.usl.poor_fit else "ok",
            "CPU cores/replica": c.cpu_cores, "RSS MB/replica": c.mem_mb,
        })  # fmt: skip
    return pd.DataFrame(rows)


def littles_law_overview(caps: Mapping[str, RunCapacity]) -> pd.DataFrame:
    """Little's-law check of every stage of every run, with the flags."""
    frames = []
    for label, c in caps.items():
        f = c.littles_law.assign(run=label)
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
    """Per target and stage, the share of requests served within the SLO (raw records)."""
    from analysis.tables import slo_goodput

    frames = []
    for run in results.summary.get("runs", []):
        target = str(run.get("target"))
        requests = results.requests(target)
        if requests.empty or "stage" not in requests:
            continue
        windows = {s["index"]: s["window_s"] for s in run.get("stages") or []}
        frames.append(slo_goodput(requests, slo_p99_ms, windows).assign(target=target))
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    return out[["target", "stage", "measured", "ok", "ok_within_slo", "share_of_ok",
                "share_of_all", "slo_goodput_rps"]].rename(
        columns={"ok_within_slo": "ok within SLO", "share_of_ok": "within SLO / ok",
                 "share_of_all": "within SLO / all", "slo_goodput_rps": "SLO goodput (rps)"}
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
    """``sizing.plan_table`` of every folder, one row per run, with readable columns."""
    from analysis.sizing import plan_targets, plans_frame

    frames = []
    for name, r in zip(_unique_names(results), results, strict=True):
        plans = plan_targets(r.summary, slo_p99_ms, peak_rps, daily_requests=daily_requests,
                             peak_factor=peak_factor, headroom=headroom,
                             think_time_s=r.think_time_s)  # fmt: skip
        frames.append(plans_frame(plans).assign(folder=name))
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    view = {"folder": "folder", "target": "target", "kind": "kind",
            "capacity_rps": "RPS/replica", "method": "method", "peak_rps": "peak RPS",
            "replicas": "replicas", "utilisation_at_peak": "utilisation at peak",
            "total_cpu_cores": "CPU cores", "total_mem_gb": "memory GB",
            "note": "note"}  # fmt: skip
    return out[list(view)].rename(columns=view)


# --------------------------------------------------------------------------- execution


def _runs_this_python(argv: Sequence[str]) -> bool:
    if not argv or not any("ipykernel" in a for a in argv):
        return False
    first = argv[0]
    major, minor = sys.version_info[:2]
    if first in ("python", f"python{major}", f"python{major}.{minor}"):
        return True  # jupyter_client runs these with sys.executable
    try:
        return Path(first).resolve() == Path(sys.executable).resolve()
    except OSError:
        return False


def resolve_kernel_name(preferred: str = DEFAULT_KERNEL) -> str:
    """A kernel name that runs this interpreter (the venv); installs one when needed."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    for name in (preferred, FALLBACK_KERNEL):
        try:
            if _runs_this_python(manager.get_kernel_spec(name).argv):
                return name
        except NoSuchKernel:
            continue
    from ipykernel.kernelspec import install

    install(kernel_name=FALLBACK_KERNEL, display_name="servecap (this venv)", prefix=sys.prefix)
    return FALLBACK_KERNEL


class ReportError(RuntimeError):
    """A notebook failed to execute; the message names the executed notebook to look at."""


def execute_notebook(
    notebook: Path,
    output: Path,
    parameters: Mapping[str, Any],
    kernel_name: str | None = None,
    timeout_s: float = 600,
) -> Path:
    """Execute ``notebook`` with papermill into ``output`` (an .ipynb)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(
            str(notebook), str(output), parameters=dict(parameters),
            kernel_name=kernel_name or resolve_kernel_name(), cwd=str(REPO_ROOT),
            progress_bar=False, log_output=False, execution_timeout=int(timeout_s),
            # the kernel's start-up warnings (TCP on loopback) are noise in a CLI
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )  # fmt: skip
    except PapermillExecutionError as err:
        raise ReportError(
            f"{notebook.name} failed in cell {err.exec_count}: {err.ename}: {err.evalue} "
            f"(see {output})"
        ) from None
    return output


def notebook_to_html(notebook: Path, html_path: Path, exclude_input: bool = True) -> Path:
    """Export an executed notebook to one self-contained HTML file (images embedded)."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", exclude_input=exclude_input,
                            exclude_input_prompt=True, exclude_output_prompt=True)  # fmt: skip
    nb = nbformat.read(str(notebook), as_version=4)
    title = nb.metadata.get("title") or notebook.stem.replace("_", " ")
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    html_path.write_text(body, encoding="utf-8")
    return html_path


def default_out_dir(results_dirs: Sequence[Path]) -> Path:
    if len(results_dirs) == 1:
        return results_dirs[0] / "report"
    return Path("results") / f"report-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def build_report(
    results_dirs: Iterable[str | Path],
    out_dir: str | Path | None = None,
    slo_p99_ms: float | None = None,
    daily_requests: float = DEFAULT_DAILY_REQUESTS,
    peak_factor: float = DEFAULT_PEAK_FACTOR,
    headroom: float = DEFAULT_HEADROOM,
    single_run: bool = True,
    comparison: bool = True,
    exclude_input: bool = True,
    kernel_name: str | None = None,
    timeout_s: float = 600,
) -> list[Path]:
    """Execute the report notebooks for ``results_dirs`` and export them to HTML.

    One ``capacity_report-<folder>.html`` per folder (``single_run``) and one
    ``architecture_comparison.html`` over all of them (``comparison``), with the executed
    notebooks beside them. Returns the HTML paths. ``out_dir`` defaults to
    ``<folder>/report`` for one folder, ``results/report-<timestamp>`` for several;
    ``slo_p99_ms`` to the first folder's scenario SLO, else 500 ms.
    """
    dirs = [Path(d).resolve() for d in results_dirs]
    if not dirs:
        raise ValueError("give at least one results folder")
    for d in dirs:
        read_summary(d)  # fail early, with the message, on anything not a results folder
    if slo_p99_ms is None:
        slo_p99_ms = load_results(dirs[0]).slo_p99_ms or DEFAULT_SLO_P99_MS
    out = Path(out_dir) if out_dir is not None else default_out_dir(dirs)
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    kernel = kernel_name or resolve_kernel_name()
    params: dict[str, Any] = {
        "slo_p99_ms": float(slo_p99_ms), "daily_requests": float(daily_requests),
        "peak_factor": float(peak_factor), "headroom": float(headroom),
    }  # fmt: skip
    jobs: list[tuple[str, str, list[str]]] = []
    if single_run:
        names = _unique_names([Results(d, {}) for d in dirs])
        jobs += [
            (SINGLE_RUN, f"{SINGLE_RUN}-{n}", [str(d)]) for n, d in zip(names, dirs, strict=True)
        ]
    if comparison:
        jobs.append((COMPARISON, COMPARISON, [str(d) for d in dirs]))
    written = []
    for notebook, stem, folders in jobs:
        executed = execute_notebook(
            NOTEBOOK_DIR / f"{notebook}.ipynb", out / f"{stem}.ipynb",
            {**params, "results_dirs": folders}, kernel, timeout_s,
        )  # fmt: skip
        written.append(notebook_to_html(executed, out / f"{stem}.html", exclude_input))
    return written
