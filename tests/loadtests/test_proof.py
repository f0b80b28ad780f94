"""plan --verify: the planned replicas and one fewer, run as containers at the planned peak.

Checks what the proof does (the replicas, their limits, the runs, the verdict and its file),
not how fast this host is: whether the SLO held is a measurement, recorded in the notes.
"""

from __future__ import annotations

import json
from pathlib import Path

from analysis.sizing import plan_targets
from loadtests.orchestrator import RunOptions, run
from loadtests.proof import PROOF_FILE, verify_plan
from loadtests.spec import parse_scenarios
from tests.machine import FASTAPI_IMAGE, needs_docker
from tests.ports import free_port

pytestmark = needs_docker(FASTAPI_IMAGE)


def test_a_scaled_down_plan_is_run_at_n_and_n_minus_one_replicas(
    readable_model: Path,
    cifar_dir: Path,
    tmp_path: Path,
    no_leftovers: None,
) -> None:
    spec = parse_scenarios({
        "targets": {"half": {"kind": "fastapi", "port": free_port(), "cpus": 0.5,
                             "memory_limit_mb": 1024, "model_path": str(readable_model)}},
        "scenarios": {"measure": {"targets": ["half"], "load": {
            "settle_s": 1, "warmup_requests": 10,
            "stages": [{"users": 1, "duration_s": 5}, {"users": 4, "duration_s": 6}]}}},
    })  # fmt: skip
    measured = tmp_path / "measured"
    outcome = run(RunOptions("measure", spec, tmp_path / "s.yaml", measured, launcher="docker",
                             data_dir=str(cifar_dir)), echo=lambda _: None)  # fmt: skip
    assert outcome.ok, outcome.failures
    summary = json.loads((measured / "summary.json").read_text())
    (first,) = plan_targets(summary, 1000.0, 1.0)
    capacity = first.capacity.capacity_rps
    assert capacity is not None and capacity > 0
    # a peak that needs two replicas at 30% headroom: 1.2 x capacity (2 x 0.7 = 1.4 > 1.2)
    (tp,) = plan_targets(summary, 1000.0, 1.2 * capacity)
    assert tp.plan is not None and tp.plan.replicas == 2
    lines: list[str] = []
    proof = verify_plan(measured, tp, tmp_path / "proof", duration_s=8, data_dir=str(cifar_dir),
                        echo=lines.append)  # fmt: skip
    assert [t.replicas for t in proof.trials] == [2, 1]
    assert proof.cpus_per_replica == 0.5  # what the measurement ran with
    assert any("scaled-down plan: 0.5 CPU per replica" in n for n in proof.notes)
    for trial in proof.trials:
        assert trial.status == "ok", trial.note
        assert trial.p99_ms is not None and trial.throughput_rps is not None
        assert trial.held is not None
        (entry,) = json.loads((trial.out_dir / "summary.json").read_text())["runs"]
        assert entry["launcher"] == "docker"
        logs = [p.name for p in (trial.out_dir / "half" / "logs").glob("*fastapi_*.log")]
        assert len(logs) == trial.replicas  # the replicas that served
    saved = json.loads((tmp_path / "proof" / PROOF_FILE).read_text())
    assert saved["verdict"] == proof.verdict and len(saved["trials"]) == 2
    assert any("replica(s):" in line and "p99" in line for line in lines)
