"""Load shapes: the scenario's stages as a Locust ``LoadTestShape``.

On its first tick the shape writes ``timeline.json``: the wall-clock start and end of every
planned stage. Requests and resource samples are assigned to stages from it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import ClassVar

from locust import LoadTestShape

from loadtests.spec import Stage

TIMELINE_FILE = "timeline.json"


def plan_timeline(stages: tuple[Stage, ...], t0: float) -> list[dict[str, float | int]]:
    """Wall-clock boundaries of each stage when the first one starts at ``t0``."""
    rows: list[dict[str, float | int]] = []
    start = t0
    for i, st in enumerate(stages):
        rows.append(
            {
                "index": i,
                "users": st.users,
                "spawn_rate": st.spawn_rate or st.users,
                "duration_s": st.duration_s,
                "start_ts": start,
                "end_ts": start + st.duration_s,
            }
        )
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


class StagesShape(LoadTestShape):
    """Hold each stage's user count for its duration, then stop."""

    abstract = True  # the locustfile subclasses it with the scenario's stages
    stages: ClassVar[tuple[Stage, ...]] = ()
    out_dir: ClassVar[Path | None] = None
    _timeline_written = False

    def tick(self) -> tuple[int, float] | None:
        run_time = self.get_run_time()
        if not self._timeline_written and self.out_dir is not None:
            timeline = plan_timeline(self.stages, time.time() - run_time)
            (self.out_dir / TIMELINE_FILE).write_text(json.dumps(timeline, indent=1))
            self._timeline_written = True
        index = stage_at(self.stages, run_time)
        if index is None:
            return None
        stage = self.stages[index]
        return stage.users, stage.spawn_rate or float(stage.users)
