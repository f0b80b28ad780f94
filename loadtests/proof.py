"""``servecap plan ... --verify``: run the plan, and one replica fewer, and see the SLO hold.

A plan assumes replicas scale linearly. This puts that to the test on real containers: the
planned replicas of a target (the Docker launcher's replicas sharing one port through
SO_REUSEPORT: the kernel balances connections, no extra hop) with each replica's planned CPU
and memory limits, driven at the planned peak by Poisson arrivals for ``duration_s``; then the
same with one replica fewer. The SLO is judged on each run's p99 (and error rate) over its
steady window: it should hold at N and break at N - 1, or the plan was too generous (or too
tight). Each run is a normal results folder under the plan's folder.

CPU and memory per replica are what the measurement ran with (the target's ``cpus`` and
``memory_limit_mb``) when it had limits, else the plan's: the CPU used at capacity and the
peak memory, / (1 - headroom). On a host with fewer cores than the plan's
replicas and the load generator need, the replicas compete for cores and the verdict is
pessimistic; the output says so. Scale the plan down instead (measure a target with ``cpus:
0.5``, plan a peak that needs 2-3 replicas).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from analysis.contract import write_json
from analysis.defaults import DEFAULT_MAX_ERROR_RATE
from analysis.sizing import TargetPlan
from loadtests.artefacts import resolved_targets
from loadtests.orchestrator import RunOptions, run
from loadtests.spec import ScenarioFile, parse_scenarios

Echo = Callable[[str], None]
DEFAULT_DURATION_S = 30.0
PROOF_FILE = "plan-verify.json"


@dataclass
class Trial:
    replicas: int
    out_dir: Path
    status: str = "not run"
    p99_ms: float | None = None
    throughput_rps: float | None = None
    error_rate: float | None = None
    held: bool | None = None
    """Whether p99 and the error rate stayed within the SLO (None: the run failed)."""
    note: str = ""


@dataclass
class Proof:
    target: str
    peak_rps: float
    slo_p99_ms: float
    max_error_rate: float
    cpus_per_replica: float | None
    memory_limit_mb: int | None
    trials: list[Trial] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        at_n = self.trials[0] if self.trials else None
        fewer = self.trials[1] if len(self.trials) > 1 else None
        if at_n is None or at_n.held is None:
            return "not verified: the planned replicas did not run"
        first = (f"the SLO held at {at_n.replicas} replica(s)" if at_n.held
                 else f"the SLO BROKE at the planned {at_n.replicas} replica(s)")  # fmt: skip
        if fewer is None:
            return first + " (one replica planned: nothing fewer to try)"
        if fewer.held is None:
            return first + f"; {fewer.replicas} replica(s) did not run"
        spare = f"it also held at {fewer.replicas}: the plan has a replica to spare"
        second = f"it broke at {fewer.replicas}" if not fewer.held else spare
        return f"{first}; {second}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "peak_rps": self.peak_rps, "slo_p99_ms": self.slo_p99_ms,
            "max_error_rate": self.max_error_rate, "cpus_per_replica": self.cpus_per_replica,
            "memory_limit_mb": self.memory_limit_mb, "verdict": self.verdict,
            "notes": self.notes,
            "trials": [{**t.__dict__, "out_dir": str(t.out_dir)} for t in self.trials],
        }  # fmt: skip


def limits_for(
    tp: TargetPlan, measured_cpus: float | None, measured_memory_mb: int | None
) -> tuple[float | None, int | None]:
    """CPU and memory limit per replica: what the measurement ran with, else the plan's
    (:class:`targets.deploy.Sizing`: CPU at capacity and peak memory, / (1 - headroom))."""
    from loadtests.artefacts import sizing_of

    p = tp.plan
    sizing = sizing_of(tp)
    assert p is not None and sizing is not None
    cpus = measured_cpus
    if cpus is None and p.cpu_cores_per_replica:
        cpus = round(p.cpu_cores_per_replica / (1 - p.headroom), 2)
    memory = measured_memory_mb
    if memory is None and sizing.mem_limit_mb is not None:
        memory = max(64, math.ceil(sizing.mem_limit_mb))
    return cpus, memory


def trial_spec(
    name: str, config: dict[str, Any], replicas: int, peak_rps: float, duration_s: float,
    slo_p99_ms: float, dataset: dict[str, Any],
) -> ScenarioFile:  # fmt: skip
    load = {"mode": "rate", "arrival": "poisson", "settle_s": min(5.0, duration_s / 4),
            "warmup_requests": 50, "stages": [{"rps": peak_rps, "duration_s": duration_s}],
            **dataset}  # fmt: skip
    return parse_scenarios({
        "targets": {name: {**config, "replicas": replicas}},
        "scenarios": {"verify": {"targets": [name], "load": load,
                                 "slo": {"p99_ms": slo_p99_ms}}},
    })  # fmt: skip


def verify_plan(
    results_dir: Path, tp: TargetPlan, out_root: Path, duration_s: float = DEFAULT_DURATION_S,
    data_dir: str | None = None, echo: Echo = print, max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
) -> Proof:  # fmt: skip
    """Run ``tp``'s planned replicas, then one fewer, at its peak (docker launcher)."""
    p = tp.plan
    name = str(tp.target)
    if p is None:
        raise ValueError(f"target '{name}' has no plan to verify: {tp.reason}")
    config = resolved_targets(results_dir)[name]
    cpus, memory = limits_for(tp, config.cpus, config.memory_limit_mb)
    doc = config.model_dump(mode="json", exclude_defaults=False)
    doc.update({"cpus": cpus, "memory_limit_mb": memory})
    slo = float(p.slo_p99_ms or 0) or 500.0
    proof = Proof(name, p.peak_rps, slo, max_error_rate, cpus, memory)
    if cpus is not None and cpus < 1:
        proof.notes.append(f"scaled-down plan: {cpus:g} CPU per replica")
    cores = psutil.cpu_count() or 1
    need = (cpus or 0) * p.replicas
    if need + 1 > cores:
        proof.notes.append(
            f"this host has {cores} cores; {p.replicas} replicas x {cpus:g} CPU and the load "
            "generator need more, so replicas compete for cores: the verdict is pessimistic"
        )
    for note in proof.notes:
        echo(f"[verify {name}] note: {note}")
    dataset = {k: v for k, v in _dataset(results_dir).items() if v is not None}
    for replicas in (p.replicas, p.replicas - 1):
        if replicas < 1:
            break
        trial = Trial(replicas, out_root / f"{name}-{replicas}-replicas")
        proof.trials.append(trial)
        echo(f"[verify {name}] {replicas} replica(s), {cpus or '-'} CPU and {memory or '-'} MB "
             f"each, Poisson arrivals at {p.peak_rps:.1f} requests/s for "
             f"{duration_s:g} s")  # fmt: skip
        spec = trial_spec(name, doc, replicas, p.peak_rps, duration_s, slo, dataset)
        options = RunOptions("verify", spec, results_dir / "scenario.yaml", trial.out_dir,
                             launcher="docker", data_dir=data_dir)  # fmt: skip
        outcome = run(options, echo=echo)
        _judge(trial, outcome.summary, outcome.failures, slo, max_error_rate)
        echo(f"[verify {name}] {replicas} replica(s): {trial.note}")
    proof_path = out_root / PROOF_FILE
    write_json(proof_path, proof.to_dict())
    echo(f"[verify {name}] {proof.verdict} ({proof_path})")
    return proof


