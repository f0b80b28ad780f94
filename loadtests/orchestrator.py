"""``servecap run``: start each target, warm it up, drive the load, sample resources, summarise.

For every target of the scenario, in order::

    launch (process group or containers) -> warm-up requests -> samplers + Locust -> stages
    -> stop Locust, samplers and target -> merge records -> stage statistics -> summary.json

Everything a target needs is checked before the first one starts (:func:`preflight`). A
target that fails to start is recorded as failed and the run goes on with the next one.
Ctrl-C or SIGTERM stops the load and the target, and the data collected so far is
finalised and summarised before exiting. Nothing is left running in any case. The SLO gates
are checked at the end and written into summary.json by its one writer
(:class:`loadtests.results.SummaryWriter`).
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import yaml

from analysis.capacity import capacity_section
from analysis.contract import (
    JOB_SUBMIT_REQUEST,
    LOAD_CONFIG_FILE,
    META_FILE,
    SCENARIO_FILE,
    SERVER_METRICS_PART,
    RunSummary,
    Summary,
    stage_number,
    write_atomically,
    write_json,
)
from analysis.defaults import DEFAULT_MAX_ERROR_RATE, DEFAULT_MAX_REJECT_RATE, DEFAULT_SLO_P99_MS
from analysis.stages import flag_generator, json_safe
from loadtests.bodies import build_bodies, test_images
from loadtests.collectors.docker_stats import DockerStatsSampler
from loadtests.collectors.gpu import GpuSampler
from loadtests.collectors.process import ProcessTreeSampler
from loadtests.collectors.prometheus import PrometheusSampler
from loadtests.faults import FAULTS_FILE, Injector
from loadtests.gates import GateResult, check_summary
from loadtests.generator import GeneratorError, warm_up
from loadtests.live import make_view
from loadtests.meta import git_info, host_info, package_versions
from loadtests.monitor import TargetFailure, Watchdog, drive
from loadtests.results import (
    ResultsFolderError,
    SummaryWriter,
    finalize_target,
    mode_results,
    new_results_dir,
    write_paper_tables,
)
from loadtests.runconfig import LoadRunConfig
from loadtests.spec import SLO, LoadPlan, Scenario, ScenarioFile
from targets.config import TargetConfig
from targets.launchers import Launcher, LaunchError, get_launcher
from targets.registry import REPO_ROOT, endpoint_for, get_kind

Echo = Callable[[str], None]


@dataclass
class RunOptions:
    scenario: str
    spec: ScenarioFile
    scenarios_file: Path
    out_dir: Path | None = None
    launcher: str = "process"
    data_dir: str | None = None
    seed: int = 0
    compose_overrides: tuple[Path, ...] = ()
    """docker launcher: override files of docker-compose.yml (``servecap plan --compose``)."""
    live: bool | None = None
    """The live view: True a terminal panel, False plain lines; None: a panel when stdout is
    a terminal."""


@dataclass
class RunOutcome:
    out_dir: Path
    summary: Summary
    failures: list[str] = field(default_factory=list)
    interrupted: bool = False
    gates: list[GateResult] = field(default_factory=list)
    """The SLO gates checked (none when the scenario has no SLO, or is a find-max)."""

    @property
    def ok(self) -> bool:
        return not self.failures and not self.interrupted

    @property
    def gates_passed(self) -> bool:
        return all(g.passed for g in self.gates)


class PreflightError(ValueError):
    """The run cannot work: found before anything started. The message lists every problem."""


NOT_MEASURED = (
    "not measured: servecap did not start this target and was given no container, label or "
    "pid to sample (targets.<name>.resources)"
)


def launcher_for(options: RunOptions, name: str) -> Launcher:
    """The launcher of one target: the run's (``--launcher``), or the one its kind always uses
    (``external``: servecap starts nothing)."""
    return get_launcher(options.launcher, get_kind(options.spec.targets[name].kind),
                        compose_overrides=options.compose_overrides)  # fmt: skip


def preflight(options: RunOptions) -> None:
    """Check every target, its protocol against the load plan, and the dataset (read at each
    target's input size) before starting the first target."""
    from targets.common.dataset import DatasetError

    scenario = options.spec.scenario(options.scenario)
    problems: list[str] = []
    if options.out_dir is not None and options.out_dir.is_dir() and any(options.out_dir.iterdir()):
        problems.append(
            f"results folder {options.out_dir} is not empty: servecap never overwrites results; "
            "give --out a new folder (or leave it out for a timestamped one)"
        )
    for name in scenario.targets:
        config = options.spec.targets[name]
        try:
            launcher_for(options, name).preflight(name, config)
        except LaunchError as err:
            problems.append(str(err))
        try:
            load = load_config_for(name, config, scenario, options.data_dir, Path("."))
        except (ValueError, LaunchError) as err:
            problems.append(str(err))
            continue
        try:
            test_images(load, min(scenario.load.image_pool, 10_000))
        except (DatasetError, ValueError, OSError) as err:
            problems.append(f"dataset: {err}")
    if problems:
        problems = list(dict.fromkeys(problems))  # the same dataset problem once
        raise PreflightError(
            f"scenario '{options.scenario}' cannot run; nothing was started:\n  - "
            + "\n  - ".join(problems)
        )


def run(options: RunOptions, echo: Echo = print) -> RunOutcome:
    scenario = options.spec.scenario(options.scenario)
    preflight(options)
    try:  # absolute: Locust runs with the target's folder as its working directory
        out = new_results_dir(options.out_dir, options.scenario)
    except ResultsFolderError as err:  # --out filled since the preflight
        raise PreflightError(str(err)) from None
    _write_resolved(out, options, scenario)
    meta: dict[str, Any] = {
        "scenario": options.scenario,
        "scenarios_file": str(options.scenarios_file),
        "command": shlex.join(sys.argv),
        "started_at": datetime.now(UTC).isoformat(),
        "launcher": options.launcher,
        "data_dir": options.data_dir,
        "versions": package_versions(),
        "host": host_info(),
        "git": git_info(REPO_ROOT),
        "targets": {},
    }
    writer = SummaryWriter(out, options.scenario)
    outcome = RunOutcome(out, writer.summary)
    echo(f"servecap: scenario '{options.scenario}' -> {out}")
    try:
        for name in scenario.targets:
            entry = _run_target(name, scenario, options, out, launcher_for(options, name), echo)
            writer.add_run(entry)
            meta["targets"][name] = {k: entry.get(k) for k in ("time_to_ready_s", "status")}
            if entry["status"] != "ok":
                outcome.failures.append(f"{name}: {entry.get('error')}")
            if entry["status"] == "interrupted":
                outcome.interrupted = True
                break
        if scenario.load.mode == "sequential":
            for path in write_paper_tables(out, writer.summary):
                echo(f"paper tables: {path}")
        # find-max probes past the SLO on purpose: its answer is the rate it found
        gated = scenario.slo is not None and scenario.load.mode != "find-max"
        if gated and scenario.slo is not None and not outcome.interrupted:
            outcome.gates = check_summary(dict(writer.summary), scenario.slo)
            writer.set_gates(scenario.slo, outcome.gates)
    finally:
        meta["ended_at"] = datetime.now(UTC).isoformat()
        write_json(out / META_FILE, json_safe(meta))
    return outcome


def _write_resolved(out: Path, options: RunOptions, scenario: Scenario) -> None:
    resolved = {
        "scenario": options.scenario,
        "definition": scenario.model_dump(mode="json"),
        "targets": {n: options.spec.targets[n].model_dump(mode="json") for n in scenario.targets},
    }
    text = yaml.safe_dump(resolved, sort_keys=False)
    write_atomically(out / SCENARIO_FILE, lambda p: p.write_text(text, encoding="utf-8"))


def load_config_for(
    name: str, config: TargetConfig, scenario: Scenario, data_dir: str | None, tdir: Path,
    seed: int = 0,
) -> LoadRunConfig:  # fmt: skip
    """The load generator's view of one target: its endpoint and protocol, and the plan.
    ValueError when the target's protocol cannot carry the plan."""
    endpoint = endpoint_for(config)
    load = LoadRunConfig(
        target=name, endpoint=endpoint, plan=scenario.load,
        data_dir=scenario.load.dataset or data_dir,
        out_dir=str(tdir.resolve()), seed=seed,
        slo_p99_ms=scenario.slo.p99_ms if scenario.slo else None,
        max_error_rate=_given(scenario.slo.max_error_rate if scenario.slo else None,
                              DEFAULT_MAX_ERROR_RATE),
    )  # fmt: skip
    protocol = load.protocol
    if scenario.load.mode not in protocol.modes:
        raise ValueError(
            f"target '{name}' speaks {protocol.name}, which supports load mode "
            f"{', '.join(sorted(protocol.modes))}, not {scenario.load.mode}"
        )
    try:
        protocol.check_encoding(scenario.load.encoding)
    except ValueError as err:
        raise ValueError(f"target '{name}': {err}") from None
    most = protocol.images_limit(endpoint)
    if most is not None and scenario.load.images_per_request > most:
        raise ValueError(
            f"target '{name}' ({protocol.name}) takes at most {most} image(s) a request; set "
            f"load.images_per_request to {most} or less"
        )
    return load


def _run_target(
    name: str, scenario: Scenario, options: RunOptions, out: Path, launcher: Launcher, echo: Echo
) -> RunSummary:
    config = options.spec.targets[name]
    kind = get_kind(config.kind)
    tdir = out / name
    tdir.mkdir(parents=True, exist_ok=True)
    paper = kind.paper
    entry: RunSummary = {
        "target": name, "kind": config.kind, "mode": scenario.load.mode,
        "launcher": launcher.name, "status": "ok",
        "error": None, "time_to_ready_s": None,
        "paper_architecture": paper.name if paper else None,
        "paper_same_path": paper.same_path if paper else None,
    }  # fmt: skip
    echo(f"[{name}] starting ({launcher.name} launcher)")
    load: LoadRunConfig | None = None
    try:
        with launcher.launch(name, config, tdir / "logs") as running:
            entry["time_to_ready_s"] = round(running.time_to_ready_s, 3)
            echo(f"[{name}] ready in {running.time_to_ready_s:.1f} s at {running.base_url}")
            # after the start: a server servecap did not write says its model's input then
            load = load_config_for(name, config, scenario, options.data_dir, tdir, options.seed)
            config_path = tdir / LOAD_CONFIG_FILE
            load.write(config_path)
            bodies, headers = build_bodies(load)
            warm_ms = warm_up(load, bodies[0], headers, scenario.load.warmup_requests)
            entry["warmup_mean_ms"] = round(warm_ms, 3)
            _measure(name, scenario, options, load, running, config_path, tdir, entry, echo)
    except KeyboardInterrupt:
        entry["status"], entry["error"] = "interrupted", "interrupted by the user"
        echo(f"[{name}] interrupted: stopping and keeping the data collected so far")
    except (LaunchError, GeneratorError, TargetFailure, OSError, ValueError) as err:
        entry["status"], entry["error"] = "failed", str(err)
        echo(f"[{name}] FAILED: {err}")
    _summarise(entry, scenario, load, tdir, echo)
    return entry


def _measure(
    name: str, scenario: Scenario, options: RunOptions, load: LoadRunConfig, running: Any,
    config_path: Path, tdir: Path, entry: RunSummary, echo: Echo,
) -> None:  # fmt: skip
    """Samplers on, the load driven to its end, samplers off."""
    interval = scenario.collect.interval_s
    with contextlib.ExitStack() as samplers:
        # generator + host always from psutil; the target from psutil (processes) or from the
        # Docker stats API (containers); GPUs whenever NVML sees one
        sampler = samplers.enter_context(ProcessTreeSampler(tdir / "resources.csv", interval))
        target_sampler: ProcessTreeSampler | DockerStatsSampler = sampler
        if running.containers:
            target_sampler = samplers.enter_context(
                DockerStatsSampler(tdir / "resources-docker.csv", interval)
            )
            target_sampler.watch("target", running.containers)
            entry["resources"] = "docker"
        elif running.pids:
            sampler.watch("target", running.pids)
            entry["resources"] = "psutil"
        else:
            entry["resources"] = NOT_MEASURED
        gpu = samplers.enter_context(GpuSampler(tdir / "resources-gpu.csv", interval))
        entry["gpu"] = "sampled" if gpu.available else gpu.reason
        source = get_kind(running.config.kind).metrics(running.config)
        server: PrometheusSampler | None = None
        if source is not None:
            server = PrometheusSampler(tdir / SERVER_METRICS_PART, source, interval)
            samplers.enter_context(server)
        if scenario.load.remote_workers:
            _announce_remote_workers(name, scenario, options, echo)
        view = make_view(echo, options.live)
        injector = _injector(name, scenario, running, echo)
        try:
            drive(load, config_path, tdir, sampler, echo,
                  Watchdog(running, target_sampler, tdir), view, injector)  # fmt: skip
        finally:
            if injector is not None:
                injector.write(tdir)
                restarts = getattr(running.control, "restarts", None)
                if restarts:
                    entry["restarts"] = list(restarts)
    reports = [s.gap_report() for s in (sampler, target_sampler, gpu, server) if s is not None]
    gaps = list(dict.fromkeys(g for g in reports if g))
    if gaps:
        entry["sampling_gaps"] = gaps
        for line in gaps:
            echo(f"[{name}] WARNING: samples lost: {line}")
    if server is not None:
        entry["server_metrics"] = (
            f"scraped {server.samples} times from {source.url if source else ''}"
            + (f"; {server.failures} scrapes failed ({server.last_error})" if server.failures
               else "")
        )  # fmt: skip


def _injector(name: str, scenario: Scenario, running: Any, echo: Echo) -> Injector | None:
    """The target's faults (those naming it, and those naming no target)."""
    faults = [f for f in scenario.faults if f.target in (None, name)]
    if not faults:
        return None
    if running.control is None:
        raise LaunchError(f"target '{name}': its launcher cannot inject faults")
    return Injector(faults, running.control, echo, name)


def _announce_remote_workers(
    name: str, scenario: Scenario, options: RunOptions, echo: Echo
) -> None:
    plan = scenario.load
    echo(f"[{name}] waiting for {plan.remote_workers} remote worker(s) on "
         f"{plan.master_bind_host}:{plan.master_port}; on each host run: "
         f"servecap worker --scenario {options.scenario} --target {name} "
         "--master-host <this host's address> "
         f"--host <{name}'s URL as that host reaches it>")  # fmt: skip
    if plan.master_bind_host.startswith("127."):
        echo(f"[{name}] note: the master listens on loopback only; workers on other hosts need "
             "load.master_bind_host set to an address they reach")  # fmt: skip


def _summarise(
    entry: RunSummary, scenario: Scenario, load: LoadRunConfig | None, tdir: Path, echo: Echo
) -> None:
    """Finalise the target's folder and fill its entry: stages, overall, mode results,
    capacity; announce failed stages and a generator that limited the load."""
    name = entry["target"]
    plan = scenario.load
    primary = load.primary_request if load else None
    final = finalize_target(tdir, plan.stage_settle_s, primary, plan.late_ms)
    pinned = plan.generator_cpuset is not None
    stages = flag_generator(final.stages, plan.workers, psutil.cpu_count(), plan.late_ms, pinned)
    entry["stages"] = stages  # type: ignore[typeddict-item]
    entry["overall"] = final.overall  # type: ignore[typeddict-item]
    entry["requests"] = sum(s["requests"] for s in entry["stages"])
    for st in entry["stages"]:
        if (st.get("error_rate") or 0) > 0.05:
            echo(f"[{name}] stage {stage_number(st['index'])}: {st.get('error_rate', 0):.0%} of "
                 f"requests failed, most often: {st.get('top_error')}")  # fmt: skip
    for st in entry["stages"]:
        if not st["generator_ok"]:
            echo(f"[{name}] WARNING: stage {stage_number(st['index'])}: load generator "
                 f"saturated or behind schedule ({'; '.join(st['generator_issues'])}): its "
                 "figures understate what the target can do")  # fmt: skip
    empty = [stage_number(s["index"]) for s in stages if plan.mode in ("ramp", "rate")
             and not s["requests"] and _had_load(plan, s["index"])]  # fmt: skip
    if empty and entry["status"] == "ok":
        entry["status"] = "failed"
        entry["error"] = (f"stage(s) {', '.join(map(str, empty))} recorded no request although "
                          "the plan had load: the generator or the target stopped")  # fmt: skip
        echo(f"[{name}] FAILED: {entry['error']}")
    entry.update(mode_results(tdir, plan.mode))  # type: ignore[typeddict-item]
    if (tdir / FAULTS_FILE).exists():
        entry["faults"] = fault_section(tdir, scenario, primary)
    if plan.mode != "sequential":  # one user throughout: no load curve to read capacity from
        entry["capacity"] = _capacity(entry, scenario)  # type: ignore[typeddict-item]


def fault_section(tdir: Path, scenario: Scenario, request_name: str | None) -> dict[str, Any]:
    """summary.json ``faults``: each fault with what it cost (analysis.faults), and for the
    job queue what became of the accepted jobs."""
    from analysis.faults import impacts, job_accounting
    from analysis.load import read_requests

    events = json.loads((tdir / FAULTS_FILE).read_text(encoding="utf-8"))
    records = read_requests(tdir)
    end_ts = float(records["ts"].max()) if len(records) else 0.0
    slo = scenario.slo.p99_ms if scenario.slo else None
    out: dict[str, Any] = {"injected": impacts(records, events, end_ts, slo, request_name)}
    if len(records) and (records["name"] == JOB_SUBMIT_REQUEST).any():
        out["jobs"] = job_accounting(records)
    return out


def _had_load(plan: LoadPlan, index: int) -> bool:
    """Whether stage ``index`` planned any load (a trace's idle intervals plan none)."""
    if index >= len(plan.stages):
        return True
    stage = plan.stages[index]
    return bool(stage.users or stage.rps)


def _capacity(entry: RunSummary, scenario: Scenario) -> dict[str, Any]:
    """The run's capacity section under the scenario's SLO (p99 500 ms when it sets none).

    Never fails the run: a problem in the analysis is recorded in the section instead.
    """
    slo = scenario.slo or SLO()
    try:
        return capacity_section(
            dict(entry),
            slo_p99_ms=slo.p99_ms or DEFAULT_SLO_P99_MS,
            max_error_rate=_given(slo.max_error_rate, DEFAULT_MAX_ERROR_RATE),
            max_reject_rate=_given(slo.max_reject_rate, DEFAULT_MAX_REJECT_RATE),
            think_time_s=scenario.load.think_time_s,
        )
    except Exception as err:  # the measurements matter more than their analysis
        return {"error": f"capacity analysis failed: {err}"}


def _given(value: float | None, default: float) -> float:
    return default if value is None else value
