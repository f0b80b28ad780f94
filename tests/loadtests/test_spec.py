"""Scenario file validation: good files load, bad ones name the key path and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtests.spec import SpecError, load_scenarios, parse_scenarios

REPO = Path(__file__).resolve().parents[2]


def minimal() -> dict[str, Any]:
    return {
        "targets": {"api": {"kind": "fastapi", "port": 8200}},
        "scenarios": {
            "s": {"targets": ["api"], "load": {"stages": [{"users": 2, "duration_s": 5}]}}
        },
    }


def error_of(data: Any) -> str:
    with pytest.raises(SpecError) as info:
        parse_scenarios(data, "f.yaml")
    return str(info.value)


def test_repository_scenarios_file_is_valid_and_has_required_scenarios() -> None:
    spec = load_scenarios(REPO / "scenarios.yaml")
    assert {"smoke", "quickstart"} <= set(spec.scenarios)
    assert spec.scenario("smoke").load.duration_s < 30
    quick = spec.scenario("quickstart")
    # the default path measures a capacity to plan from: open arrivals against an SLO
    assert quick.load.mode == "find-max" and quick.slo is not None and quick.slo.p99_ms
    assert quick.load.duration_s <= 12 * 60  # a bound; the search itself takes minutes
    assert spec.scenario("plan-proof").load.mode == "find-max"


def test_defaults_are_applied() -> None:
    spec = parse_scenarios(minimal())
    load = spec.scenario("s").load
    assert load.images_per_request == 1 and load.encoding == "json" and load.mode == "ramp"
    assert spec.targets["api"].host == "127.0.0.1"
    assert spec.targets["api"].base_url == "http://127.0.0.1:8200"


def test_unknown_key_names_path_and_suggests() -> None:
    data = minimal()
    data["scenarios"]["s"]["load"]["stages"][0]["userz"] = 3
    msg = error_of(data)
    assert "scenarios.s.load.stages.0" in msg
    assert "unknown key 'userz'" in msg and "did you mean 'users'" in msg


def test_wrong_type_and_range_give_path_and_value() -> None:
    data = minimal()
    data["scenarios"]["s"]["load"]["stages"][0]["users"] = 0
    data["targets"]["api"]["port"] = "http"
    msg = error_of(data)
    assert "scenarios.s.load.stages.0.users" in msg and "greater than or equal to 1" in msg
    assert "targets.api.port" in msg and "'http'" in msg


def test_missing_key_is_reported() -> None:
    data = minimal()
    del data["scenarios"]["s"]["load"]["stages"]
    assert "mode ramp needs stages" in error_of(data)
    del data["scenarios"]["s"]["load"]
    assert "scenarios.s.load: required key is missing" in error_of(data)


def test_unknown_target_reference() -> None:
    data = minimal()
    data["scenarios"]["s"]["targets"] = ["apj"]
    msg = error_of(data)
    assert "'apj', which is not defined" in msg and "did you mean 'api'" in msg


def test_unknown_kind_lists_allowed() -> None:
    data = minimal()
    data["targets"]["api"]["kind"] = "tornado"
    msg = error_of(data)
    assert "targets.api.kind" in msg and "fastapi" in msg and "tornado" in msg


def test_settle_longer_than_stage_is_refused() -> None:
    data = minimal()
    data["scenarios"]["s"]["load"]["settle_s"] = 10
    assert "settle_s (10.0) must be shorter than every stage" in error_of(data)


def test_unknown_scenario_name() -> None:
    spec = parse_scenarios(minimal())
    with pytest.raises(SpecError, match="no scenario 'x'; defined: s"):
        spec.scenario("x")


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not found"):
        load_scenarios(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_scenarios(bad)
    bad.write_text(yaml.safe_dump(["a list"]))
    with pytest.raises(SpecError, match="top level must be a mapping"):
        load_scenarios(bad)


def test_remote_workers() -> None:
    data = minimal()
    data["scenarios"]["s"]["load"]["remote_workers"] = 3
    load = parse_scenarios(data, "f.yaml").scenarios["s"].load
    assert load.generator_processes == 3 and load.master_port == 5557
    assert load.master_bind_host == "127.0.0.1"
    data["scenarios"]["s"]["load"]["workers"] = 2
    assert "remote_workers and workers do not mix" in error_of(data)
    data = minimal()
    data["scenarios"]["s"]["load"] = {"mode": "sequential", "remote_workers": 2}
    assert "runs in one generator process" in error_of(data)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("load", "find_max", "start_rps"), 1e9),
        (("load", "find_max", "max_rps"), 1e9),
        (("load", "max_in_flight"), 10**9),
        (("load", "warmup_requests"), 10**9),
        (("load", "request_timeout_s"), 1e9),
        (("slo", "min_rps"), 1e9),
    ],
)
def test_every_rate_and_count_has_an_upper_bound(path: tuple[str, ...], value: float) -> None:
    data = minimal()
    node = data["scenarios"]["s"]
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    msg = error_of(data)
    assert "scenarios.s." + ".".join(path) in msg and "less than or equal to" in msg


BAD_NAMES = ["../smoke-20240101-120000/fastapi", "/tmp/elsewhere", "api\nother: {kind: flask}",
             "Api", "api_2", "-api", "api-", "a" * 64, "", "a.b"]  # fmt: skip


@pytest.mark.parametrize("name", BAD_NAMES)
def test_target_and_scenario_names_must_be_dns_labels(name: str) -> None:
    data = minimal()
    data["targets"] = {name: data["targets"]["api"]}
    data["scenarios"]["s"]["targets"] = [name]
    msg = error_of(data)
    assert f"target name {name!r} is not a DNS-1123 label" in msg
    assert "lowercase letters, digits and '-'" in msg and "at most 63 characters" in msg
    data = minimal()
    data["scenarios"] = {name: data["scenarios"]["s"]}
    assert f"scenario name {name!r} is not a DNS-1123 label" in error_of(data)


def test_every_name_in_the_repository_file_is_a_dns_label() -> None:
    from targets.config import check_target_name

    spec = load_scenarios(REPO / "scenarios.yaml")
    for name in [*spec.targets, *spec.scenarios, "a" * 63, "0", "a-0-b"]:
        assert check_target_name(name) == name


@pytest.mark.parametrize(
    "argv",
    [["verify", "../x"], ["verify", "fastapi", "Bad Name"],
     ["worker", "--scenario", "smoke", "--target", "/tmp/x", "--master-host", "127.0.0.1"],
     ["plan", ".", "--peak-rps", "10", "--verify", "--verify-target", "a\nb"]],
)  # fmt: skip
def test_a_target_name_on_the_command_line_is_refused_with_the_rule(argv: list[str]) -> None:
    from click.testing import CliRunner

    from loadtests.cli import main

    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2, result.output
    assert "is not a DNS-1123 label" in result.output


def test_a_results_folder_with_a_bad_target_name_writes_no_artefact(tmp_path: Path) -> None:
    from loadtests.artefacts import resolved_targets
    from targets.deploy import DeployError

    (tmp_path / "scenario.yaml").write_text(
        yaml.safe_dump({"targets": {"../../elsewhere": {"kind": "fastapi"}}})
    )
    with pytest.raises(DeployError, match="'../../elsewhere' is not a DNS-1123 label"):
        resolved_targets(tmp_path)
