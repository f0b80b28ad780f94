"""Per-request records: every request Locust makes, one CSV row, written as it happens.

Locust aggregates latencies into rounded buckets; servecap computes its percentiles from
these raw rows instead. Rows are flushed every second, so a run that dies keeps what it
measured. Each Locust process writes its own ``requests-<pid>.csv`` part.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import IO, Any

COLUMNS = ("ts", "latency_ms", "status", "bytes", "name", "outcome", "users", "error")
"""ts: request start (Unix s); outcome: ok | error | rejected (503 from max_works)."""

REJECT_STATUS = 503


def classify(status: int, exception: object | None) -> str:
    if status == REJECT_STATUS:
        return "rejected"
    if exception is None and 200 <= status < 300:
        return "ok"
    return "error"


class RequestRecorder:
    """A Locust ``request`` event listener appending rows to a CSV part file."""

    def __init__(self, out_dir: Path, flush_interval_s: float = 1.0) -> None:
        self.path = Path(out_dir) / f"requests-{os.getpid()}.csv"
        self._file: IO[str] = self.path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(COLUMNS)
        self._flush_interval_s = flush_interval_s
        self._last_flush = time.monotonic()
        self.rows = 0
        self.user_count = lambda: 0

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int,
        response: Any = None,
        exception: Any = None,
        start_time: float | None = None,
        **_: Any,
    ) -> None:
        status = int(getattr(response, "status_code", 0) or 0)
        outcome = classify(status, exception)
        ts = start_time if start_time is not None else time.time() - response_time / 1000
        error = "" if outcome == "ok" else str(exception or f"HTTP {status}")[:200]
        self._writer.writerow(
            (
                f"{ts:.6f}",
                f"{response_time:.3f}",
                status,
                response_length or 0,
                name,
                outcome,
                self.user_count(),
                error,
            )
        )
        self.rows += 1
        now = time.monotonic()
        if now - self._last_flush >= self._flush_interval_s:
            self._file.flush()
            self._last_flush = now

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._file.close()