def _dataset(results_dir: Path) -> dict[str, Any]:
    from analysis.results import load_results

    plan = load_results(results_dir).load_plan
    return {"dataset": plan.get("dataset"), "classes": plan.get("classes"),
            "encoding": plan.get("encoding"),
            "images_per_request": plan.get("images_per_request")}  # fmt: skip


def _judge(
    trial: Trial, summary: Any, failures: list[str], slo: float, max_error_rate: float
) -> None:
    runs = summary.get("runs") or []
    if failures or not runs or not runs[0].get("stages"):
        trial.status = "failed"
        trial.note = "; ".join(failures) or "no stage recorded"
        return
    stage = runs[0]["stages"][-1]
    trial.status = "ok"
    trial.p99_ms = stage.get("p99_ms")
    trial.throughput_rps = stage.get("goodput_rps") or stage.get("rps")
    trial.error_rate = (stage.get("error_rate") or 0) + (stage.get("reject_rate") or 0)
    trial.held = (trial.p99_ms is not None and trial.p99_ms <= slo
                  and trial.error_rate <= max_error_rate)  # fmt: skip
    p99 = "-" if trial.p99_ms is None else f"{trial.p99_ms:.1f}"
    trial.note = (f"p99 {p99} ms (SLO {slo:g}), served "
                  f"{trial.throughput_rps or 0:.1f} requests/s, errors and rejections "
                  f"{trial.error_rate:.1%}: {'held' if trial.held else 'BROKE'}")  # fmt: skip
