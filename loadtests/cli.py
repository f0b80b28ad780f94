"""The ``servecap`` command line."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import click

from loadtests.spec import DEFAULT_SCENARIOS_FILE, Scenario, SpecError, load_scenarios
from targets.launchers import LAUNCHERS

DATA_HELP = (
    "CIFAR-10 image folder (<split>/<class>/*.jpg); "
    "default $SERVECAP_CIFAR10_DIR, else the Keras download"
)


def _interrupt_once() -> None:
    """SIGTERM/SIGHUP behave like Ctrl-C; a second signal during cleanup is ignored."""

    def handler(signum: int, frame: FrameType | None) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(
                sig, lambda *_: click.echo("servecap: stopping, please wait...", err=True)
            )
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


@click.group()
@click.version_option(package_name="servecap")
def main() -> None:
    """servecap: load tests and capacity plans for deep-learning model serving."""


@main.command()
@click.argument("scenario", default="quickstart")
@click.option(
    "--scenarios",
    "scenarios_file",
    type=click.Path(path_type=Path),
    default=DEFAULT_SCENARIOS_FILE,
    show_default=True,
    help="scenario file",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    help="results folder [default: results/<scenario>-<timestamp>]",
)
@click.option("--launcher", type=click.Choice(LAUNCHERS), default="process", show_default=True)
@click.option("--data", "data_dir", type=str, default=None, help=DATA_HELP)
@click.option("--seed", type=int, default=0, show_default=True, help="image selection seed")
@click.option(
    "--junit",
    "junit_file",
    type=click.Path(path_type=Path),
    help="write the SLO gates as JUnit XML here",
)
def run(scenario: str, scenarios_file: Path, out_dir: Path | None, launcher: str,
        data_dir: str | None, seed: int, junit_file: Path | None) -> None:  # fmt: skip
    """Run SCENARIO from the scenario file and write a results folder.

    Exit status: 0 all good; 1 a target failed; 3 an SLO gate (the scenario's slo:) failed;
    130 interrupted.
    """
    from loadtests.orchestrator import PreflightError, RunOptions
    from loadtests.orchestrator import run as run_scenario

    spec = _load(scenarios_file)
    try:
        spec.scenario(scenario)
    except SpecError as err:
        raise click.UsageError(str(err)) from None
    _interrupt_once()
    options = RunOptions(scenario, spec, scenarios_file, out_dir, launcher,
                         data_dir or os.environ.get("SERVECAP_CIFAR10_DIR"), seed)  # fmt: skip
    try:
        outcome = run_scenario(options, echo=click.echo)
    except PreflightError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"results: {outcome.out_dir}")
    if outcome.interrupted:
        click.echo("servecap: interrupted; partial results kept", err=True)
        sys.exit(130)
    breached = _gate(spec.scenario(scenario), outcome.out_dir, scenario, junit_file)
    if outcome.failures:
        for failure in outcome.failures:
            click.echo(f"servecap: FAILED {failure}", err=True)
        sys.exit(1)
    if breached:
        sys.exit(3)


def _gate(sc: Scenario, out_dir: Path, name: str, junit_file: Path | None) -> bool:
    """Check the scenario's SLO, print it, record it in summary.json, optionally as JUnit.

    True when a gate failed.
    """
    from dataclasses import asdict

    from loadtests.gates import check_summary, junit_xml

    if sc.slo is None or sc.load.mode == "find-max":
        # find-max probes past the SLO on purpose: its answer is the rate it found
        if junit_file is not None:
            click.echo(f"servecap: scenario '{name}' has no SLO gates to write", err=True)
        return False
    path = out_dir / "summary.json"
    summary: dict[str, Any] = json.loads(path.read_text())
    results = check_summary(summary, sc.slo)
    for r in results:
        click.echo(f"SLO {'pass' if r.passed else 'FAIL'}: {r.message}")
    summary["gates"] = {"slo": sc.slo.model_dump(), "results": [asdict(r) for r in results],
                        "passed": all(r.passed for r in results)}  # fmt: skip
    path.write_text(json.dumps(summary, indent=2))
    if junit_file is not None:
        junit_file.write_text(junit_xml(results, f"servecap.{name}"), encoding="utf-8")
    return not summary["gates"]["passed"]


@main.command()
@click.option("--scenarios", "scenarios_file", type=click.Path(path_type=Path),
              default=DEFAULT_SCENARIOS_FILE, show_default=True)  # fmt: skip
def scenarios(scenarios_file: Path) -> None:
    """Validate the scenario file and list its scenarios and targets."""
    spec = _load(scenarios_file)
    click.echo(f"{scenarios_file}: valid")
    for name, sc in spec.scenarios.items():
        click.echo(f"  {name:<14} {sc.load.duration_s:>6.0f} s  targets: {', '.join(sc.targets)}"
                   f"  {sc.description}")  # fmt: skip


@main.command()
@click.option("--scenario", required=True, help="the scenario the master is running")
@click.option("--target", required=True, help="the target the master is loading")
@click.option("--master-host", required=True, help="address of the host running `servecap run`")
@click.option("--master-port", type=int, default=None,
              help="[default: the scenario's load.master_port]")  # fmt: skip
@click.option(
    "--host",
    "target_url",
    default=None,
    help="the target's URL as this host reaches it [default: the scenario's]",
)
@click.option("--scenarios", "scenarios_file", type=click.Path(path_type=Path),
              default=DEFAULT_SCENARIOS_FILE, show_default=True)  # fmt: skip
@click.option("--data", "data_dir", type=str, default=None, help=DATA_HELP)
def worker(scenario: str, target: str, master_host: str, master_port: int | None,
           target_url: str | None, scenarios_file: Path, data_dir: str | None) -> None:  # fmt: skip
    """One remote load-generator worker for a run whose scenario sets load.remote_workers.

    Start `servecap run SCENARIO` on one host, then this on each worker host (the same
    scenarios.yaml and dataset on each). The worker sends its per-request records to the
    master: they land in the master's results folder.
    """
    import tempfile

    from loadtests.generator import run_worker
    from loadtests.orchestrator import load_config_for

    spec = _load(scenarios_file)
    if scenario not in spec.scenarios:
        raise click.BadParameter(
            f"no scenario '{scenario}' in {scenarios_file}", param_hint="--scenario"
        )
    sc = spec.scenarios[scenario]
    if target not in sc.targets:
        raise click.BadParameter(f"scenario '{scenario}' has no target '{target}' (it has: "
                                 f"{', '.join(sc.targets)})", param_hint="--target")  # fmt: skip
    if not sc.load.remote_workers:
        raise click.ClickException(f"scenario '{scenario}' sets no load.remote_workers: its run "
                                   "does not wait for workers; set remote_workers: N")  # fmt: skip
    data = data_dir or os.environ.get("SERVECAP_CIFAR10_DIR")
    with tempfile.TemporaryDirectory(prefix="servecap-worker-") as tmp:
        load = load_config_for(target, spec.targets[target], sc, data, Path(tmp))
        if target_url:
            load = load.model_copy(update={"base_url": target_url.rstrip("/")})
        path = Path(tmp) / "load_config.json"
        load.write(path)
        port = master_port or sc.load.master_port
        click.echo(f"servecap worker: {target} at {load.base_url}, master {master_host}:{port}")
        code = run_worker(path, master_host, port)
    sys.exit(code)


def _load(path: Path):  # type: ignore[no-untyped-def]
    try:
        return load_scenarios(path)
    except SpecError as err:
        raise click.ClickException(str(err)) from None


@main.command()
@click.argument("targets", nargs=-1)
@click.option(
    "--scenarios",
    "scenarios_file",
    type=click.Path(path_type=Path),
    default=DEFAULT_SCENARIOS_FILE,
    show_default=True,
)
@click.option("--images", type=click.IntRange(1, 10_000), default=500, show_default=True)
@click.option("--batch", type=click.IntRange(1, 256), default=50, show_default=True)
@click.option(
    "--encoding", type=click.Choice(["json", "base64", "jpeg"]), default="json", show_default=True
)
@click.option("--launcher", type=click.Choice(LAUNCHERS), default="process", show_default=True)
@click.option("--data", "data_dir", type=str, default=None, help=DATA_HELP)
def verify(targets: tuple[str, ...], scenarios_file: Path, images: int, batch: int,
           encoding: str, launcher: str, data_dir: str | None) -> None:  # fmt: skip
    """Check every target (default: all in the file) answers as the in-process model does."""
    from loadtests.verify import verify as run_verify

    spec = _load(scenarios_file)
    names = list(targets) or list(spec.targets)
    unknown = [n for n in names if n not in spec.targets]
    if unknown:
        raise click.UsageError(f"unknown target(s) {unknown}; defined: {', '.join(spec.targets)}")
    _interrupt_once()
    verdicts = run_verify(spec, names, data_dir or os.environ.get("SERVECAP_CIFAR10_DIR"),
                          images, batch, encoding, launcher, echo=click.echo)  # fmt: skip
    failed = [v.target for v in verdicts if not v.ok]
    if failed:
        click.echo(f"servecap: not verified: {', '.join(failed)}", err=True)
        sys.exit(1)
    click.echo(f"servecap: all {len(verdicts)} target(s) agree with the in-process model")


POSITIVE = click.FloatRange(min=0, min_open=True)


def _results_slo(results_dir: Path, slo_p99_ms: float | None) -> float:
    """--slo-p99-ms, else the scenario's slo.p99_ms, else the capacity default (500 ms)."""
    from analysis.capacity import DEFAULT_SLO_P99_MS
    from analysis.report import load_results

    if slo_p99_ms is not None:
        return slo_p99_ms
    try:
        return load_results(results_dir).slo_p99_ms or DEFAULT_SLO_P99_MS
    except FileNotFoundError as err:
        raise click.ClickException(str(err)) from None


@main.command()
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
    default=0.3,
    show_default=True,
    help="share of each replica's capacity kept free at peak",
)
@click.option("--max-error-rate", type=click.FloatRange(0, 1), default=0.01, show_default=True)
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
def plan(results_dir: Path, slo_p99_ms: float | None, peak_rps: float | None,
         daily_requests: float | None, peak_factor: float | None, headroom: float,
         max_error_rate: float, gpus_per_replica: float, host_cores: float | None,
         host_mem_gb: float | None) -> None:  # fmt: skip
    """Replicas, cores and memory for a peak load, from a results folder's capacity."""
    from analysis.report import load_results
    from analysis.sizing import format_plan, plan_targets

    if peak_rps is not None and (daily_requests is not None or peak_factor is not None):
        raise click.UsageError("give --peak-rps or --daily-requests/--peak-factor, not both")
    if peak_rps is None and (daily_requests is None or peak_factor is None):
        raise click.UsageError("give --peak-rps, or --daily-requests with --peak-factor")
    slo = _results_slo(results_dir, slo_p99_ms)
    results = load_results(results_dir)
    plans = plan_targets(results.summary, slo, peak_rps, daily_requests=daily_requests,
                         peak_factor=peak_factor, headroom=headroom,
                         max_error_rate=max_error_rate, gpus_per_replica=gpus_per_replica,
                         think_time_s=results.think_time_s, host_cores=host_cores,
                         host_mem_gb=host_mem_gb)  # fmt: skip
    click.echo(format_plan(plans))
    if not any(p.plan for p in plans):
        sys.exit(1)


