"""The periodic sampler every polling collector shares: a thread appending CSV rows.

Subclasses give the columns and :meth:`PeriodicSampler.sample_once`; rows are flushed after
each sample, so a run that dies keeps its samples. Start/stop and the context manager are
the same for every collector, so the orchestrator can use any of them.

A sample that raises (the Docker API restarting, a /proc read racing an exit) does not stop
the sampler: it is counted, the gap it leaves is recorded (:attr:`PeriodicSampler.gaps`), and
the next sample is taken on schedule. Only a failure outside sampling (the CSV cannot be
written) ends the thread; :meth:`PeriodicSampler.problem` then says so, and so it does while
no sample has succeeded for longer than ``stale_after_s``. The watchdog reads it.
"""

from __future__ import annotations

import csv
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

STALE_INTERVALS = 5
"""No good sample for this many intervals (plus a second) counts as a sampler problem."""


@dataclass
class Gap:
    """Consecutive failed samples: from the first failure to the next good sample."""

    start_ts: float
    end_ts: float | None
    failures: int
    error: str


def _number(value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return number if number == number else 0.0  # NaN: nothing measured


class PeriodicSampler:
    columns: ClassVar[tuple[str, ...]] = ()
    thread_name: ClassVar[str] = "servecap-sampler"

    def __init__(self, path: Path, interval_s: float = 1.0) -> None:
        self.path = path
        self.interval_s = interval_s
        self.samples = 0
        self.failures = 0
        self.last_error: str | None = None
        self.gaps: list[Gap] = []
        self.died: str | None = None
        """Why the thread ended before :meth:`stop` (None while it runs or after a stop)."""
        self.latest: dict[str, tuple[float, float]] = {}
        """The last sample per role: (CPU %, memory MB) summed over its sources (live view)."""
        self._last_good = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample_once(self) -> list[tuple[object, ...]]:
        raise NotImplementedError

    def start(self) -> Self:
        self._last_good = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * self.interval_s + 5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def stale_after_s(self) -> float:
        return STALE_INTERVALS * self.interval_s + 1.0

    def problem(self) -> str | None:
        """What is wrong with this sampler now (None while it samples)."""
        name = type(self).__name__
        if self.died is not None:
            return f"{name} stopped: {self.died}"
        quiet_s = time.monotonic() - self._last_good
        if self._thread is not None and quiet_s > self.stale_after_s and self.failures:
            return f"{name} has had no sample for {quiet_s:.0f} s: {self.last_error}"
        return None

    def gap_report(self) -> str | None:
        """One line on the samples lost, for the run's summary (None when none were)."""
        if not self.failures:
            return None
        spans = ", ".join(
            f"{g.failures} from {g.start_ts:.0f}" + (f" to {g.end_ts:.0f}" if g.end_ts else "")
            for g in self.gaps[:5]
        )
        return (f"{type(self).__name__}: {self.failures} samples failed ({spans}); "
                f"last error: {self.last_error}")  # fmt: skip

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as err:  # the CSV cannot be written: say so, do not vanish
            self.died = f"{type(err).__name__}: {err}"

    def _loop(self) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(self.columns)
            next_at = time.monotonic()
            while not self._stop.is_set():
                rows = self._sample_guarded()
                for row in rows:
                    writer.writerow(row)
                f.flush()
                next_at += self.interval_s
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _sample_guarded(self) -> list[tuple[object, ...]]:
        try:
            rows = self.sample_once()
        except Exception as err:
            self._failed(f"{type(err).__name__}: {err}")
            return []
        self.samples += 1
        self._last_good = time.monotonic()
        latest: dict[str, tuple[float, float]] = {}
        for row in rows:  # SAMPLE_COLUMNS first: ts, role, source, name, cpu_pct, mem_mb
            cpu, mem = latest.get(str(row[1]), (0.0, 0.0))
            latest[str(row[1])] = (cpu + _number(row[4]), mem + _number(row[5]))
        self.latest = latest
        if self.gaps and self.gaps[-1].end_ts is None:
            self.gaps[-1].end_ts = time.time()
        return rows

    def _failed(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
        if not self.gaps or self.gaps[-1].end_ts is not None:
            self.gaps.append(Gap(time.time(), None, 0, error))
        self.gaps[-1].failures += 1
