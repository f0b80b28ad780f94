"""Commands that drive targets: ``run``, ``worker``, ``scenarios``, ``verify``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import get_args

import click

from loadtests.cli.common import (
    data_option,
    interrupt_once,
    load_spec,
    resolve_data,
    scenarios_option,
    target_names,
)
from loadtests.spec import SpecError
from targets.inputs import Encoding
from targets.launchers import LAUNCHERS

launcher_option = click.option(
    "--launcher", type=click.Choice(LAUNCHERS), default="process", show_default=True
)


@click.command()
@click.argument("scenario", default="quickstart")
@scenarios_option
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    help="results folder, new or empty [default: results/<scenario>-<timestamp>]",
)
@launcher_option
@data_option
@click.option("--seed", type=int, default=0, show_default=True, help="image selection seed")
@click.option(
    "--junit",
    "junit_file",
    type=click.Path(path_type=Path),
    help="write the SLO gates as JUnit XML here",
)
@click.option(
    "--repeat",
    type=click.IntRange(1, 100),
    default=1,
    show_default=True,
    help="run the scenario N times (run-1..N) and report the run-to-run spread",
)
@click.option(
    "--compose-override",
    "compose_overrides",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="docker launcher: also this docker-compose.yml override (`servecap plan --compose`): "
    "its scale, cpus and mem_limit apply",
)
def run(scenario: str, scenarios_file: Path, out_dir: Path | None, launcher: str,
        data_dir: str | None, seed: int, junit_file: Path | None,
        repeat: int, compose_overrides: tuple[Path, ...]) -> None:  # fmt: skip
    """Run SCENARIO from the scenario file and write a results folder.

    Exit status: 0 all good; 1 a target failed; 3 an SLO gate (the scenario's slo:) failed;
    130 interrupted.
    """
    from loadtests.gates import junit_xml
    from loadtests.orchestrator import PreflightError, RunOptions
    from loadtests.orchestrator import run as run_scenario

    if compose_overrides and launcher != "docker":
        raise click.UsageError("--compose-override applies to --launcher docker")
    spec = load_spec(scenarios_file)
    try:
        sc = spec.scenario(scenario)
    except SpecError as err:
        raise click.UsageError(str(err)) from None
    interrupt_once()
    if repeat > 1:
        from loadtests.repeats import run_repeated

        options = RunOptions(scenario, spec, scenarios_file, out_dir, launcher,
                             resolve_data(data_dir), seed, compose_overrides)  # fmt: skip
        try:
            outcome = run_repeated(options, repeat, echo=click.echo)
        except PreflightError as err:
            raise click.ClickException(str(err)) from None
    else:
        options = RunOptions(scenario, spec, scenarios_file, out_dir, launcher,
                             resolve_data(data_dir), seed, compose_overrides)  # fmt: skip
        try:
            outcome = run_scenario(options, echo=click.echo)
        except PreflightError as err:
            raise click.ClickException(str(err)) from None
    click.echo(f"results: {outcome.out_dir}")
    if outcome.interrupted:
        click.echo("servecap: interrupted; partial results kept", err=True)
        sys.exit(130)
    for r in outcome.gates:
        click.echo(f"SLO {'pass' if r.passed else 'FAIL'}: {r.message}")
    if junit_file is not None:
        if outcome.gates:
            junit_file.write_text(junit_xml(outcome.gates, f"servecap.{scenario}"), "utf-8")
        else:
            why = "find-max runs are not gated" if sc.load.mode == "find-max" else "it has no slo:"
            click.echo(f"servecap: scenario '{scenario}' has no SLO gates to write ({why})",
                       err=True)  # fmt: skip
    if outcome.failures:
        for failure in outcome.failures:
            click.echo(f"servecap: FAILED {failure}", err=True)
        sys.exit(1)
    if not outcome.gates_passed:
        sys.exit(3)


@click.command()
@scenarios_option
def scenarios(scenarios_file: Path) -> None:
    """Validate the scenario file and list its scenarios and targets."""
    spec = load_spec(scenarios_file)
    click.echo(f"{scenarios_file}: valid")
    for name, sc in spec.scenarios.items():
        click.echo(f"  {name:<14} {sc.load.duration_s:>6.0f} s  targets: {', '.join(sc.targets)}"
                   f"  {sc.description}")  # fmt: skip


@click.command()
@click.option("--scenario", required=True, help="the scenario the master is running")
@click.option("--target", required=True, callback=target_names,
              help="the target the master is loading")  # fmt: skip
@click.option("--master-host", required=True, help="address of the host running `servecap run`")
@click.option("--master-port", type=int, default=None,
              help="[default: the scenario's load.master_port]")  # fmt: skip
@click.option(
    "--host",
    "target_url",
    default=None,
    help="the target's URL as this host reaches it [default: the scenario's]",
)
@scenarios_option
@data_option
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

    spec = load_spec(scenarios_file)
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
    with tempfile.TemporaryDirectory(prefix="servecap-worker-") as tmp:
        load = load_config_for(target, spec.targets[target], sc, resolve_data(data_dir), Path(tmp))
        if target_url:
            endpoint = load.endpoint.model_copy(update={"base_url": target_url.rstrip("/")})
            load = load.model_copy(update={"endpoint": endpoint})
        path = Path(tmp) / "load_config.json"
        load.write(path)
        port = master_port or sc.load.master_port
        click.echo(f"servecap worker: {target} at {load.base_url}, master {master_host}:{port}")
        code = run_worker(path, master_host, port)
    sys.exit(code)


@click.command()
@click.argument("targets", nargs=-1, callback=target_names)
@scenarios_option
@click.option("--images", type=click.IntRange(1, 10_000), default=500, show_default=True)
@click.option("--batch", type=click.IntRange(1, 256), default=50, show_default=True)
@click.option(
    "--encoding", type=click.Choice(list(get_args(Encoding))), default="json", show_default=True
)
@launcher_option
@data_option
@click.option("--dataset", type=click.Path(exists=True, file_okay=False), default=None,
              help="a folder of test images, one subfolder per class (or test/<class>/), "
                   "resized to each target's input; default CIFAR-10 (--data)")  # fmt: skip
@click.option("--classes", default=None,
              help="the dataset's class names in label order, comma-separated (default: its "
                   "folders, sorted)")  # fmt: skip
def verify(targets: tuple[str, ...], scenarios_file: Path, images: int, batch: int,
           encoding: str, launcher: str, data_dir: str | None, dataset: str | None,
           classes: str | None) -> None:  # fmt: skip
    """Check every target (default: all in the file) answers as the in-process model does.

    A target servecap does not start (kind external, container) is compared with its
    reference_model."""
    from loadtests.verify import verify as run_verify
    from targets.common.dataset import CLASSES

    spec = load_spec(scenarios_file)
    names = list(targets) or list(spec.targets)
    unknown = [n for n in names if n not in spec.targets]
    if unknown:
        raise click.UsageError(f"unknown target(s) {unknown}; defined: {', '.join(spec.targets)}")
    interrupt_once()
    names_given = tuple(c.strip() for c in classes.split(",")) if classes else None
    if dataset is None and names_given is None:
        class_names: tuple[str, ...] | None = CLASSES
    else:
        class_names = names_given
    folder = dataset if dataset is not None else resolve_data(data_dir)
    verdicts = run_verify(spec, names, folder, images, batch, encoding, launcher,
                          echo=click.echo, named=bool(targets),
                          classes=class_names)  # fmt: skip
    failed = [v.target for v in verdicts if not v.ok]
    if failed:
        click.echo(f"servecap: not verified: {', '.join(failed)}", err=True)
        sys.exit(1)
    tried = [v for v in verdicts if v.skipped is None]
    skipped = f" ({len(verdicts) - len(tried)} skipped)" if len(tried) < len(verdicts) else ""
    click.echo(f"servecap: all {len(tried)} target(s) agree with the in-process model{skipped}")


COMMANDS = (run, scenarios, worker, verify)
