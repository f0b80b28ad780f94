"""What the command modules share: the scenario-file option, the dataset option, signals."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import FrameType

import click

from loadtests.spec import DEFAULT_SCENARIOS_FILE, ScenarioFile, SpecError, load_scenarios
from targets.config import check_target_name

DATA_HELP = (
    "CIFAR-10 image folder (<split>/<class>/*.jpg); "
    "default $SERVECAP_CIFAR10_DIR, else the Keras download"
)
POSITIVE = click.FloatRange(min=0, min_open=True)

scenarios_option = click.option(
    "--scenarios",
    "scenarios_file",
    type=click.Path(path_type=Path),
    default=DEFAULT_SCENARIOS_FILE,
    show_default=True,
    help="scenario file",
)
data_option = click.option("--data", "data_dir", type=str, default=None, help=DATA_HELP)


def target_names(
    ctx: click.Context, param: click.Parameter, value: str | tuple[str, ...] | None
) -> str | tuple[str, ...] | None:
    """Click callback of target-name arguments and options: each must be a valid name (a
    DNS-1123 label), refused with the rule before anything else."""
    for name in (value,) if isinstance(value, str) else value or ():
        try:
            check_target_name(name)
        except ValueError as err:
            raise click.BadParameter(str(err)) from None
    return value


def resolve_data(data_dir: str | None) -> str | None:
    """--data, else $SERVECAP_CIFAR10_DIR (None: the dataset module's own fallback)."""
    return data_dir or os.environ.get("SERVECAP_CIFAR10_DIR")


def load_spec(path: Path) -> ScenarioFile:
    try:
        return load_scenarios(path)
    except SpecError as err:
        raise click.ClickException(str(err)) from None


def interrupt_once() -> None:
    """SIGTERM/SIGHUP behave like Ctrl-C; a second signal during cleanup is ignored."""

    def handler(signum: int, frame: FrameType | None) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(
                sig, lambda *_: click.echo("servecap: stopping, please wait...", err=True)
            )
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


price_core_option = click.option(
    "--price-core-hour", type=click.FloatRange(min=0), default=0.0,
    help="price of one CPU core for an hour (costs in money, not core-hours)",
)  # fmt: skip
price_gb_option = click.option(
    "--price-gb-hour", type=click.FloatRange(min=0), default=0.0,
    help="price of 1 GB of memory for an hour",
)  # fmt: skip
