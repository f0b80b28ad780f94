"""Runs of servecap that tests start: the CLI's command line, scenario files, the ``sleepy``
test kind's scenarios, and what the shared smoke run (``smoke_run`` in conftest) left."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SLEEPY_KINDS = REPO / "tests" / "fixtures" / "kinds"
"""``SERVECAP_KIND_PATH`` for the ``sleepy`` test kind (a server with a known service time)."""


def servecap(*args: str) -> list[str]:
    """The command line of ``servecap ARGS`` run from this checkout."""
    return [sys.executable, "-m", "loadtests.cli", *args]


def write_scenarios(path: Path, model: Path) -> Path:
    """The repository's scenarios.yaml at ``path``, every target pointed at ``model`` and a
    free port."""
    import yaml

    from tests.ports import free_port

    data = yaml.safe_load((REPO / "scenarios.yaml").read_text())
    for target in data["targets"].values():
        target["model_path"] = str(model)
        target["port"] = free_port()
    path.write_text(yaml.safe_dump(data))
    return path


@dataclass(frozen=True)
class SmokeRun:
    """``servecap run smoke`` (the repository's scenario, the FastAPI target, the tiny real
    model), run once through the CLI with its output to a file."""

    scenarios: Path
    out: Path
    returncode: int
    output: str
    """What it printed (not a terminal: plain lines)."""


def sleepy_scenarios(port: int, load: dict[str, Any], **target: Any) -> dict[str, Any]:
    """A scenario file's content: scenario ``s`` loading the sleepy target ``svc``."""
    return {"targets": {"svc": {"kind": "sleepy", "port": port, **target}},
            "scenarios": {"s": {"targets": ["svc"], "load": load}}}  # fmt: skip
