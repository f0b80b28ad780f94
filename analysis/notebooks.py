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

import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from analysis.defaults import (
    DEFAULT_DAILY_REQUESTS,
    DEFAULT_HEADROOM,
    DEFAULT_PEAK_FACTOR,
    DEFAULT_SLO_P99_MS,
)
from analysis.load import read_summary
from analysis.results import Results, load_results, unique_names

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
SINGLE_RUN = "capacity_report"
COMPARISON = "architecture_comparison"
DEFAULT_KERNEL = "python3"
FALLBACK_KERNEL = "servecap"


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
    price_core_hour: float = 0.0,
    price_gb_hour: float = 0.0,
) -> list[Path]:
    """Execute the report notebooks for ``results_dirs`` and export them to HTML.

    One ``capacity_report-<folder>.html`` per folder (``single_run``) and one
    ``architecture_comparison.html`` over all of them (``comparison``), with the executed
    notebooks beside them. Returns the HTML paths. ``out_dir`` defaults to
    ``<folder>/report`` for one folder, ``results/report-<timestamp>`` for several;
    ``slo_p99_ms`` to the first folder's scenario SLO, else 500 ms. Prices (per core-hour,
    per GB-hour) turn the comparison's cost section from resource-hours into money.
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
        names = unique_names([Results(d, {}) for d in dirs])
        jobs += [
            (SINGLE_RUN, f"{SINGLE_RUN}-{n}", [str(d)]) for n, d in zip(names, dirs, strict=True)
        ]
    if comparison:
        jobs.append((COMPARISON, COMPARISON, [str(d) for d in dirs]))
    prices = {"price_core_hour": float(price_core_hour), "price_gb_hour": float(price_gb_hour)}
    written = []
    for notebook, stem, folders in jobs:
        extra = prices if notebook == COMPARISON else {}
        executed = execute_notebook(
            NOTEBOOK_DIR / f"{notebook}.ipynb", out / f"{stem}.ipynb",
            {**params, **extra, "results_dirs": folders}, kernel, timeout_s,
        )  # fmt: skip
        written.append(notebook_to_html(executed, out / f"{stem}.html", exclude_input))
    return written
