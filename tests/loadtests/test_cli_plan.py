"""``servecap plan`` on a results folder: the table, the costs and the deployable files."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from analysis.contract import SCENARIO_FILE, SUMMARY_FILE


def results_folder(root: Path, model: Path) -> Path:
    stage = {"users": 4, "duration_s": 10, "requests": 1000, "measured_requests": 1000,
             "rps": 100.0, "goodput_rps": 100.0, "p50_ms": 5.0, "p95_ms": 9.0, "p99_ms": 12.0,
             "error_rate": 0.0, "reject_rate": 0.0, "cpu_pct": 80.0, "mem_mb": 300.0,
             "mem_max_mb": 320.0}  # fmt: skip
    root.mkdir()
    runs = [{"target": "api", "kind": "fastapi", "status": "ok",
             "stages": [{**stage, "index": 0}]}]  # fmt: skip
    (root / SUMMARY_FILE).write_text(json.dumps({"scenario": "s", "runs": runs}))
    targets = {"api": {"kind": "fastapi", "port": 8101, "model_path": str(model)}}
    (root / SCENARIO_FILE).write_text(yaml.safe_dump({"scenario": "s", "targets": targets}))
    return root


def test_plan_prints_costs_and_writes_manifests_and_an_override(
    tiny_model: Path, tmp_path: Path
) -> None:
    from loadtests.cli import main

    results = results_folder(tmp_path / "results", tiny_model)
    args = ["plan", str(results), "--slo-p99-ms", "100", "--peak-rps", "150",
            "--price-core-hour", "0.04", "--price-gb-hour", "0.005",
            "--kubernetes", str(tmp_path / "k8s"),
            "--compose", str(tmp_path / "plan.yml")]  # fmt: skip
    refused = CliRunner().invoke(main, args)  # a closed-loop capacity: no plan without consent
    assert refused.exit_code == 1 and "--allow-closed-loop" in refused.output
    args.append("--allow-closed-loop")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "OPTIMISTIC" in result.output
    # 100 rps per replica at 30% headroom: 70 usable, 150 rps -> 3 replicas of 0.8 cores
    assert "Replicas: ceil(150.0 / 70.0) = 3" in result.output
    assert "Per hour at peak: 2.40 cores x 0.04" in result.output
    assert "per million at capacity" in result.output
    docs = list(yaml.safe_load_all((tmp_path / "k8s" / "api.yaml").read_text()))
    assert docs[0]["kind"] == "Deployment" and docs[0]["spec"]["replicas"] == 3
    override = yaml.safe_load((tmp_path / "plan.yml").read_text())
    assert override["services"]["fastapi"]["scale"] == 3
    bad = CliRunner().invoke(main, [*args[:6], "--price-core-hour", "-1"])
    assert bad.exit_code != 0 and "price-core-hour" in bad.output


def test_a_repeat_folder_is_planned_from_its_lowest_run_with_its_runs_targets(
    tiny_model: Path, tmp_path: Path
) -> None:
    """`servecap run --repeat N` writes run-1..run-N: the plan sizes from the lowest capacity,
    and what it reads of the run itself (targets, CPU limits: the artefacts, --verify) comes
    from the first run's folder, not from the repeat folder above them."""
    from loadtests.cli import main

    root = tmp_path / "repeats"
    root.mkdir()
    for n, p99_ms in ((1, 12.0), (2, 150.0)):  # run 2 breaks a 100 ms SLO at 100 rps
        run = results_folder(root / f"run-{n}", tiny_model)
        summary = json.loads((run / SUMMARY_FILE).read_text())
        summary["runs"][0]["stages"][0]["p99_ms"] = p99_ms
        summary["runs"][0]["stages"].insert(0, {**summary["runs"][0]["stages"][0], "index": 0,
                                                "users": 2, "rps": 50.0, "goodput_rps": 50.0,
                                                "p99_ms": 10.0})  # fmt: skip
        summary["runs"][0]["stages"][1]["index"] = 1
        (run / SUMMARY_FILE).write_text(json.dumps(summary))
        scenario = yaml.safe_load((run / SCENARIO_FILE).read_text())
        scenario["targets"]["api"].update({"cpus": 0.5, "cpuset": "0", "cpu_period_ms": 10})
        (run / SCENARIO_FILE).write_text(yaml.safe_dump(scenario))
    args = ["plan", str(root), "--slo-p99-ms", "100", "--peak-rps", "150", "--allow-closed-loop",
            "--compose", str(tmp_path / "plan.yml")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "2 repeats; each target sized from its run with the lowest capacity" in result.output
    # run 2's capacity (82.1 rps between its 50 and 100 rps stages; run 1 held 100) x 0.7
    assert "82.1 requests/s per replica" in result.output
    assert "Replicas: ceil(150.0 / 57.5) = 3" in result.output
    assert "over a 10 ms period" in result.output  # the runs' CPU limit, read from run-1
    service = yaml.safe_load((tmp_path / "plan.yml").read_text())["services"]["fastapi"]
    assert service["scale"] == 3 and service["cpu_period"] == "10000us"
