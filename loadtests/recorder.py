"""Per-request records: every request Locust makes, one CSV row, written as it happens.

Locust aggregates latencies into rounded buckets; servecap computes its percentiles from
these raw rows instead. Rows are flushed every second, so a run that dies keeps what it
measured. Each Locust process writes its own ``requests-<pid>.csv`` part.
"""

from __future__ import annotations

import csv
import math
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from analysis.contract import REJECT_STATUS, REQUEST_COLUMNS
from loadtests import clock
from targets.protocols.servecap import MODEL_VERSION_HEADER

COLUMNS = tuple(REQUEST_COLUMNS)
"""The columns of every row, in order (:data:`analysis.contract.REQUEST_COLUMNS` says what
each holds). Open-loop (rate) requests carry their *scheduled* send time in the request
context: then ``ts`` is the scheduled time and ``lag_ms`` how late the generator actually
sent it, so a generator or a server that falls behind can never hide queueing (no
coordinated omission)."""

Observer = Callable[[float, float, str, float], None]
"""Called with (ts, latency_ms, outcome, lag_ms) for every request (find-max watches these)."""

Row = list[str | int]
Forward = Callable[[list[Row]], None]
"""Sends a batch of rows elsewhere (a remote worker to its master)."""


def classify(status: int, exception: object | None) -> str:
    if status == REJECT_STATUS:
        return "rejected"
    if exception is None and 200 <= status < 300:
        return "ok"
    return "error"


OUTCOMES = frozenset({"ok", "error", "rejected"})
CLOCK_SLACK_S = 600.0
"""A forwarded row's time may differ from the master's clock by at most this (host skew)."""


MAX_VERSION_CHARS = 64


def _model_version(response: Any) -> str:
    """The X-Model-Version header of an HTTP answer ("" when there is none)."""
    headers = getattr(response, "headers", None)
    try:
        value = headers.get(MODEL_VERSION_HEADER) if headers is not None else None
    except Exception:  # a client's header object that cannot be asked
        return ""
    return str(value)[:MAX_VERSION_CHARS] if value else ""


def valid_row(row: object, now_ts: float) -> bool:
    """Whether a row forwarded by a remote worker fits :data:`COLUMNS` (types, ranges, a time
    near ``now_ts``); the master drops what does not, so a stray peer cannot poison a run."""
    if not isinstance(row, list) or len(row) != len(COLUMNS):
        return False
    ts, latency, status, size, name, outcome, users, error, *times, version = row
    try:
        fields_ok = (
            abs(float(ts) - now_ts) <= CLOCK_SLACK_S
            and 0.0 <= float(latency) <= 86_400_000.0
            and isinstance(status, int) and 0 <= status <= 999
            and isinstance(size, int) and 0 <= size <= 1 << 34
            and isinstance(name, str) and len(name) <= 200
            and outcome in OUTCOMES
            and isinstance(users, int) and 0 <= users <= 1_000_000
            and isinstance(error, str) and len(error) <= 2_000
            and all(t == "" or math.isfinite(float(t)) for t in times)
            and isinstance(version, str) and len(version) <= MAX_VERSION_CHARS
        )  # fmt: skip
    except (TypeError, ValueError):
        return False
    return bool(fields_ok) and math.isfinite(float(ts)) and math.isfinite(float(latency))


def append_rows(out_dir: Path, part: str, rows: list[Row]) -> Path:
    """Append rows to ``requests-<part>.csv`` (header first when new): the master's side of
    :class:`RequestRecorder`'s ``forward`` mode."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", part)[:80]
    path = Path(out_dir) / f"requests-{safe}.csv"
    new = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(COLUMNS)
        writer.writerows(rows)
    return path


class RequestRecorder:
    """A Locust ``request`` event listener appending rows to a CSV part file.

    With ``forward`` (a remote worker), rows are batched and handed to ``forward`` every
    flush instead: nothing is written on this host.
    """

    def __init__(
        self, out_dir: Path, flush_interval_s: float = 1.0, forward: Forward | None = None
    ) -> None:
        self.path = Path(out_dir) / f"requests-{os.getpid()}.csv"
        self._forward = forward
        self._batch: list[Row] = []
        self._file: IO[str] | None = None
        if forward is None:
            self._file = self.path.open("w", newline="", encoding="utf-8")
            self._writer = csv.writer(self._file)
            self._writer.writerow(COLUMNS)
            self._file.flush()
        self._flush_interval_s = flush_interval_s
        self._last_flush = time.monotonic()
        self.rows = 0
        self.user_count = lambda: 0
        self.observers: list[Observer] = []
        self.observed_name: str | None = None
        """Observers see only requests of this name (a job queue's ``job``) when set."""

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int,
        response: Any = None,
        exception: Any = None,
        start_time: float | None = None,
        context: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        status = int(getattr(response, "status_code", 0) or 0)
        outcome = classify(status, exception)
        context = context or {}
        started = start_time if start_time is not None else clock.now() - response_time / 1000
        service_ms, client_ms = response_time, 0.0
        wire_ms = context.get("wire_ms")
        # Only a complete answer (a status) ends the wire time: a timeout or reset after a
        # partial read keeps Locust's timing, which runs to the failure.
        if wire_ms is not None and status and 0 <= wire_ms <= response_time:
            started = context.get("sent_ts", started)
            service_ms, client_ms = wire_ms, response_time - wire_ms
        scheduled = context.get("scheduled_ts")
        ts = scheduled if scheduled is not None else started
        lag_ms = max(0.0, (started - ts) * 1000)
        latency_ms = service_ms + lag_ms
        error = "" if outcome == "ok" else str(exception or f"HTTP {status}")[:200]
        self._write(
            [
                f"{ts:.6f}",
                f"{latency_ms:.3f}",
                status,
                response_length or 0,
                name,
                outcome,
                self.user_count(),
                error,
                f"{service_ms:.3f}",
                f"{lag_ms:.3f}",
                f"{client_ms:.3f}",
                _model_version(response),
            ]
        )
        if self.observed_name in (None, name):
            for observer in self.observers:
                observer(ts, latency_ms, outcome, lag_ms)
        self.rows += 1
        now = time.monotonic()
        if now - self._last_flush >= self._flush_interval_s:
            self.flush()
            self._last_flush = now

    def _write(self, row: Row) -> None:
        if self._forward is not None:
            self._batch.append(row)
        else:
            self._writer.writerow(row)

    def flush(self) -> None:
        if self._forward is not None:
            if self._batch:
                batch, self._batch = self._batch, []
                self._forward(batch)
        elif self._file is not None and not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        self.flush()
        if self._file is not None and not self._file.closed:
            self._file.close()
