"""``servecap plan ... --verify``: run the plan, and measure the model it rests on.

A plan is N replicas, from one replica's open-loop curve and a model of N replicas behind a
balancer (:mod:`analysis.replicas`). The proof runs it, on containers, in **one layout**
where only the number of replicas changes:

* the load generator on CPUs of its own (``generator_cpuset``), the replicas on the others
  (``cpuset``), each with the CPU quota it was measured with (``cpus``): replicas x quota must
  fit the replicas' CPUs, or they contend and the model's premise does not hold (said);
  the scaled-down default on 2 cores is replicas sharing CPU 0 and the generator on CPU 1;
* the balancer the plan was made for: ``reuseport`` (the Docker launcher's replicas share the
  port, the kernel spreads connections) or nginx (``nginx-round-robin``,
  ``nginx-least-conn``: :mod:`loadtests.balancer`).

Trials (each a normal results folder under ``<out>/<target>/``):

1. find-max at 1 replica: the per-replica curve *in this layout*, from which the model
   predicts the capacity at N and N - 1;
2. find-max at N and at N - 1: measured capacity beside the prediction; the model holds when
   they are within ``tolerance`` (15%);
3. Poisson arrivals at the planned peak for ``duration_s`` at N and at N - 1: the plan holds
   when p99 and the error rate meet the SLO at N (and one replica fewer should break it,
   unless the headroom spares one).

Capacities are read as the plan reads them (:mod:`analysis.openloop`: the highest rate whose
p99's upper bound met the SLO). ``<out>/<target>/plan-verify.json`` holds the trials.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

from analysis.capacity import run_capacity
from analysis.contract import write_json
from analysis.defaults import DEFAULT_MAX_ERROR_RATE, DEFAULT_VERIFY_TOLERANCE
from analysis.replicas import BALANCER_MODELS, ReplicaModel
from analysis.sizing import TargetPlan
from loadtests.artefacts import resolved_targets
from loadtests.balancer import nginx_replicas
from loadtests.orchestrator import RunOptions, RunOutcome, run
from loadtests.spec import ScenarioFile, parse_scenarios
from targets.config import TargetConfig, parse_cpuset
from targets.registry import target_config

Echo = Callable[[str], None]
DEFAULT_DURATION_S = 30.0
PROOF_FILE = "plan-verify.json"


@dataclass(frozen=True)
class Layout:
    """Where replicas and the generator run, and what each replica gets."""

    replica_cpuset: str | None
    generator_cpuset: str | None
    cpus_per_replica: float | None
    memory_limit_mb: int | None
    notes: tuple[str, ...] = ()


def layout_for(
    config: TargetConfig, generator_cpuset: str | None, tp: TargetPlan, replicas: int,
    host_cpus: int | None = None,
) -> Layout:  # fmt: skip
    """The measurement's own placement where it had one, else the generator on the last CPU
    and the replicas on the others; the plan's limits where the measurement had none."""
    cpus = host_cpus or psutil.cpu_count() or 1
    p = tp.plan
    assert p is not None
    quota = config.cpus
    if quota is None and p.cpu_cores_per_replica:
        quota = round(p.cpu_cores_per_replica / (1 - p.headroom), 2)
    memory = config.memory_limit_mb
    peak_mb = p.mem_peak_mb_per_replica or p.mem_mb_per_replica
    if memory is None and peak_mb:
        memory = max(64, math.ceil(peak_mb / (1 - p.headroom)))
    generator = generator_cpuset or (str(cpus - 1) if cpus > 1 else None)
    taken = set(parse_cpuset(generator)) if generator else set()
    rest = [c for c in range(cpus) if c not in taken]
    replica_set = config.cpuset or (",".join(map(str, rest)) if taken and rest else None)
    notes = []
    if replica_set and generator and taken & set(parse_cpuset(replica_set)):
        notes.append(f"replicas (CPUs {replica_set}) share CPUs with the generator ({generator}): "
                     "the generator's work is measured as theirs")  # fmt: skip
    room = len(parse_cpuset(replica_set)) if replica_set else cpus
    if quota is not None and replicas * quota > room + 1e-9:
        notes.append(f"{replicas} replicas x {quota:g} CPU exceed the {room} CPU(s) they run on: "
                     "they contend for CPU, which the model assumes they do not; scale the "
                     "replicas down (cpus) or use a larger host")  # fmt: skip
    if quota is not None and quota < 1:
        notes.append(f"scaled-down replicas: {quota:g} CPU each (a CFS quota)")
    if replicas > room:
        notes.append(f"{replicas} replicas time-share {room} CPU(s): a quota caps CPU time, it "
                     "does not reserve it, so while several have work each request takes "
                     "longer, and the model (no contention) is high: three replicas on one "
                     "core measured x0.75 of it, at 0.33 and at 0.22 CPU each")  # fmt: skip
    return Layout(replica_set, generator, quota, memory, tuple(notes))


