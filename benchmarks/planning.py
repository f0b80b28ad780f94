"""Planning benchmark: does the model of N replicas predict what N replicas do?

Run on demand (not in CI; containers, about 60 minutes on 2 cores)::

    .venv/bin/python -m benchmarks.planning [--target fastapi-replica] [--slo-p99-ms MS]

In one run, in one layout (replicas on the target's CPUs with its CPU quota, the load
generator on the other CPUs, scenarios.yaml's ``plan-proof`` placement):

1. **per-replica capacity**: find-max at 1 replica starting below capacity, and again
   starting at 3x what the first found: independent probes agree within 10%;
2. **a plan**: the peak ``--peak-factor`` x that capacity with ``--headroom``, planned by the
   model of N replicas (:mod:`analysis.replicas`);
3. **the proof, per balancer** (``--balancers``: kernel SO_REUSEPORT, nginx round-robin):
   :func:`loadtests.proof.verify_plan`: find-max at 1, N and N - 1 replicas, predicted and
   measured capacity side by side with their ratio, and the peak at N and N - 1;
4. **CPU limits and the tail**: find-max of ``--quota-target`` (a CFS quota of half a core)
   and ``--core-target`` (a whole pinned core): capacity, capacity per CPU, p50/p99 at the
   lightest rate.

Every run's results folder is kept under ``--out``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import yaml

from analysis.capacity import run_capacity
from analysis.load import read_summary
from analysis.sizing import TargetPlan, plan_targets
from loadtests.cli.common import interrupt_once
from loadtests.orchestrator import RunOptions, run
from loadtests.proof import FIND_MAX, Proof, VerifyOptions, verify_plan
from loadtests.spec import parse_scenarios


def find_max(
    name: str, targets: dict[str, Any], start_rps: float, slo_ms: float, generator: str,
    out: Path, data: str | None, probes: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """One find-max run of ``targets[name]`` (plan-proof's search, from ``start_rps``); its
    summary entry."""
    search = {**FIND_MAX, **probes, "start_rps": start_rps}
    spec = parse_scenarios({"targets": {name: targets[name]}, "scenarios": {"fm": {
        "targets": [name], "slo": {"p99_ms": slo_ms},
        "load": {"mode": "find-max", "generator_cpuset": generator, "warmup_requests": 50,
                 "connections": "per-request", "find_max": search}}}})  # fmt: skip
    outcome = run(RunOptions("fm", spec, Path("scenarios.yaml"), out, launcher="docker",
                             data_dir=data, live=False), echo=print)  # fmt: skip
    if outcome.interrupted:
        raise SystemExit(f"interrupted; what was measured is in {out}")
    (entry,) = read_summary(out)["runs"]
    return dict(entry)


def capacity_of(entry: dict[str, Any], slo_ms: float) -> float | None:
    return run_capacity(entry, slo_ms).capacity_rps


def fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(float(value), spec)


def proof_rows(balancer: str, proof: Proof) -> list[str]:
    rows = []
    for t in proof.trials:
        rows.append(f"{balancer:<18} {t.replicas:>2} {fmt(t.predicted_capacity_rps):>10} "
                    f"{fmt(t.measured_capacity_rps):>9} {fmt(t.capacity_ratio, '.2f'):>6} "
                    f"{('ok' if t.within_tolerance else 'OFF') if t.capacity_ratio else '-':>5} "
                    f"{fmt(t.p99_at_peak_ms):>9} "
                    f"{'-' if t.held is None else ('held' if t.held else 'broke'):>6}")  # fmt: skip
    return rows


def limit_row(label: str, entry: dict[str, Any], cpus: float, slo_ms: float) -> str:
    cap = capacity_of(entry, slo_ms)
    stages = sorted(entry.get("stages") or [], key=lambda s: s.get("arrival_rps") or 0)
    light = stages[0] if stages else {}
    per_cpu = None if cap is None else cap / cpus
    return (f"{label:<28} {fmt(cap):>9} {fmt(per_cpu):>9} {fmt(light.get('arrival_rps')):>7} "
            f"{fmt(light.get('p50_ms')):>7} {fmt(light.get('p99_ms')):>7}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="fastapi-replica")
    parser.add_argument("--quota-target", default="fastapi-half")
    parser.add_argument("--core-target", default="fastapi-core")
    parser.add_argument("--scenarios", type=Path, default=Path("scenarios.yaml"))
    parser.add_argument(
        "--slo-p99-ms", type=float, default=None, help="default: the plan-proof scenario's"
    )
    parser.add_argument("--peak-factor", type=float, default=2.5)
    parser.add_argument("--headroom", type=float, default=0.1)
    parser.add_argument("--balancers", default="reuseport,nginx-round-robin")
    parser.add_argument("--generator-cpus", default="1")
    parser.add_argument("--duration-s", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--skip-limits", action="store_true",
                        help="leave out step 4 (the quota against a whole core)")  # fmt: skip
    parser.add_argument("--data", default=os.environ.get("SERVECAP_CIFAR10_DIR"))
    args = parser.parse_args()

    interrupt_once()  # SIGTERM too stops the run and its containers
    scenarios = yaml.safe_load(args.scenarios.read_text())
    targets = scenarios["targets"]
    out = args.out or Path("results") / f"planning-{time.strftime('%Y%m%d-%H%M%S')}"
    slo = args.slo_p99_ms or float(scenarios["scenarios"]["plan-proof"]["slo"]["p99_ms"])
    gen = args.generator_cpus
    probes = dict(scenarios["scenarios"]["plan-proof"]["load"]["find_max"])
    below = find_max(args.target, targets, 8.0, slo, gen, out / "measure", args.data, probes)
    cap = capacity_of(below, slo)
    if cap is None:
        raise SystemExit("no capacity measured at 1 replica: nothing to plan")
    above = find_max(args.target, targets, 3 * cap, slo, gen, out / "from-above", args.data,
                     probes)  # fmt: skip
    cap_above = capacity_of(above, slo)
    summary = read_summary(out / "measure")
    peak = args.peak_factor * cap
    proofs: dict[str, Proof] = {}
    plans: list[TargetPlan] = []
    for balancer in [b for b in args.balancers.split(",") if b]:
        from analysis.replicas import BALANCER_MODELS

        (tp,) = plan_targets(summary, slo, peak, headroom=args.headroom,
                             balancer=BALANCER_MODELS[balancer])  # fmt: skip
        plans.append(tp)
        options = VerifyOptions(args.duration_s, balancer, data_dir=args.data)
        proofs[balancer] = verify_plan(out / "measure", tp, out / f"proof-{balancer}", options)
    limits = {} if args.skip_limits else {
        "quota": find_max(args.quota_target, targets, 10.0, slo, gen, out / "quota", args.data,
                          probes),
        "core": find_max(args.core_target, targets, 10.0, slo, gen, out / "core", args.data,
                         probes),
    }  # fmt: skip

    print(f"\nplanning benchmark ({out}); SLO p99 <= {slo:g} ms, generator on CPUs {gen}")
    agree = None if cap_above is None else cap_above / cap
    print(f"1 replica ({args.target}): find-max from below {fmt(cap)} rps, from above "
          f"{fmt(cap_above)} rps (ratio {fmt(agree, '.3f')}: "
          f"{'within' if agree and abs(agree - 1) <= 0.10 else 'NOT within'} 10%)")  # fmt: skip
    print(f"plan: peak {peak:.1f} rps (x{args.peak_factor:g}), headroom {args.headroom:.0%}")
    first = plans[0].plan if plans else None
    for line in first.assumptions if first else ():
        if line.startswith("FRAGILE"):
            print(line)
    print(f"\n{'balancer':<18} {'N':>2} {'predicted':>10} {'measured':>9} {'ratio':>6} "
          f"{'15%':>5} {'p99@peak':>9} {'peak':>6}")  # fmt: skip
    for balancer, proof in proofs.items():
        for row in proof_rows(balancer, proof):
            print(row)
        print(f"{'':<18}    verdict: {'HELD' if proof.held else 'DID NOT HOLD'}")
    if limits:
        print(f"\n{'CPU limit':<28} {'capacity':>9} {'per CPU':>9} {'light':>7} {'p50':>7} "
              f"{'p99':>7}")  # fmt: skip
        q_cpus = float(targets[args.quota_target].get("cpus") or 1)
        print(limit_row(f"{args.quota_target} (quota {q_cpus:g})", limits["quota"], q_cpus, slo))
        print(limit_row(f"{args.core_target} (whole core)", limits["core"], 1.0, slo))


if __name__ == "__main__":
    main()
