"""``servecap run``: start each target, warm it up, drive the load, sample resources, summarise.

For every target of the scenario, in order::

    launch (process group or containers) -> warm-up requests -> sampler + Locust -> stages
    -> stop Locust, sampler and target -> merge records -> stage statistics

A target that fails to start is recorded as failed and the run goes on with the next one.
Ctrl-C or SIGTERM stops the load and the target, and the data collected so far is
finalised and summarised before exiting. Nothing is left running in any case.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import yaml

from analysis.capacity import (
    DEFAULT_MAX_ERROR_RATE,
    DEFAULT_MAX_REJECT_RATE,
    DEFAULT_SLO_P99_MS,
    capacity_section,
)
from analysis.load import read_requests, read_timeline
from analysis.stages import flag_generator, json_safe, stage_stats, timeline_frame
from loadtests.bodies import build_bodies
from loadtests.collectors.docker_stats import DockerStatsSampler
from loadtests.collectors.gpu import GpuSampler
from loadtests.collectors.process import ProcessTreeSampler
from loadtests.generator import REMOTE_WORKERS_WAIT_S, GeneratorError, start_locust, warm_up
from loadtests.meta import git_info, host_info, package_versions
from loadtests.results import finalize_target, mode_results, write_paper_tables
from loadtests.runconfig import LoadRunConfig
from loadtests.spec import SLO, Scenario, ScenarioFile
from targets.config import TargetConfig
from targets.launchers import LaunchError, RunningTarget, get_launcher
from targets.launchers.process import stop_process_group
from targets.registry import REPO_ROOT
from targets.tfserving import protocol as tfs

Echo = Callable[[str], None]
GRACE_S = 60.0
"""Beyond the planned duration, how long Locust may take before it is stopped."""


@dataclass
class RunOptions:
    scenario: str
    spec: ScenarioFile
    scenarios_file: Path
    out_dir: Path | None = None
    launcher: str = "process"
    data_dir: str | None = None
    seed: int = 0


@dataclass
class RunOutcome:
    out_dir: Path
    summary: dict[str, Any]
    failures: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures and not self.interrupted


def default_out_dir(scenario: str) -> Path:
    return Path("results") / f"{scenario}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


class PreflightError(ValueError):
    """The run cannot work: found before anything started. The message lists every problem."""


def preflight(options: RunOptions, launcher: Any) -> None:
    """Check every target and the dataset before starting the first target."""
    from targets.common.dataset import DatasetError, load_split

    scenario = options.spec.scenario(options.scenario)
    problems: list[str] = []
    for name in scenario.targets:
        try:
            launcher.preflight(name, options.spec.targets[name])
        except LaunchError as err:
            problems.append(str(err))
    try:
        load_split("test", options.data_dir, limit=min(scenario.load.image_pool, 10_000))
    except (DatasetError, ValueError, OSError) as err:
        problems.append(f"dataset: {err}")
    if problems:
        raise PreflightError(
            f"scenario '{options.scenario}' cannot run; nothing was started:\n  - "
            + "\n  - ".join(problems)
        )


def run(options: RunOptions, echo: Echo = print) -> RunOutcome:
    scenario = options.spec.scenario(options.scenario)
    launcher = get_launcher(options.launcher)
    preflight(options, launcher)
    # Absolute: Locust runs with the target's folder as its working directory.
    out = (options.out_dir or default_out_dir(options.scenario)).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _write_resolved(out, options, scenario)
    meta: dict[str, Any] = {
        "scenario": options.scenario,
        "scenarios_file": str(options.scenarios_file),
        "command": shlex.join(sys.argv),
        "started_at": datetime.now(UTC).isoformat(),
        "launcher": launcher.name,
        "data_dir": options.data_dir,
        "versions": package_versions(),
        "host": host_info(),
        "git": git_info(REPO_ROOT),
        "targets": {},
    }
    outcome = RunOutcome(out, {"scenario": options.scenario, "runs": []})
    echo(f"servecap: scenario '{options.scenario}' -> {out}")
    try:
        for name in scenario.targets:
            entry = _run_target(name, scenario, options, out, launcher, echo)
            outcome.summary["runs"].append(entry)
            meta["targets"][name] = {k: entry.get(k) for k in ("time_to_ready_s", "status")}
            if entry["status"] != "ok":
                outcome.failures.append(f"{name}: {entry.get('error')}")
            if entry["status"] == "interrupted":
                outcome.interrupted = True
                break
        if scenario.load.mode == "sequential":
            for path in write_paper_tables(out, outcome.summary):
                echo(f"paper tables: {path}")
    finally:
        meta["ended_at"] = datetime.now(UTC).isoformat()
        (out / "meta.json").write_text(json.dumps(json_safe(meta), indent=2))
        (out / "summary.json").write_text(json.dumps(json_safe(outcome.summary), indent=2))
    return outcome


def _write_resolved(out: Path, options: RunOptions, scenario: Scenario) -> None:
    resolved = {
        "scenario": options.scenario,
        "definition": scenario.model_dump(mode="json"),
        "targets": {n: options.spec.targets[n].model_dump(mode="json") for n in scenario.targets},
    }
    (out / "scenario.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))


def load_config_for(
    name: str, config: TargetConfig, scenario: Scenario, data_dir: str | None, tdir: Path,
    seed: int = 0,
) -> LoadRunConfig:  # fmt: skip
    """The load generator's view of one target: where, which client, which plan."""
    paths = {"predict": "/v1/predict", "tfserving-rest": tfs.rest_predict_path(),
             "tfserving-grpc": "", "jobqueue": "/v1/jobs"}  # fmt: skip
    grpc = config.client == "tfserving-grpc"
    if scenario.load.mode != "ramp" and config.client in ("tfserving-grpc", "jobqueue"):
        raise ValueError(
            f"target '{name}' ({config.client} client) supports only load mode ramp, "
            f"not {scenario.load.mode}"
        )
    slo = scenario.slo
    return LoadRunConfig(
        target=name, base_url=config.base_url, client=config.client,
        predict_path=paths[config.client],
        grpc_target=f"127.0.0.1:{config.tf_grpc_port}" if grpc else None,
        plan=scenario.load, data_dir=data_dir, out_dir=str(tdir.resolve()), seed=seed,
        slo_p99_ms=slo.p99_ms if slo else None,
        max_error_rate=slo.max_error_rate if slo and slo.max_error_rate is not None else 0.01,
    )  # fmt: skip


