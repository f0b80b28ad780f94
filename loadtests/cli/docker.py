"""Container commands: ``images build`` and ``clean``."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
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


@click.command()
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


COMMANDS = (images, clean)
