"""Bad input to the harness: every problem named, with its fix, before anything starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from loadtests.cli import main
from loadtests.orchestrator import PreflightError, RunOptions, run
from loadtests.spec import parse_scenarios

REPO = Path(__file__).resolve().parents[2]


def scenario_data(model: Path, port: int) -> dict[str, object]:
    return {
        "targets": {
            "a": {"kind": "fastapi", "port": port, "model_path": str(model)},
            "b": {"kind": "flask", "port": port + 10, "model_path": str(model / "missing")},
        },
        "scenarios": {"s": {"targets": ["a", "b"],
                            "load": {"stages": [{"users": 1, "duration_s": 5}]}}},
    }  # fmt: skip


def test_all_problems_listed_and_nothing_started(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        spec = parse_scenarios(scenario_data(model, port))
        out = tmp_path / "out"
        with pytest.raises(PreflightError) as info:
            run(RunOptions("s", spec, tmp_path / "s.yaml", out, data_dir=str(tmp_path / "nodata")),
                echo=lambda _: None)  # fmt: skip
    msg = str(info.value)
    assert "nothing was started" in msg
    assert f"target 'a': port {port} on 127.0.0.1 is already in use" in msg
    assert "set targets.a.port" in msg
    assert "target 'b': model not found" in msg and "servecap model train" in msg
    assert "dataset:" in msg and "nodata" in msg
    assert not out.exists()  # no results folder for a run that never started


def test_cli_reports_bad_scenario_file_and_unknown_scenario(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    data = scenario_data(tmp_path, 9000)
    data["scenarios"]["s"]["load"]["stages"][0]["user"] = 2  # type: ignore[index]
    bad.write_text(yaml.safe_dump(data))
    # in process: the command line's own code, exit codes and messages (a subprocess would
    # only add the interpreter's start; `servecap run` as a process: the smoke run)
    result = CliRunner().invoke(main, ["run", "s", "--scenarios", str(bad)])
    assert result.exit_code == 1
    assert "scenarios.s.load.stages.0: unknown key 'user' (did you mean 'users'?)" in result.stderr
    result = CliRunner().invoke(main, ["run", "nope"])
    assert result.exit_code == 2 and "no scenario 'nope'" in result.stderr
