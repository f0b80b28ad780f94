"""Load shapes: how many Locust users run when, for each load mode, and the stage timeline.

* ramp: :class:`StagesShape` holds each stage's user count for its duration;
* rate: :class:`RateShape` runs one open-loop arrival user per generator process for the whole
  plan; the arrival rate over time is :func:`rate_at` (users do the scheduling);
* sequential and find-max: :class:`UntilDoneShape` runs one user until it reports it is done.

``timeline.json`` holds the wall-clock start and end of every stage. Ramp and rate plans are
known in advance (written at the first tick, :func:`plan_timeline`); sequential runs and
find-max points are appended as they happen (:class:`Timeline`). Requests and resource
samples are assigned to stages from this file.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar

from locust import LoadTestShape

from analysis.contract import TIMELINE_FILE, write_json
from loadtests import clock
from loadtests.spec import Stage

DONE = threading.Event()
"""Set by a sequential or find-max user when its plan is complete."""


def plan_timeline(stages: tuple[Stage, ...], t0: float) -> list[dict[str, Any]]:
    """Wall-clock boundaries of each stage when the first one starts at ``t0``."""
    rows: list[dict[str, Any]] = []
    start = t0
    for i, st in enumerate(stages):
        row: dict[str, Any] = {"index": i, "users": st.users or 0, "duration_s": st.duration_s,
                               "start_ts": start, "end_ts": start + st.duration_s}  # fmt: skip
        if st.rps is not None:
            row["rps"] = st.rps
        else:
            row["spawn_rate"] = st.spawn_rate or st.users
        rows.append(row)
        start += st.duration_s
    return rows


def stage_at(stages: tuple[Stage, ...], run_time_s: float) -> int | None:
    """Index of the stage running ``run_time_s`` after the start; None once all are done."""
    end = 0.0
    for i, st in enumerate(stages):
        end += st.duration_s
        if run_time_s < end:
            return i
    return None


def rate_at(stages: tuple[Stage, ...], run_time_s: float) -> float | None:
    """Arrival rate (rps) ``run_time_s`` after the start; None once the plan is over.

    A stage with ``ramp: true`` rises linearly from the previous stage's rate (0 for the
    first) to its own over its duration; otherwise the rate steps.
    """
    begin = 0.0
    previous = 0.0
    for st in stages:
        rps = st.rps or 0.0
        if run_time_s < begin + st.duration_s:
            if st.ramp:
                return previous + (rps - previous) * (run_time_s - begin) / st.duration_s
            return rps
        begin += st.duration_s
        previous = rps
    return None


class Timeline:
    """A timeline built while the load runs (sequential runs, find-max points)."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / TIMELINE_FILE
        self.rows: list[dict[str, Any]] = []

    def start(self, **info: Any) -> dict[str, Any]:
        row = {"index": len(self.rows), "users": 1, "start_ts": clock.now(), "end_ts": None,
               "duration_s": None, **info}  # fmt: skip
        self.rows.append(row)
        write_json(self.path, self.rows)
        return row

    def end(self, row: dict[str, Any], **info: Any) -> None:
        row["end_ts"] = clock.now()
        row["duration_s"] = row["end_ts"] - row["start_ts"]
        self.annotate(row, **info)

    def annotate(self, row: dict[str, Any], **info: Any) -> None:
        """Add to a row what is known after it ended (a find-max rate's drain)."""
        row.update(info)
        write_json(self.path, self.rows)


class _PlannedShape(LoadTestShape):
    abstract = True
    stages: ClassVar[tuple[Stage, ...]] = ()
    out_dir: ClassVar[Path | None] = None
    end_grace_s: ClassVar[float] = 0.0
    """Remote workers: keep the last tick this long after the plan, so their final records
    (answers still in flight, the last batch) reach the master before it quits; Locust's
    headless master gives its workers only 0.5 s after "quit"."""
    _timeline_written = False
    _last: tuple[int, float] | None = None

    def _after_plan(self, run_time: float) -> tuple[int, float] | None:
        planned_s = sum(st.duration_s for st in self.stages)
        return self._last if run_time < planned_s + self.end_grace_s else None

    def _hold(self, tick: tuple[int, float]) -> tuple[int, float]:
        self._last = tick
        return tick

    def _write_timeline(self, run_time: float) -> None:
        if not self._timeline_written and self.out_dir is not None:
            write_json(
                self.out_dir / TIMELINE_FILE, plan_timeline(self.stages, clock.now() - run_time)
            )
            self._timeline_written = True


class StagesShape(_PlannedShape):
    """ramp: hold each stage's user count for its duration, then stop."""

    abstract = True  # the locustfile subclasses it with the scenario's stages

    def tick(self) -> tuple[int, float] | None:
        run_time = self.get_run_time()
        self._write_timeline(run_time)
        index = stage_at(self.stages, run_time)
        if index is None:
            return self._after_plan(run_time)
        stage = self.stages[index]
        users = stage.users or 1
        return self._hold((users, stage.spawn_rate or float(users)))


class RateShape(_PlannedShape):
    """rate: one arrival user per generator process for the whole plan."""

    abstract = True
    arrival_users: ClassVar[int] = 1

    def tick(self) -> tuple[int, float] | None:
        run_time = self.get_run_time()
        self._write_timeline(run_time)
        if stage_at(self.stages, run_time) is None:
            return self._after_plan(run_time)
        return self._hold((self.arrival_users, float(self.arrival_users)))


class UntilDoneShape(LoadTestShape):
    """sequential, find-max: one user, until it sets :data:`DONE` (or the bound passes)."""

    abstract = True
    max_duration_s: ClassVar[float] = 3600.0

    def tick(self) -> tuple[int, float] | None:
        if DONE.is_set() or self.get_run_time() > self.max_duration_s:
            return None
        return 1, 1.0
