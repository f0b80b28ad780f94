"""While the load runs: drive Locust to its end, watch the target, print each stage.

:func:`drive` starts Locust on the run's configuration and polls, every half second, the
target's health (:class:`Watchdog`: a process or container that died, a broken memory limit)
and the timeline, printing a line for each stage once it is complete on disk, and every second
updates the live view of the last seconds (:mod:`loadtests.live`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.contract import stage_number
from analysis.load import read_requests, read_timeline
from analysis.stages import stage_stats, timeline_frame
from loadtests import clock
from loadtests.collectors.docker_stats import DockerStatsSampler
from loadtests.collectors.process import ProcessTreeSampler
from loadtests.faults import Injector
from loadtests.generator import REMOTE_WORKERS_WAIT_S, GeneratorError, start_locust
from loadtests.live import RecordTail, Snapshot, View, snapshot
from loadtests.runconfig import LoadRunConfig
from targets.launchers import RunningTarget
from targets.launchers.process import stop_process_group

Echo = Callable[[str], None]
GRACE_S = 60.0
"""Beyond the planned duration, how long Locust may take before it is stopped."""
POLL_S = 0.5
LIVE_EVERY_S = 1.0


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
        sampling = self.sampler.problem()
        if problem is None and sampling is not None:
            if self.sampler.died is not None:
                problem = f"its resources are no longer measured ({sampling})"
            elif limit is not None:
                problem = (f"its memory limit ({limit} MB) cannot be enforced: {sampling} "
                           "(stopped)")  # fmt: skip
        if problem is not None:
            raise TargetFailure(f"target '{name}' {self._stage()}: {problem}")

    def _stage(self) -> str:
        timeline = read_timeline(self.tdir) or []
        now = clock.now()
        for row in timeline:
            if row["start_ts"] <= now and (row.get("end_ts") is None or now < row["end_ts"]):
                return f"during stage {stage_number(row['index'])}"
        return "before the load started" if not timeline else "after the last stage"


def drive(
    load: LoadRunConfig,
    config_path: Path,
    tdir: Path,
    sampler: ProcessTreeSampler,
    echo: Echo,
    watchdog: Watchdog | None = None,
    view: View | None = None,
    injector: Injector | None = None,
) -> None:
    """Run Locust to the end of the stages, printing each stage as it completes and showing
    the last seconds on ``view`` (:mod:`loadtests.live`) while it runs."""
    proc = start_locust(config_path, load, tdir)
    sampler.watch("generator", [proc.pid])
    deadline = time.monotonic() + load.plan.duration_s + GRACE_S
    if load.plan.remote_workers:
        deadline += REMOTE_WORKERS_WAIT_S
    reported = 0
    tail = RecordTail(tdir)
    next_view = time.monotonic()
    try:
        while proc.poll() is None:
            if time.monotonic() > deadline:
                raise GeneratorError(
                    f"Locust still running {GRACE_S:.0f} s after the planned end; stopped it"
                )
            if injector is not None:
                _inject(injector, tdir)
            if watchdog is not None:
                running = watchdog.running
                if running.control is not None and not running.containers:
                    sampler.watch("target", running.pids)  # restarted processes too
                watchdog.check()
            reported = report_stages(tdir, load, reported, echo)
            if view is not None and time.monotonic() >= next_view:
                next_view += LIVE_EVERY_S
                latest = {**sampler.latest, **(watchdog.sampler.latest if watchdog else {})}
                live = _snapshot(tdir, load, tail, latest)
                if live is not None:
                    view.show(live)
            time.sleep(POLL_S)
    finally:
        stop_process_group(proc)
        if injector is not None:
            injector.finish()
        if view is not None:
            view.close()
    log = (tdir / "locust.log").read_text(errors="replace")[-2000:]
    if read_timeline(tdir) is None:
        raise GeneratorError(f"Locust exited ({proc.returncode}) before any stage began:\n{log}")
    report_stages(tdir, load, reported, echo, final=True)
    if proc.returncode != 0:  # it ends every plan with 0 (--exit-code-on-error 0)
        how = (f"was killed by signal {-proc.returncode}" if proc.returncode < 0
               else f"exited with code {proc.returncode}")  # fmt: skip
        raise GeneratorError(f"the load generator (Locust) {how} {_when(tdir)}; the records "
                             f"so far are kept. Its last lines:\n{log}")  # fmt: skip


def _inject(injector: Injector, tdir: Path) -> None:
    """Fire the faults that are due, timed from the load's first stage start."""
    raw = read_timeline(tdir) or []
    t0 = float(raw[0]["start_ts"]) if raw else None
    starts = [float(r["start_ts"]) - (t0 or 0.0) for r in raw]
    injector.poll(t0, starts, clock.now())


def _snapshot(
    tdir: Path, load: LoadRunConfig, tail: RecordTail, latest: dict[str, tuple[float, float]]
) -> Snapshot | None:
    """The live figures now (None before the first stage starts)."""
    raw = read_timeline(tdir)
    if not raw:
        return None
    now = clock.now()
    current = next((r for r in raw if r["start_ts"] <= now
                    and (r.get("end_ts") is None or now < r["end_ts"])), raw[-1])  # fmt: skip
    total = f"/{len(load.plan.stages)}" if load.plan.mode in ("ramp", "rate") else ""
    index = current["index"]
    stage = f"stage {stage_number(index)}{total} {_stage_label(raw, index)}".strip()
    elapsed = now - float(raw[0]["start_ts"])
    rows = tail.poll(now)
    done: float | None = None
    plan = load.plan
    if plan.mode == "sequential":
        planned = sum(plan.sequential.requests) * plan.sequential.repeat
        done = tail.total / planned if planned else None
    elif plan.mode == "find-max":
        done = len(raw) / plan.find_max.max_points  # at most this many points
    return snapshot(load.target, stage, elapsed, plan.duration_s, rows, tail.window_s, latest,
                    plan.late_ms, done)  # fmt: skip


def _when(tdir: Path) -> str:
    timeline = read_timeline(tdir) or []
    now = clock.now()
    for row in timeline:
        if row["start_ts"] <= now and (row.get("end_ts") is None or now < row["end_ts"]):
            return f"during stage {stage_number(row['index'])}"
    return "after the last stage began"


def report_stages(
    tdir: Path, load: LoadRunConfig, reported: int, echo: Echo, final: bool = False
) -> int:
    """Print the stages completed since the ``reported`` first; returns how many are done."""
    raw = read_timeline(tdir)
    if raw is None:
        return reported
    # A stage is complete on disk once the next one has run for a while (the recorder flushes
    # as requests arrive), or when Locust has exited (final).
    now = clock.now()
    finished = [s for s in raw if s.get("end_ts") is not None]
    done = [
        s for i, s in enumerate(finished)
        if final or (i + 1 < len(raw) and raw[i + 1]["start_ts"] + 1.5 <= now)
    ]  # fmt: skip
    if len(done) <= reported:
        return reported
    timeline = timeline_frame(done)
    stats = stage_stats(read_requests(tdir), _no_samples(), timeline, load.plan.stage_settle_s,
                        load.primary_request, load.plan.late_ms)  # fmt: skip
    total = f"/{len(raw)}" if load.plan.mode in ("ramp", "rate") else ""
    for st in stats[reported : len(done)]:
        echo(
            f"[{load.target}] stage {stage_number(st['index'])}{total} "
            f"{_stage_label(raw, st['index'])} "
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


def _no_samples() -> pd.DataFrame:
    return pd.DataFrame(columns=["ts", "role", "cpu_pct", "mem_mb", "pss_mb"])