def _run_target(
    name: str, scenario: Scenario, options: RunOptions, out: Path, launcher: Any, echo: Echo
) -> dict[str, Any]:
    config = options.spec.targets[name]
    tdir = out / name
    tdir.mkdir(parents=True, exist_ok=True)
    entry: dict[str, Any] = {"target": name, "kind": config.kind, "launcher": launcher.name,
                             "status": "ok", "error": None, "time_to_ready_s": None}  # fmt: skip
    echo(f"[{name}] starting ({launcher.name} launcher)")
    load: LoadRunConfig | None = None
    try:
        load = load_config_for(name, config, scenario, options.data_dir, tdir, options.seed)
        config_path = tdir / "load_config.json"
        load.write(config_path)
        bodies, content_type = build_bodies(load)  # fails early on an unreadable dataset
        with launcher.launch(name, config, tdir / "logs") as running:
            entry["time_to_ready_s"] = round(running.time_to_ready_s, 3)
            echo(f"[{name}] ready in {running.time_to_ready_s:.1f} s at {running.base_url}")
            warm_ms = warm_up(load, bodies[0], content_type, scenario.load.warmup_requests)
            entry["warmup_mean_ms"] = round(warm_ms, 3)
            interval = scenario.collect.interval_s
            with contextlib.ExitStack() as samplers:
                # generator + host always from psutil; the target from psutil (processes) or
                # from the Docker stats API (containers); GPUs whenever NVML sees one
                sampler = samplers.enter_context(
                    ProcessTreeSampler(tdir / "resources.csv", interval)
                )
                target_sampler: ProcessTreeSampler | DockerStatsSampler = sampler
                if running.containers:
                    target_sampler = samplers.enter_context(
                        DockerStatsSampler(tdir / "resources-docker.csv", interval)
                    )
                    target_sampler.watch("target", running.containers)
                else:
                    sampler.watch("target", running.pids)
                gpu = samplers.enter_context(GpuSampler(tdir / "resources-gpu.csv", interval))
                entry["gpu"] = "sampled" if gpu.available else gpu.reason
                watchdog = Watchdog(running, target_sampler, tdir)
                if scenario.load.remote_workers:
                    plan = scenario.load
                    echo(f"[{name}] waiting for {plan.remote_workers} remote worker(s) on "
                         f"{plan.master_bind_host}:{plan.master_port}; on each host run: "
                         f"servecap worker --scenario {options.scenario} --target {name} "
                         f"--master-host <this host's address> "
                         f"--host <{name}'s URL as that host reaches it>")  # fmt: skip
                    if plan.master_bind_host.startswith("127."):
                        echo(f"[{name}] note: the master listens on loopback only; workers on "
                             "other hosts need load.master_bind_host set to an address they "
                             "reach")  # fmt: skip
                _drive(load, config_path, tdir, sampler, echo, watchdog)
    except KeyboardInterrupt:
        entry.update(status="interrupted", error="interrupted by the user")
        echo(f"[{name}] interrupted: stopping and keeping the data collected so far")
    except (LaunchError, GeneratorError, TargetFailure, OSError, ValueError) as err:
        entry.update(status="failed", error=str(err))
        echo(f"[{name}] FAILED: {err}")
    plan = scenario.load
    primary = load.primary_request if load else None
    final = finalize_target(tdir, plan.stage_settle_s, primary)
    entry["stages"] = flag_generator(final.stages, plan.workers, psutil.cpu_count())
    entry["overall"] = final.overall
    entry["requests"] = sum(s["requests"] for s in entry["stages"])
    for st in entry["stages"]:
        if (st.get("error_rate") or 0) > 0.05:
            echo(f"[{name}] stage {st['index'] + 1}: {st['error_rate']:.0%} of requests failed, "
                 f"most often: {st.get('top_error')}")  # fmt: skip
    for st in entry["stages"]:
        if not st["generator_ok"]:
            echo(f"[{name}] WARNING: stage {st['index'] + 1}: load generator saturated or behind "
                 f"schedule ({'; '.join(st['generator_issues'])}): its figures understate what "
                 "the target can do")  # fmt: skip
    entry.update(mode_results(tdir, plan.mode))
    if plan.mode != "sequential":  # one user throughout: no load curve to read capacity from
        entry["capacity"] = _capacity(entry, scenario)
    return entry


