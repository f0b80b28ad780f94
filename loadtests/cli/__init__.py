"""The ``servecap`` command line: one module per command group.

=================  ===========================================================
module             commands
=================  ===========================================================
:mod:`.run`        ``run``, ``worker``, ``scenarios``, ``verify``
:mod:`.analyse`    ``plan``, ``report``
:mod:`.model`      ``model train``
:mod:`.docker`     ``images build``, ``clean``
=================  ===========================================================
"""

from __future__ import annotations

import click

from loadtests.cli import analyse, docker, model
from loadtests.cli import run as run_commands


@click.group()
@click.version_option(package_name="servecap")
def main() -> None:
    """servecap: load tests and capacity plans for deep-learning model serving."""


for group in (run_commands, analyse, model, docker):
    for command in group.COMMANDS:
        main.add_command(command)

__all__ = ["main"]
