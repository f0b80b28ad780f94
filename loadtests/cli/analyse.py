"""Commands that read results folders: ``plan`` (sizing), ``report`` (HTML notebooks) and
``compare`` (a regression gate between two runs)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
import pandas as pd

from analysis.defaults import (
    DEFAULT_DAILY_REQUESTS,
    DEFAULT_HEADROOM,
    DEFAULT_MAX_ERROR_RATE,
    DEFAULT_PEAK_FACTOR,
    DEFAULT_SLO_P99_MS,
    DEFAULT_VERIFY_TOLERANCE,
)
from analysis.regression import DEFAULT_ALPHA, DEFAULT_THRESHOLD
from analysis.sizing import TargetPlan

if TYPE_CHECKING:
    from loadtests.proof import VerifyOptions
from analysis.limits import CpuLimit
from analysis.replicas import BALANCER_MODELS
from loadtests.cli.common import (
    POSITIVE,
    data_option,
    price_core_option,
    price_gb_option,
    resolve_data,
    target_names,
)


def _results_slo(results_dir: Path, slo_p99_ms: float | None) -> float:
    """--slo-p99-ms, else the scenario's slo.p99_ms, else the capacity default (500 ms)."""
    from analysis.results import load_results

    if slo_p99_ms is not None:
        return slo_p99_ms
    try:
        return load_results(results_dir).slo_p99_ms or DEFAULT_SLO_P99_MS
    except FileNotFoundError as err:
        raise click.ClickException(str(err)) from None


@click.command()
@click.argument(
    "results_dir", metavar="RESULTS", type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "--slo-p99-ms",
    type=POSITIVE,
    default=None,
    help="p99 latency SLO [default: the scenario's slo.p99_ms, else 500]",
)
@click.option("--peak-rps", type=POSITIVE, default=None, help="peak load to size for")
@click.option(
    "--daily-requests",
    type=POSITIVE,
    default=None,
    help="daily volume to size for (with --peak-factor)",
)
@click.option(
    "--peak-factor", type=click.FloatRange(min=1), default=None, help="peak rate / mean daily rate"
)
@click.option(
    "--headroom",
    type=click.FloatRange(0, 1, max_open=True),
    default=DEFAULT_HEADROOM,
    show_default=True,
    help="share of each replica's capacity kept free at peak",
)
@click.option(
    "--max-error-rate",
    type=click.FloatRange(0, 1),
    default=DEFAULT_MAX_ERROR_RATE,
    show_default=True,
)
@click.option("--gpus-per-replica", type=click.FloatRange(min=0), default=0.0)
@click.option(
    "--host-cores",
    type=POSITIVE,
    default=None,
    help="pack replicas onto hosts of this many cores (by measured cores/replica)",
)
@click.option(
    "--host-mem-gb",
    type=POSITIVE,
    default=None,
    help="and of this much memory (by measured memory/replica)",
)
@price_core_option
@price_gb_option
@click.option(
    "--price-gpu-hour",
    type=click.FloatRange(min=0),
    default=0.0,
    help="price of one GPU for an hour",
)
@click.option("--price-host-hour", type=click.FloatRange(min=0), default=None,
              help="price of one host of --host-cores/--host-mem-gb for an hour (instead of "
                   "pricing cores and memory)")  # fmt: skip
@click.option(
    "--kubernetes",
    "kubernetes_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="write Kubernetes manifests per target into this folder",
)
@click.option("--compose", "compose_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="write a docker-compose.yml override with the planned "
                                 "replicas and limits")  # fmt: skip
@click.option("--balancer", type=click.Choice(list(BALANCER_MODELS)), default="reuseport",
              show_default=True,
              help="what spreads requests over the replicas: the kernel (SO_REUSEPORT, a "
                   "Kubernetes Service) or an nginx upstream; picks the model of N replicas "
                   "and what --verify runs")  # fmt: skip
@click.option("--allow-closed-loop", is_flag=True,
              help="plan from a closed-loop (ramp) capacity too: optimistic for open traffic, "
                   "refused without this flag")  # fmt: skip
@click.option("--verify", is_flag=True,
              help="run the plan on containers: find-max at 1, N and N-1 replicas against "
                   "the model's prediction, and the peak at N and N-1 (exit 3 when it did not "
                   "hold)")  # fmt: skip
@click.option(
    "--verify-target",
    "verify_targets",
    multiple=True,
    callback=target_names,
    help="--verify only this target (repeatable; default every planned target)",
)
@click.option("--verify-duration-s", type=click.FloatRange(5, 3600), default=30.0,
              show_default=True, help="--verify: seconds at the peak per run")  # fmt: skip
@click.option("--verify-tolerance", type=click.FloatRange(0, 1, min_open=True),
              default=DEFAULT_VERIFY_TOLERANCE, show_default=True,
              help="--verify: how far measured capacity may fall below the model's")  # fmt: skip
