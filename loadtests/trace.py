"""Trace replay (``mode: trace``): open-loop arrivals that follow a recorded load.

A trace is a CSV file, in one of two forms:

``rates``       one row per interval: ``rps`` (and optionally ``duration_s``; default the
                trace's ``interval_s``), e.g. a day of per-minute rates;
``timestamps``  one row per request: ``timestamp_s`` (seconds, any origin), binned into
                ``interval_s`` intervals whose rate is their count / ``interval_s``.

``time_scale`` plays it faster: durations (rates) or timestamps are divided by it, so a day of
per-minute rates with ``time_scale: 60`` plays in 24 minutes at the same rates, and the
requests of a timestamp trace arrive 60 times closer together. ``rate_scale`` multiplies
every rate (size a recorded shape to a target). Each interval becomes one stage of a ``rate``
plan (constant or Poisson arrivals, with the same lag accounting), so the results have a row
per interval: p99 and served load over time.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

MAX_INTERVALS = 1_000
"""A plan holds at most this many stages: merge intervals (``interval_s``) for longer traces."""


class TraceError(ValueError):
    """The trace file is missing or malformed; the message names the file, row and fix."""


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except OSError as err:
        raise TraceError(f"cannot read trace {path}: {err.strerror or err}") from None
    if not rows:
        raise TraceError(f"trace {path} is empty")
    header = [c.strip().lower() for c in rows[0]]
    return header, rows[1:]


def _number(path: Path, line: int, text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"trace {path}, line {line}: {what} '{text}' is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise TraceError(f"trace {path}, line {line}: {what} must be a number >= 0, got {text}")
    return value


def _cell(path: Path, line: int, row: list[str], col: int, what: str) -> float:
    """Column ``col`` of a row as a number >= 0 (a short row is a missing value)."""
    return _number(path, line, row[col] if col < len(row) else "", what)


def read_rates(path: Path, interval_s: float) -> list[tuple[float, float]]:
    """(rps, duration_s) per row of a ``rates`` trace."""
    header, rows = _rows(path)
    if "rps" not in header:
        raise TraceError(f"trace {path} needs a header with an 'rps' column (and optionally "
                         f"'duration_s'); found {', '.join(header)}")  # fmt: skip
    col, dur = header.index("rps"), header.index("duration_s") if "duration_s" in header else None
    out = []
    for i, row in enumerate(rows, start=2):
        rps = _cell(path, i, row, col, "rps")
        duration = interval_s if dur is None else _cell(path, i, row, dur, "duration_s")
        if duration <= 0:
            raise TraceError(f"trace {path}, line {i}: duration_s must be positive")
        out.append((rps, duration))
    return out


def read_timestamps(path: Path, interval_s: float) -> list[tuple[float, float]]:
    """(rps, interval_s) per interval of a ``timestamps`` trace, from its first request."""
    header, rows = _rows(path)
    if "timestamp_s" not in header:
        raise TraceError(f"trace {path} needs a header with a 'timestamp_s' column; found "
                         f"{', '.join(header)}")  # fmt: skip
    col = header.index("timestamp_s")
    stamps = [_cell(path, i, row, col, "timestamp_s") for i, row in enumerate(rows, start=2)]
    if not stamps:
        raise TraceError(f"trace {path} holds no request")
    first = min(stamps)
    bins = math.floor((max(stamps) - first) / interval_s) + 1
    counts = [0] * bins
    for ts in stamps:
        counts[min(bins - 1, math.floor((ts - first) / interval_s))] += 1
    return [(n / interval_s, interval_s) for n in counts]


def trace_stages(
    path: Path, form: str, interval_s: float, time_scale: float, rate_scale: float
) -> list[dict[str, float]]:
    """The trace as ``rate`` stages (``rps``, ``duration_s``), scaled."""
    intervals = read_rates(path, interval_s) if form == "rates" else \
        read_timestamps(path, interval_s)  # fmt: skip
    if len(intervals) > MAX_INTERVALS:
        raise TraceError(f"trace {path} has {len(intervals)} intervals, more than "
                         f"{MAX_INTERVALS}: raise interval_s")  # fmt: skip
    speed = time_scale if form == "timestamps" else 1.0
    stages = [{"rps": rps * speed * rate_scale, "duration_s": duration / time_scale}
              for rps, duration in intervals]  # fmt: skip
    if not any(s["rps"] > 0 for s in stages):
        raise TraceError(f"trace {path} has no request at all (every rate is 0)")
    return stages


def planned_requests(stages: list[dict[str, float]]) -> float:
    """Requests the replayed trace sends: the sum of rate x duration."""
    return sum(s["rps"] * s["duration_s"] for s in stages)