@main.command()
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
@click.option("--daily-requests", type=POSITIVE, default=100e6, show_default=True)
@click.option("--peak-factor", type=click.FloatRange(min=1), default=3.0, show_default=True)
@click.option(
    "--headroom", type=click.FloatRange(0, 1, max_open=True), default=0.3, show_default=True
)
@click.option("--show-code", is_flag=True, help="keep the notebooks' code in the HTML")
def report(results_dirs: tuple[Path, ...], out_dir: Path | None, slo_p99_ms: float | None,
           daily_requests: float, peak_factor: float, headroom: float,
           show_code: bool) -> None:  # fmt: skip
    """HTML capacity reports: one per results folder, and a comparison of all of them."""
    from analysis.report import ReportError, build_report

    slo = _results_slo(results_dirs[0], slo_p99_ms)
    click.echo(f"servecap: executing the report notebooks (SLO p99 <= {slo:g} ms)...")
    try:
        paths = build_report(results_dirs, out_dir, slo_p99_ms=slo,
                             daily_requests=daily_requests, peak_factor=peak_factor,
                             headroom=headroom, exclude_input=not show_code)  # fmt: skip
    except (FileNotFoundError, ReportError) as err:
        raise click.ClickException(str(err)) from None
    for path in paths:
        click.echo(f"report: {path}")


