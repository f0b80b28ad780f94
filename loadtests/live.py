"""A run you can watch: the last seconds of load, while it runs.

:class:`RecordTail` follows the recorder's CSV parts (only the bytes added since the last
look, so a long run costs no more per second than a short one) and keeps the last
:data:`WINDOW_S` seconds of requests. Every second the monitor turns them, the samplers'
latest values and the plan's timeline into a :class:`Snapshot`, shown by one of two views:

* :class:`RichView` in a terminal (the ``rich`` library): the stage, elapsed and remaining
  time, a progress bar over the whole plan, and the last seconds' throughput, p50/p99,
  errors, rejections, target CPU and memory, and the generator's health;
* :class:`PlainView` anywhere else (CI logs, a file): the same figures as one plain line
  every :data:`PLAIN_EVERY_S` seconds.

Figures here are a display, not results: results come from the whole records at the end.
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from analysis.contract import REQUEST_PARTS

WINDOW_S = 5.0
"""The live figures cover the requests of the last this many seconds."""
PLAIN_EVERY_S = 10.0
LATE_SHARE_WARN = 0.05
"""A generator sending more than this share of requests late is shown as behind."""
GENERATOR_CPU_WARN_PCT = 90.0


class RecordTail:
    """The requests of the last ``window_s`` seconds, read incrementally from the CSV parts."""

    def __init__(self, folder: Path, window_s: float = WINDOW_S) -> None:
        self.folder = folder
        self.window_s = window_s
        self._offsets: dict[Path, int] = {}
        self._columns: dict[Path, list[str]] = {}
        self._rows: deque[tuple[float, float, str, float]] = deque()
        """(ts, latency_ms, outcome, lag_ms), in arrival order."""
        self.total = 0
        """Every request read so far."""

    def poll(self, now: float) -> list[tuple[float, float, str, float]]:
        for part in sorted(self.folder.glob(REQUEST_PARTS)):
            self._read(part)
        while self._rows and self._rows[0][0] < now - self.window_s:
            self._rows.popleft()
        return [r for r in self._rows if r[0] >= now - self.window_s]

    def _read(self, part: Path) -> None:
        offset = self._offsets.get(part, 0)
        try:
            with part.open("rb") as f:
                f.seek(offset)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n")
        if end < 0:
            return
        self._offsets[part] = offset + end + 1
        lines = data[: end + 1].decode("utf-8", errors="replace")
        reader = csv.reader(io.StringIO(lines))
        if part not in self._columns:
            self._columns[part] = next(reader, [])
        cols = self._columns[part]
        try:
            at = [cols.index(c) for c in ("ts", "latency_ms", "outcome", "lag_ms")]
        except ValueError:
            return
        for row in reader:
            try:
                self._rows.append((float(row[at[0]]), float(row[at[1]]), row[at[2]],
                                   float(row[at[3]] or 0)))  # fmt: skip
            except (IndexError, ValueError):
                continue
            self.total += 1


@dataclass(frozen=True)
class Snapshot:
    """What the views show, at one instant."""

    target: str
    stage: str
    """``stage 2/5 users=4`` (or the plan's label for the stage), or ``starting``."""
    elapsed_s: float
    planned_s: float
    """The plan's length (ramp, rate, trace); for sequential and find-max its bound."""
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    error_share: float
    reject_share: float
    target_cpu_pct: float | None
    target_mem_mb: float | None
    generator_cpu_pct: float | None
    late_share: float
    late_ms: float
    done: float | None = None
    """Share of the plan done when time does not say it (sequential: requests sent of those
    planned); None: elapsed / planned."""

    @property
    def progress(self) -> float:
        if self.done is not None:
            return min(1.0, self.done)
        return min(1.0, self.elapsed_s / self.planned_s) if self.planned_s > 0 else 0.0

    @property
    def remaining(self) -> str:
        """Time left: exact for timed plans, an estimate (~) from the pace so far otherwise."""
        if self.done is None:
            return f"{max(0.0, self.planned_s - self.elapsed_s):.0f} s"
        if self.done <= 0:
            return "?"
        return f"~{self.elapsed_s * (1 - min(1.0, self.done)) / self.done:.0f} s"

    @property
    def generator(self) -> str:
        """``ok``, or why the generator's figures may understate the target."""
        issues = []
        if self.generator_cpu_pct is not None and self.generator_cpu_pct > GENERATOR_CPU_WARN_PCT:
            issues.append(f"CPU {self.generator_cpu_pct:.0f}%")
        if self.late_share > LATE_SHARE_WARN:
            issues.append(f"{self.late_share:.0%} sent >{self.late_ms:g} ms late")
        return "ok" if not issues else "BEHIND: " + ", ".join(issues)


def snapshot(
    target: str, stage: str, elapsed_s: float, planned_s: float,
    rows: list[tuple[float, float, str, float]], window_s: float,
    latest: dict[str, tuple[float, float]], late_ms: float, done: float | None = None,
) -> Snapshot:  # fmt: skip
    """The figures of the last ``window_s`` seconds of ``rows`` (RecordTail.poll)."""
    ok = np.array([r[1] for r in rows if r[2] == "ok"], dtype=float)
    n = len(rows)
    target_use = latest.get("target")
    generator_use = latest.get("generator")
    return Snapshot(
        target=target, stage=stage, elapsed_s=elapsed_s, planned_s=planned_s,
        rps=len(ok) / window_s if window_s > 0 else 0.0,
        p50_ms=float(np.percentile(ok, 50)) if len(ok) else None,
        p99_ms=float(np.percentile(ok, 99)) if len(ok) else None,
        error_share=sum(r[2] == "error" for r in rows) / n if n else 0.0,
        reject_share=sum(r[2] == "rejected" for r in rows) / n if n else 0.0,
        target_cpu_pct=target_use[0] if target_use else None,
        target_mem_mb=target_use[1] if target_use else None,
        generator_cpu_pct=generator_use[0] if generator_use else None,
        late_share=sum(r[3] > late_ms for r in rows) / n if n else 0.0, late_ms=late_ms,
        done=done,
    )  # fmt: skip


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:{spec}}{unit}"