@dataclass
class Trial:
    """One replica count: its find-max and its run at the planned peak."""

    replicas: int
    measured_capacity_rps: float | None = None
    predicted_capacity_rps: float | None = None
    """The model applied to this proof's own 1-replica curve (same layout)."""
    plan_predicted_capacity_rps: float | None = None
    """The model applied to the curve the plan was made from."""
    capacity_ratio: float | None = None
    within_tolerance: bool | None = None
    p99_at_peak_ms: float | None = None
    p99_at_peak_upper_ms: float | None = None
    served_at_peak_rps: float | None = None
    error_rate_at_peak: float | None = None
    held: bool | None = None
    """Whether p99 and errors met the SLO at the peak (None: not run at the peak)."""
    runs: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Proof:
    target: str
    peak_rps: float
    slo_p99_ms: float
    max_error_rate: float
    planned_replicas: int
    balancer: str
    layout: Layout
    tolerance: float = DEFAULT_VERIFY_TOLERANCE
    trials: list[Trial] = field(default_factory=list)

    def trial(self, replicas: int) -> Trial | None:
        return next((t for t in self.trials if t.replicas == replicas), None)

    @property
    def held(self) -> bool:
        """The plan held: the SLO met at the planned replicas, and their measured capacity
        not below the prediction by more than the tolerance (a model that promises more
        than is there would plan too few replicas elsewhere)."""
        at_n = self.trial(self.planned_replicas)
        if at_n is None or not at_n.held:
            return False
        ratio = at_n.capacity_ratio
        return ratio is None or ratio >= 1 - self.tolerance

    @property
    def verdict(self) -> str:
        n = self.planned_replicas
        at_n, fewer = self.trial(n), self.trial(n - 1)
        if at_n is None or at_n.held is None:
            return "not verified: the planned replicas did not run at the peak"
        parts = [f"the SLO {'held' if at_n.held else 'BROKE'} at the planned {n} replica(s) "
                 f"(p99 {_ms(at_n.p99_at_peak_ms)})"]  # fmt: skip
        if fewer is not None and fewer.held is not None:
            parts.append(f"{'it also held' if fewer.held else 'it broke'} at {n - 1} (p99 "
                         f"{_ms(fewer.p99_at_peak_ms)})"
                         + (": the headroom spares a replica" if fewer.held else ""))  # fmt: skip
        for t in self.trials:
            if t.capacity_ratio is not None:
                within = "within" if t.within_tolerance else "OUTSIDE"
                parts.append(
                    f"capacity at {t.replicas}: measured {_rps(t.measured_capacity_rps)}, "
                    f"predicted {_rps(t.predicted_capacity_rps)} (x{t.capacity_ratio:.2f}, "
                    f"{within} {self.tolerance:.0%})"
                )
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "peak_rps": self.peak_rps, "slo_p99_ms": self.slo_p99_ms,
            "max_error_rate": self.max_error_rate, "planned_replicas": self.planned_replicas,
            "balancer": self.balancer, "tolerance": self.tolerance,
            "layout": asdict(self.layout), "held": self.held, "verdict": self.verdict,
            "trials": [asdict(t) for t in self.trials],
        }  # fmt: skip


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


@dataclass(frozen=True)
class VerifyOptions:
    duration_s: float = DEFAULT_DURATION_S
    balancer: str = "reuseport"
    tolerance: float = DEFAULT_VERIFY_TOLERANCE
    data_dir: str | None = None
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    find_max: dict[str, Any] = field(default_factory=dict)
    """Overrides of the proof's find-max settings (window_s, max_hold_s...: shorter tests)."""
    load: dict[str, Any] = field(default_factory=dict)
    """Overrides of every run's load plan (e.g. ``late_ms``)."""


FIND_MAX = {"step_factor": 1.25, "window_s": 3, "stable_windows": 3, "max_hold_s": 24,
            "tolerance": 0.04, "max_points": 16, "drain_idle_s": 1.0, "confirm": True}  # fmt: skip
"""The proof's find-max: starts below the expected capacity, settles within 4%, confirms."""
PROBE_FIELDS = ("window_s", "stable_windows", "stability", "max_hold_s", "drain_idle_s",
                "confirm")  # fmt: skip
"""What makes one probe of a find-max (how long, how it passes): the proof's probes are the
measurement's, so a capacity is checked by the test that found it."""