@main.group()
def model() -> None:
    """Train and export the paper's CIFAR-10 CNN."""


@model.command()
@click.option("--data", "data_dir", type=str, default=None, help=DATA_HELP)
@click.option(
    "--train-limit",
    type=int,
    default=20_000,
    show_default=True,
    help="training images (the quick default: a subset, about 3 minutes on 2 cores)",
)
@click.option("--test-limit", type=int, default=None, help="test images [default: all 10,000]")
@click.option("--epochs", type=int, default=2, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--full", is_flag=True, help="all 50,000 training images and 30 epochs")
@click.option(
    "--model-base",
    type=click.Path(path_type=Path),
    default=Path("artifacts/models/cifar10_cnn"),
    show_default=True,
)
@click.option("--seed", type=int, default=0, show_default=True)
def train(data_dir: str | None, train_limit: int, test_limit: int | None, epochs: int,
          batch_size: int, full: bool, model_base: Path, seed: int) -> None:  # fmt: skip
    """Train the CNN, report test accuracy, export a SavedModel and a .keras file."""
    from targets.common.dataset import DatasetError
    from targets.common.model import train_and_export

    if full:
        train_limit, epochs = 50_000, max(epochs, 30)
    click.echo(f"training on {train_limit} images for {epochs} epoch(s)...")
    try:
        result, exported = train_and_export(data_dir, train_limit, test_limit, epochs,
                                            batch_size, model_base, seed)  # fmt: skip
    except DatasetError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"test accuracy: {result.test_accuracy:.4f} (loss {result.test_loss:.3f}) "
               f"after {result.duration_s:.0f} s")  # fmt: skip
    click.echo(f"SavedModel: {exported.version_dir}\nKeras file: {exported.keras_path}")


