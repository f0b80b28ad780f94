"""Runs with faults, shared by the fault-injection test modules (split so that xdist runs
them side by side)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from loadtests.orchestrator import RunOptions, run
from loadtests.spec import parse_scenarios
from tests.ports import free_port


def run_with_faults(
    tmp_path: Path, cifar_dir: Path, target: dict[str, Any], faults: list[dict[str, Any]],
    load: dict[str, Any],
) -> tuple[Any, dict[str, Any], list[str]]:  # fmt: skip
    """Run scenario ``s`` on target ``t`` with these faults; outcome, summary entry, lines."""
    scenario = {"targets": ["t"], "faults": faults, "load": load, "slo": {"p99_ms": 2000}}
    spec = parse_scenarios({"targets": {"t": {**target, "port": free_port()}},
                            "scenarios": {"s": scenario}})  # fmt: skip
    lines: list[str] = []
    out = tmp_path / "out"
    outcome = run(RunOptions("s", spec, tmp_path / "s.yaml", out, data_dir=str(cifar_dir)),
                  echo=lines.append)  # fmt: skip
    (entry,) = json.loads((out / "summary.json").read_text())["runs"]
    return outcome, entry, lines


def two_releases(tiny_model: Path, tmp_path: Path) -> Path:
    """A model base holding versions 1 and 2 (the "new" release: the same weights)."""
    base = tmp_path / "models"
    shutil.copytree(tiny_model / "1", base / "1")
    shutil.copytree(tiny_model / "1", base / "2")
    return base
