"""SLO gates: what passes, what fails and by how much, JUnit output, and the CLI's exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtests.gates import check_run, check_summary, junit_xml
from loadtests.spec import SLO
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]


def run_entry(**overall: Any) -> dict[str, Any]:
    stages = [{"index": 0, "p99_ms": 50.0, "error_rate": 0.0, "rps": 100.0},
              {"index": 1, "p99_ms": 400.0, "error_rate": 0.05, "rps": 150.0}]  # fmt: skip
    return {"target": "api", "status": "ok", "stages": stages,
            "overall": {"p99_ms": 300.0, "error_rate": 0.02, "rps": 120.0, **overall}}  # fmt: skip


def test_overall_scope_reports_breach_size() -> None:
    results = check_run(run_entry(), SLO(p99_ms=200, max_error_rate=0.05, min_rps=100))
    by_objective = {r.objective: r for r in results}
    assert not by_objective["p99_ms"].passed
    assert "p99_ms 300 breaks <= 200 (by 50%)" in by_objective["p99_ms"].message
    assert by_objective["max_error_rate"].passed and by_objective["min_rps"].passed


def test_every_and_last_stage_scopes() -> None:
    every = check_run(run_entry(), SLO(p99_ms=200, scope="every-stage"))
    assert [(r.scope, r.passed) for r in every] == [("stage 1", True), ("stage 2", False)]
    last = check_run(run_entry(), SLO(min_rps=200, scope="last-stage"))
    assert [(r.scope, r.passed) for r in last] == [("stage 2", False)]
    assert "rps 150 breaks >= 200 (by 25%)" in last[0].message


def test_failed_run_is_one_error_and_missing_figures_fail() -> None:
    slo = SLO(p99_ms=1, p95_ms=1, max_error_rate=0.1)
    (failed,) = check_run({"target": "t", "status": "failed", "error": "boom"}, slo)
    assert failed.error and not failed.passed and "run failed: boom" in failed.message
    root = ET.fromstring(junit_xml([failed], "servecap.s"))
    suite = root.find("testsuite")
    assert suite is not None and (suite.get("errors"), suite.get("failures")) == ("1", "0")
    assert root.find(".//error") is not None and root.find(".//failure") is None
    empty = check_run(run_entry(p99_ms=None), SLO(p99_ms=100))
    assert not empty[0].passed and "no p99_ms" in empty[0].message


def test_upper_bound_judge_needs_the_data_to_show_the_objective_is_met() -> None:
    sure = run_entry(p99_ms=90.0)
    sure["overall"]["p99_ci_ms"] = [85.0, 97.0]
    unsure = run_entry(p99_ms=90.0)
    unsure["overall"]["p99_ci_ms"] = [80.0, 130.0]
    few = run_entry(p99_ms=90.0)
    few["overall"]["p99_ci_ms"] = None
    few["overall"]["p99_ci_note"] = "p99 rests on 50 successful requests; a 95% interval needs 368"
    slo = SLO(p99_ms=100, judge="upper-bound")
    assert [check_run(r, slo)[0].passed for r in (sure, unsure, few)] == [True, False, False]
    assert "needs 368" in check_run(few, slo)[0].message
    assert check_run(unsure, SLO(p99_ms=100))[0].passed  # the point value alone passes


def test_junit_xml() -> None:
    results = check_summary({"runs": [run_entry()]}, SLO(p99_ms=200, max_error_rate=0.05))
    root = ET.fromstring(junit_xml(results, "servecap.smoke"))
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "1"
    failures = root.findall(".//failure")
    assert len(failures) == 1 and "p99_ms 300 breaks" in (failures[0].get("message") or "")


@pytest.mark.integration
def test_cli_exits_3_on_breach_and_writes_junit(
    sleepy_kind: Path, cifar_dir: Path, tmp_path: Path
) -> None:
    data = {
        "targets": {"api": {"kind": "sleepy", "port": free_port()}},
        "scenarios": {"gated": {"targets": ["api"],
                                "slo": {"p99_ms": 0.01, "max_error_rate": 0.01},
                                "load": {"warmup_requests": 2, "settle_s": 1, "image_pool": 8,
                                         "stages": [{"users": 1, "duration_s": 4}]}}},
    }  # fmt: skip
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump(data))
    env = {k: v for k, v in os.environ.items() if k != "LOCUST_SKIP_MONKEY_PATCH"}
    junit = tmp_path / "gates.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "loadtests.cli", "run", "gated", "--scenarios", str(spec_file),
         "--out", str(tmp_path / "out"), "--data", str(cifar_dir), "--junit", str(junit)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "SLO FAIL: api overall: p99_ms" in proc.stdout
    assert "SLO pass: api overall: error_rate 0 <= 0.01" in proc.stdout
    root = ET.fromstring(junit.read_text())
    assert root.get("failures") == "1" and root.get("tests") == "2"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["gates"]["passed"] is False and len(summary["gates"]["results"]) == 2
    assert summary["runs"][0]["overall"]["p99_ms"] > 0.01