def plain_line(s: Snapshot) -> str:
    return (
        f"[{s.target}] live {s.stage} {s.elapsed_s:.0f} s, {s.progress:.0%} done, "
        f"{s.remaining} left: "
        f"last {WINDOW_S:g} s rps={s.rps:.1f} p50={_fmt(s.p50_ms, '.1f', ' ms')} "
        f"p99={_fmt(s.p99_ms, '.1f', ' ms')} errors={s.error_share:.1%} "
        f"rejected={s.reject_share:.1%} target cpu={_fmt(s.target_cpu_pct, '.0f', '%')} "
        f"mem={_fmt(s.target_mem_mb, '.0f', ' MB')} generator {s.generator}"
    )


class View(Protocol):
    def show(self, s: Snapshot) -> None: ...

    def close(self) -> None: ...


class PlainView:
    """One plain line every ``every_s`` seconds (logs, files, CI)."""

    def __init__(self, echo: Callable[[str], None], every_s: float = PLAIN_EVERY_S) -> None:
        self.echo = echo
        self.every_s = every_s
        self._next = time.monotonic() + every_s

    def show(self, s: Snapshot) -> None:
        if time.monotonic() >= self._next:
            self._next += self.every_s
            self.echo(plain_line(s))

    def close(self) -> None:
        pass


class RichView:
    """A live panel in the terminal; lines printed meanwhile (stage results) appear above it."""

    def __init__(self, file: Any = None) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console(file=file or sys.stdout)
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TimeRemainingColumn(), console=self.console,
        )  # fmt: skip
        self.task = self.progress.add_task("load", total=1.0)
        self.live = Live(self._render(None), console=self.console, refresh_per_second=2,
                         redirect_stdout=True, redirect_stderr=False, transient=True)  # fmt: skip
        self.live.start()

    def _render(self, s: Snapshot | None) -> Any:
        from rich.console import Group
        from rich.table import Table

        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        for col in (
            "stage",
            "elapsed",
            "remaining",
            f"rps ({WINDOW_S:g} s)",
            "p50",
            "p99",
            "errors",
            "rejected",
            "target CPU",
            "target mem",
            "generator",
        ):
            table.add_column(col)  # fmt: skip
        if s is not None:
            table.add_row(
                s.stage, f"{s.elapsed_s:.0f} s", s.remaining, f"{s.rps:.1f}",
                _fmt(s.p50_ms, ".1f", " ms"), _fmt(s.p99_ms, ".1f", " ms"),
                f"{s.error_share:.1%}", f"{s.reject_share:.1%}",
                _fmt(s.target_cpu_pct, ".0f", "%"), _fmt(s.target_mem_mb, ".0f", " MB"),
                s.generator if s.generator == "ok" else f"[red]{s.generator}[/red]",
            )  # fmt: skip
        return Group(self.progress, table)

    def show(self, s: Snapshot) -> None:
        self.progress.update(self.task, completed=s.progress,
                             description=f"{s.target} {s.stage}")  # fmt: skip
        self.live.update(self._render(s))

    def close(self) -> None:
        self.live.stop()


def make_view(echo: Callable[[str], None], interactive: bool | None = None) -> View:
    """The rich view when stdout is a terminal (``interactive`` None: ask), else plain lines
    through ``echo``."""
    if interactive is None:
        interactive = sys.stdout.isatty()
    return RichView() if interactive else PlainView(echo)