@main.group()
def images() -> None:
    """Container images of the targets (for `servecap run --launcher docker`)."""


@images.command("build")
@click.argument("targets", nargs=-1)
@click.option(
    "--offline",
    is_flag=True,
    help="no registry: debootstrap base image + local wheelhouse (needs root)",
)
@click.option("--tag", default="latest", show_default=True, help="tag of the servecap images")
@click.option(
    "--base-image",
    default=None,
    help="BASE_IMAGE [default: python:3.11-slim-bookworm, offline servecap/base]",
)
@click.option("--no-cache", is_flag=True, help="rebuild every layer")
@click.option(
    "--model",
    "model_dir",
    default=None,
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="also build the model-in-image variants (<image>:<tag>-model) of TARGETS",
)
def images_build(targets: tuple[str, ...], offline: bool, tag: str, base_image: str | None,
                 no_cache: bool, model_dir: Path | None) -> None:  # fmt: skip
    """Build the runtime image and the images of TARGETS (kinds or image names; all by
    default), printing each step's time and the image sizes."""
    from targets.docker import images as docker_images

    try:
        report = docker_images.build(targets, offline=offline, tag=tag, base_image=base_image,
                                     no_cache=no_cache, echo=click.echo)  # fmt: skip
        model_refs = (docker_images.build_model_images(targets, model_dir, tag, click.echo)
                      if model_dir else [])  # fmt: skip
    except docker_images.BuildError as err:
        raise click.ClickException(str(err)) from None
    for line in report.lines():
        click.echo(line)
    for ref in model_refs:
        click.echo(f"model-in-image: {ref}")


@main.command()
def clean() -> None:
    """Remove every container and network labelled io.servecap.managed=true (what a killed
    `servecap run --launcher docker` leaves behind)."""
    from targets.launchers import LaunchError
    from targets.launchers.docker import clean as docker_clean

    try:
        removed = docker_clean()
    except LaunchError as err:
        raise click.ClickException(str(err)) from None
    for item in removed:
        click.echo(f"removed {item}")
    click.echo(f"servecap clean: {len(removed)} removed")


if __name__ == "__main__":
    main()