def find_max_load(
    start_rps: float, layout: Layout, dataset: dict[str, Any],
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    search = {**FIND_MAX, "start_rps": max(1.0, round(start_rps, 1)), **(overrides or {})}
    return {"mode": "find-max", "generator_cpuset": layout.generator_cpuset,
            "warmup_requests": 50, **dataset, "find_max": search}  # fmt: skip


def peak_load(peak_rps: float, duration_s: float, layout: Layout, dataset: dict[str, Any]
              ) -> dict[str, Any]:  # fmt: skip
    return {"mode": "rate", "arrival": "poisson", "settle_s": min(5.0, duration_s / 4),
            "warmup_requests": 50, "generator_cpuset": layout.generator_cpuset, **dataset,
            "stages": [{"rps": peak_rps, "duration_s": duration_s}]}  # fmt: skip


Runner = Callable[..., RunOutcome]


def verify_plan(
    results_dir: Path, tp: TargetPlan, out_root: Path, options: VerifyOptions = VerifyOptions(),
    echo: Echo = print, runner: Runner = run,
) -> Proof:  # fmt: skip
    """Find-max at 1, N and N - 1 replicas, and the peak at N and N - 1 (see the module)."""
    p = tp.plan
    name = str(tp.target)
    if p is None:
        raise ValueError(f"target '{name}' has no plan to verify: {tp.reason}")
    if options.balancer not in BALANCER_MODELS:
        raise ValueError(f"balancer must be one of {', '.join(BALANCER_MODELS)}")
    config = resolved_targets(results_dir)[name]
    plan_load = _measured_load(results_dir)
    measured = plan_load.get("find_max") or {}
    probe = {k: measured[k] for k in PROBE_FIELDS if k in measured}
    options = replace(options, find_max={**probe, **options.find_max})
    layout = layout_for(config, plan_load.get("generator_cpuset"), tp, p.replicas)
    slo = float(p.slo_p99_ms or 0) or 500.0
    proof = Proof(name, p.peak_rps, slo, options.max_error_rate, p.replicas, options.balancer,
                  layout, options.tolerance)  # fmt: skip
    for note in layout.notes:
        echo(f"[verify {name}] note: {note}")
    # What every run sends, as the measurement did; behind the kernel balancer, a connection
    # per request (a population of clients, the random split the model assumes).
    client = {"connections": "per-request"} if options.balancer == "reuseport" else {}
    dataset = client | {k: plan_load.get(k) for k in ("dataset", "classes", "encoding",
                                             "images_per_request") if plan_load.get(k)}  # fmt: skip
    doc = config.model_dump(mode="json", exclude_defaults=False)
    # Replicas start side by side on the same few CPUs: each takes longer to load its model.
    ready_s = min(3600.0, config.ready_timeout_s * max(1, p.replicas))
    doc.update({"cpus": layout.cpus_per_replica, "memory_limit_mb": layout.memory_limit_mb,
                "cpuset": layout.replica_cpuset, "ready_timeout_s": ready_s})  # fmt: skip
    folder = out_root / name
    ctx = _Context(name, doc, slo, options, folder, echo, dataset, layout, runner)
    one = Trial(1)
    curve = ctx.find_max(one, start_rps=0.6 * (tp.capacity.capacity_rps or 1.0))
    model = ReplicaModel(curve, slo, BALANCER_MODELS[options.balancer], options.max_error_rate) \
        if curve else None  # fmt: skip
    planned = ReplicaModel(tp.capacity.curve, slo, BALANCER_MODELS[options.balancer],
                           options.max_error_rate) if tp.capacity.curve else None  # fmt: skip
    proof.trials.append(one)
    for n in sorted({p.replicas, p.replicas - 1} - {0}, reverse=True):
        trial = one if n == 1 else Trial(n)
        if trial is not one:
            proof.trials.append(trial)
        _predict(trial, model, planned, options.tolerance)
        if n > 1:
            start = 0.6 * (trial.predicted_capacity_rps or n * (one.measured_capacity_rps or 1))
            ctx.find_max(trial, start)
            _predict(trial, model, planned, options.tolerance)
        ctx.peak(trial, p.peak_rps)
    proof.trials.sort(key=lambda t: t.replicas)
    path = folder / PROOF_FILE
    folder.mkdir(parents=True, exist_ok=True)
    write_json(path, proof.to_dict())
    echo(f"[verify {name}] {'HELD' if proof.held else 'DID NOT HOLD'}: {proof.verdict} ({path})")
    return proof


def _predict(trial: Trial, model: ReplicaModel | None, planned: ReplicaModel | None,
             tolerance: float) -> None:  # fmt: skip
    if model is not None:
        trial.predicted_capacity_rps = model.capacity_rps(trial.replicas)
    if planned is not None:
        trial.plan_predicted_capacity_rps = planned.capacity_rps(trial.replicas)
    measured, predicted = trial.measured_capacity_rps, trial.predicted_capacity_rps
    if measured is not None and predicted:
        trial.capacity_ratio = round(measured / predicted, 4)
        trial.within_tolerance = abs(trial.capacity_ratio - 1) <= tolerance


def _measured_load(results_dir: Path) -> dict[str, Any]:
    from analysis.results import load_results

    return dict(load_results(results_dir).load_plan)


@dataclass
class _Context:
    """What every run of one proof shares."""

    name: str
    doc: dict[str, Any]
    slo: float
    options: VerifyOptions
    folder: Path
    echo: Echo
    dataset: dict[str, Any]
    layout: Layout
    runner: Runner

    def find_max(self, trial: Trial, start_rps: float) -> tuple[Any, ...]:
        """Find-max at ``trial.replicas``; fills its measured capacity, returns its curve."""
        self.echo(f"[verify {self.name}] {trial.replicas} replica(s): find-max from "
                  f"{start_rps:.1f} requests/s")  # fmt: skip
        label = f"{trial.replicas}-replicas-find-max"
        load = find_max_load(start_rps, self.layout, self.dataset, self.options.find_max)
        run_entry = self._run(trial, label, {**load, **self.options.load})
        if run_entry is None:
            return ()
        cap = run_capacity(run_entry, self.slo, self.options.max_error_rate)
        trial.measured_capacity_rps = cap.capacity_rps
        self.echo(f"[verify {self.name}] {trial.replicas} replica(s): capacity "
                  f"{_rps(cap.capacity_rps)} ({cap.max_rps.method})")  # fmt: skip
        return cap.curve

    def peak(self, trial: Trial, peak_rps: float) -> None:
        """Poisson arrivals at the peak; fills p99, served rate, errors and the verdict."""
        label = f"{trial.replicas}-replicas-peak"
        load = peak_load(peak_rps, self.options.duration_s, self.layout, self.dataset)
        run_entry = self._run(trial, label, {**load, **self.options.load})
        stages = (run_entry or {}).get("stages") or []
        if not stages:
            return
        stage = stages[-1]
        trial.p99_at_peak_ms = stage.get("p99_ms")
        ci = stage.get("p99_ci_ms")
        trial.p99_at_peak_upper_ms = ci[1] if ci else None
        trial.served_at_peak_rps = stage.get("goodput_rps")
        trial.error_rate_at_peak = (stage.get("error_rate") or 0) + (stage.get("reject_rate") or 0)
        trial.held = (trial.p99_at_peak_ms is not None and trial.p99_at_peak_ms <= self.slo
                      and trial.error_rate_at_peak <= self.options.max_error_rate)  # fmt: skip
        self.echo(f"[verify {self.name}] {trial.replicas} replica(s) at {peak_rps:.1f} requests/s:"
                  f" p99 {_ms(trial.p99_at_peak_ms)} (SLO {self.slo:g}), served "
                  f"{trial.served_at_peak_rps or 0:.1f}/s, errors {trial.error_rate_at_peak:.1%}: "
                  f"{'held' if trial.held else 'BROKE'}")  # fmt: skip

    def _run(self, trial: Trial, label: str, load: dict[str, Any]) -> dict[str, Any] | None:
        out = self.folder / label
        trial.runs[label] = str(out)
        with self._target(trial.replicas, out) as target:
            spec = _spec(self.name, target, load, self.slo)
            options = RunOptions("verify", spec, out / "scenario.yaml", out,
                                 launcher="docker", data_dir=self.options.data_dir,
                                 live=False)  # fmt: skip
            outcome = self.runner(options, echo=self.echo)
        if outcome.interrupted:  # Ctrl-C or SIGTERM: no next trial (the run kept its records)
            raise KeyboardInterrupt
        entries = outcome.summary.get("runs") or []
        if outcome.failures or not entries:
            trial.notes.append(f"{label}: {'; '.join(outcome.failures) or 'nothing recorded'}")
            return None
        return dict(entries[0])

    @contextlib.contextmanager
    def _target(self, replicas: int, out: Path) -> Iterator[dict[str, Any]]:
        """The target as the run sees it: replicas sharing the port, or nginx in front."""
        if self.options.balancer == "reuseport":
            yield {**self.doc, "replicas": replicas}
            return
        config = target_config(**{**self.doc, "replicas": 1})
        with nginx_replicas(self.name, config, replicas, self.options.balancer,
                            self.layout.generator_cpuset, out.with_name(f"{out.name}-balancer"),
                            self.echo) as balanced:  # fmt: skip
            yield {
                "kind": "external",
                "url": balanced.url,
                "protocol": "servecap",
                "resources": {"containers": list(balanced.containers)},
            }


def _spec(name: str, target: dict[str, Any], load: dict[str, Any], slo: float) -> ScenarioFile:
    return parse_scenarios({
        "targets": {name: target},
        "scenarios": {"verify": {"targets": [name], "load": load, "slo": {"p99_ms": slo}}},
    })  # fmt: skip


def _rps(value: float | None) -> str:
    return "none under the SLO" if value is None else f"{value:.1f} requests/s"