@data_option
def plan(results_dir: Path, slo_p99_ms: float | None, peak_rps: float | None,
         daily_requests: float | None, peak_factor: float | None, headroom: float,
         max_error_rate: float, gpus_per_replica: float, host_cores: float | None,
         host_mem_gb: float | None, price_core_hour: float, price_gb_hour: float,
         price_gpu_hour: float, price_host_hour: float | None, kubernetes_dir: Path | None,
         compose_file: Path | None, balancer: str, allow_closed_loop: bool, verify: bool,
         verify_targets: tuple[str, ...], verify_duration_s: float, verify_tolerance: float,
         data_dir: str | None) -> None:  # fmt: skip
    """Replicas, cores and memory for a peak load, from a results folder's capacity."""
    from analysis.plans import format_plan
    from analysis.results import load_results
    from analysis.sizing import plan_targets

    if peak_rps is not None and (daily_requests is not None or peak_factor is not None):
        raise click.UsageError("give --peak-rps or --daily-requests/--peak-factor, not both")
    if peak_rps is None and (daily_requests is None or peak_factor is None):
        raise click.UsageError("give --peak-rps, or --daily-requests with --peak-factor")
    from analysis.capacity import run_capacity
    from analysis.spread import conservative_summary, repeat_folders

    repeats = repeat_folders(results_dir)
    source = repeats[0] if repeats else results_dir  # a run's folder: its targets and load
    slo = _results_slo(source, slo_p99_ms)
    results = load_results(source)
    summary = results.summary
    if repeats:  # size from the most conservative run of each target
        summaries = [load_results(folder).summary for folder in repeats]
        summary = conservative_summary(summaries, lambda run: run_capacity(
            run, slo, max_error_rate, think_time_s=results.think_time_s).capacity_rps)  # fmt: skip
        click.echo(f"servecap plan: {len(repeats)} repeats; each target sized from its run "
                   "with the lowest capacity")  # fmt: skip
    plans = plan_targets(summary, slo, peak_rps, daily_requests=daily_requests,
                         peak_factor=peak_factor, headroom=headroom,
                         max_error_rate=max_error_rate, gpus_per_replica=gpus_per_replica,
                         think_time_s=results.think_time_s, host_cores=host_cores,
                         host_mem_gb=host_mem_gb, balancer=BALANCER_MODELS[balancer],
                         allow_closed_loop=allow_closed_loop,
                         cpu_limits=_cpu_limits(source))  # fmt: skip
    click.echo(format_plan(plans))
    if not any(p.plan for p in plans):
        sys.exit(1)
    from loadtests.artefacts import deployment_text

    for line in deployment_text(source, plans):
        click.echo(line)
    from analysis.cost import Prices, format_costs

    try:
        prices = Prices(price_core_hour, price_gb_hour, price_gpu_hour, price_host_hour)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    if prices.given:
        click.echo("\n" + format_costs(plans, prices))
    if kubernetes_dir is not None or compose_file is not None:
        from loadtests.artefacts import write_artefacts
        from targets.deploy import DeployError

        click.echo("")
        try:
            write_artefacts(source, plans, kubernetes_dir, compose_file, click.echo)
        except DeployError as err:
            raise click.ClickException(str(err)) from None
    if verify:
        from loadtests.proof import VerifyOptions

        options = VerifyOptions(verify_duration_s, balancer, verify_tolerance,
                                resolve_data(data_dir), max_error_rate)  # fmt: skip
        _verify(source, results_dir, plans, verify_targets, options)


def _cpu_limits(results_dir: Path) -> dict[str, CpuLimit]:
    """How each target's CPU was limited in the run (its resolved configuration)."""
    from loadtests.artefacts import resolved_targets
    from targets.deploy import DeployError

    try:
        configs = resolved_targets(results_dir)
    except DeployError:
        return {}
    return {name: CpuLimit(c.cpus, c.cpuset, c.cpu_period_ms) for name, c in configs.items()}


def _verify(source: Path, results_dir: Path, plans: list[TargetPlan], names: tuple[str, ...],
            options: VerifyOptions) -> None:  # fmt: skip
    """plan --verify: each chosen plan proven on containers (loadtests.proof), as measured
    in ``source`` (a run's folder; of a --repeat folder, its first run), into a new folder
    under ``results_dir``."""
    from loadtests.cli.common import interrupt_once
    from loadtests.orchestrator import PreflightError
    from loadtests.proof import verify_plan
    from loadtests.results import new_results_dir

    chosen = [tp for tp in plans if tp.plan is not None and (not names or tp.target in names)]
    unknown = set(names) - {str(tp.target) for tp in plans}
    if unknown or not chosen:
        raise click.UsageError(f"nothing to verify: {', '.join(sorted(unknown)) or 'no plan'}")
    interrupt_once()
    out = new_results_dir(None, "plan-verify", root=results_dir)  # this --verify's own
    held = True
    for tp in chosen:
        click.echo("")
        try:
            proof = verify_plan(source, tp, out, options, click.echo)
        except PreflightError as err:
            raise click.ClickException(str(err)) from None
        held = held and proof.held
    if not held:
        sys.exit(3)


