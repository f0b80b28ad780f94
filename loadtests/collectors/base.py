"""The periodic sampler every polling collector shares: a thread appending CSV rows.

Subclasses give the columns and :meth:`PeriodicSampler.sample_once`; rows are flushed after
each sample, so a run that dies keeps its samples. Start/stop and the context manager are
the same for every collector, so the orchestrator can use any of them.
"""

from __future__ import annotations

import csv
import threading
import time
from pathlib import Path
from typing import ClassVar, Self


class PeriodicSampler:
    columns: ClassVar[tuple[str, ...]] = ()
    thread_name: ClassVar[str] = "servecap-sampler"

    def __init__(self, path: Path, interval_s: float = 1.0) -> None:
        self.path = path
        self.interval_s = interval_s
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample_once(self) -> list[tuple[object, ...]]:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
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

    def _loop(self) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(self.columns)
            next_at = time.monotonic()
            while not self._stop.is_set():
                for row in self.sample_once():
                    writer.writerow(row)
                f.flush()
                self.samples += 1
                next_at += self.interval_s
                self._stop.wait(max(0.0, next_at - time.monotonic()))
