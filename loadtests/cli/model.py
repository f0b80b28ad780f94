"""``servecap model``: train and export the paper's CIFAR-10 CNN."""

from __future__ import annotations

from pathlib import Path

import click

from loadtests.cli.common import data_option
from targets.common.settings import DEFAULT_MODEL_PATH


@click.group()
def model() -> None:
    """Train and export the paper's CIFAR-10 CNN."""


@model.command()
@data_option
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
    default=DEFAULT_MODEL_PATH,
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


COMMANDS = (model,)