@click.command()
@click.argument(
    "results_dirs",
    metavar="RESULTS...",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="[default: RESULTS/report for one folder, results/report-<time> for several]",
)
@click.option(
    "--slo-p99-ms",
    type=POSITIVE,
    default=None,
    help="p99 latency SLO [default: the first scenario's slo.p99_ms, else 500]",
)
@click.option("--daily-requests", type=POSITIVE, default=DEFAULT_DAILY_REQUESTS, show_default=True)
@click.option(
    "--peak-factor", type=click.FloatRange(min=1), default=DEFAULT_PEAK_FACTOR, show_default=True
)
@click.option(
    "--headroom",
    type=click.FloatRange(0, 1, max_open=True),
    default=DEFAULT_HEADROOM,
    show_default=True,
)
@click.option("--show-code", is_flag=True, help="keep the notebooks' code in the HTML")
@price_core_option
@price_gb_option
def report(results_dirs: tuple[Path, ...], out_dir: Path | None, slo_p99_ms: float | None,
           daily_requests: float, peak_factor: float, headroom: float,
           show_code: bool, price_core_hour: float, price_gb_hour: float) -> None:  # fmt: skip
    """HTML capacity reports: one per results folder, and a comparison of all of them."""
    from analysis.notebooks import ReportError, build_report

    slo = _results_slo(results_dirs[0], slo_p99_ms)
    click.echo(f"servecap: executing the report notebooks (SLO p99 <= {slo:g} ms)...")
    try:
        paths = build_report(results_dirs, out_dir, slo_p99_ms=slo,
                             daily_requests=daily_requests, peak_factor=peak_factor,
                             headroom=headroom, exclude_input=not show_code,
                             price_core_hour=price_core_hour,
                             price_gb_hour=price_gb_hour)  # fmt: skip
    except (FileNotFoundError, ReportError) as err:
        raise click.ClickException(str(err)) from None
    for path in paths:
        click.echo(f"report: {path}")


@click.command()
@click.argument("baseline", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("candidate", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--threshold",
    type=click.FloatRange(0, 10, min_open=True),
    default=DEFAULT_THRESHOLD,
    show_default=True,
    help="relative change that counts (the whole 95% interval must lie beyond it)",
)
@click.option(
    "--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=DEFAULT_ALPHA,
    show_default=True, help="significance level of the Mann-Whitney test",
)  # fmt: skip
@click.option("--junit", "junit_file", type=click.Path(path_type=Path), help="JUnit XML here")
def compare(baseline: Path, candidate: Path, threshold: float, alpha: float,
            junit_file: Path | None) -> None:  # fmt: skip
    """Did CANDIDATE get worse than BASELINE? Per target and stage: p50, p99 and goodput,
    with a test on the raw records. Exit status 3 when something got worse."""
    from analysis.regression import compare_folders, table
    from loadtests.gates import GateResult, junit_xml

    try:
        comparisons = compare_folders(baseline, candidate, threshold, alpha)
    except FileNotFoundError as err:
        raise click.ClickException(str(err)) from None
    if not comparisons:
        raise click.ClickException("the two folders share no target and stage to compare")
    frame = table(comparisons)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        click.echo(frame.round(4).to_string(index=False))
    results = [
        GateResult(c.target, c.label, f.figure, f.ratio, 1 + threshold, f.verdict != "worse",
                   f"{c.target} {c.label}: {f.figure} {f.verdict} (ratio {f.ratio or 0:.3f}, "
                   f"95% [{(f.ratio_ci or (0, 0))[0]:.3f}, {(f.ratio_ci or (0, 0))[1]:.3f}], "
                   f"p {f.p_value if f.p_value is not None else float('nan'):.2g})")
        for c in comparisons for f in c.figures
    ]  # fmt: skip
    worse = [r for r in results if not r.passed]
    for r in worse:
        click.echo(f"WORSE: {r.message}")
    if junit_file is not None:
        junit_file.write_text(junit_xml(results, "servecap.compare"), encoding="utf-8")
    counts = {v: [c.verdict for c in comparisons].count(v) for v in ("worse", "better", "same")}
    click.echo(f"servecap compare: {counts['worse']} worse, {counts['better']} better, "
               f"{counts['same']} same (stages; threshold {threshold:.0%})")  # fmt: skip
    if worse:
        sys.exit(3)


COMMANDS = (plan, report, compare)