def _capacity(entry: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
    """The run's capacity section under the scenario's SLO (p99 500 ms when it sets none).

    Never fails the run: a problem in the analysis is recorded in the section instead.
    """
    slo = scenario.slo or SLO()
    try:
        return capacity_section(
            entry,
            slo_p99_ms=slo.p99_ms or DEFAULT_SLO_P99_MS,
            max_error_rate=_given(slo.max_error_rate, DEFAULT_MAX_ERROR_RATE),
            max_reject_rate=_given(slo.max_reject_rate, DEFAULT_MAX_REJECT_RATE),
            think_time_s=scenario.load.think_time_s,
        )
    except Exception as err:  # the measurements matter more than their analysis
        return {"error": f"capacity analysis failed: {err}"}


def _given(value: float | None, default: float) -> float:
    return default if value is None else value


class TargetFailure(RuntimeError):
    """The target died, or broke its memory limit, while the load ran."""


class Watchdog:
    """Polled during the load: the target's own health check and its memory limit."""

    def __init__(
        self, running: RunningTarget, sampler: ProcessTreeSampler | DockerStatsSampler, tdir: Path
    ) -> None:
        self.running = running
        self.sampler = sampler
        self.tdir = tdir

    def check(self) -> None:
        name = self.running.name
        problem = self.running.health()
        limit = self.running.config.memory_limit_mb
        used = self.sampler.last_mem_mb.get("target")
        if problem is None and limit is not None and used is not None and used > limit:
            problem = f"exceeded its memory limit: {used:.0f} MB > {limit} MB (stopped)"
        if problem is not None:
            raise TargetFailure(f"target '{name}' {self._stage()}: {problem}")

    def _stage(self) -> str:
        timeline = read_timeline(self.tdir) or []
        now = time.time()
        for row in timeline:
            if row["start_ts"] <= now and (row.get("end_ts") is None or now < row["end_ts"]):
                return f"during stage {row['index'] + 1}"
        return "before the load started" if not timeline else "after the last stage"


def _drive(
    load: LoadRunConfig,
    config_path: Path,
    tdir: Path,
    sampler: ProcessTreeSampler,
    echo: Echo,
    watchdog: Watchdog | None = None,
) -> None:
    """Run Locust to the end of the stages, printing each stage as it completes."""
    proc = start_locust(config_path, load, tdir)
    sampler.watch("generator", [proc.pid])
    deadline = time.monotonic() + load.plan.duration_s + GRACE_S
    if load.plan.remote_workers:
        deadline += REMOTE_WORKERS_WAIT_S
    reported = 0
    try:
        while proc.poll() is None:
            if time.monotonic() > deadline:
                raise GeneratorError(
                    f"Locust still running {GRACE_S:.0f} s after the planned end; stopped it"
                )
            if watchdog is not None:
                watchdog.check()
            reported = _report_stages(tdir, load, reported, echo)
            time.sleep(0.5)
    finally:
        stop_process_group(proc)
    if read_timeline(tdir) is None:
        log = (tdir / "locust.log").read_text(errors="replace")[-2000:]
        raise GeneratorError(f"Locust exited ({proc.returncode}) before any stage began:\n{log}")
    _report_stages(tdir, load, reported, echo, final=True)


def _report_stages(
    tdir: Path, load: LoadRunConfig, reported: int, echo: Echo, final: bool = False
) -> int:
    raw = read_timeline(tdir)
    if raw is None:
        return reported
    # A stage is complete on disk once the next one has run for a while (the recorder flushes
    # as requests arrive), or when Locust has exited (final).
    now = time.time()
    finished = [s for s in raw if s.get("end_ts") is not None]
    done = [
        s for i, s in enumerate(finished)
        if final or (i + 1 < len(raw) and raw[i + 1]["start_ts"] + 1.5 <= now)
    ]  # fmt: skip
    if len(done) <= reported:
        return reported
    timeline = timeline_frame(done)
    stats = stage_stats(
        read_requests(tdir), _no_samples(), timeline, load.plan.stage_settle_s, load.primary_request
    )
    total = f"/{len(raw)}" if load.plan.mode in ("ramp", "rate") else ""
    for st in stats[reported : len(done)]:
        echo(
            f"[{load.target}] stage {st['index'] + 1}{total} {_stage_label(raw, st['index'])} "
            f"rps={st['rps']:7.1f} p50={st['p50_ms']:7.1f} ms p99={st['p99_ms']:7.1f} ms "
            f"errors={st['error_rate']:.1%} rejected={st['reject_rate']:.1%}"
        )
    return len(done)


def _stage_label(timeline: list[dict[str, Any]], index: int) -> str:
    row = next(r for r in timeline if r["index"] == index)
    if "requests" in row:  # sequential
        return f"N={row['requests']:<6} run {row.get('repeat', 0) + 1}"
    if "rps" in row:
        return f"rate={row['rps']:<7.1f}" + ("" if row.get("passed") is None else
                                            (" PASS" if row["passed"] else " FAIL"))  # fmt: skip
    return f"users={row['users']:<4}"


def _no_samples() -> Any:
    import pandas as pd

    return pd.DataFrame(columns=["ts", "role", "cpu_pct", "mem_mb", "pss_mb"])
