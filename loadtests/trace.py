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

Files are read as a stream, row by row, and every limit is checked as the row that breaks it
is read (at most :data:`MAX_INTERVALS` intervals; a timestamp trace is read twice, its span
checked on the first pass before any interval is made), so a small file describing a huge
plan fails at once. Errors name the file and line: a UTF-8 byte-order mark is allowed, a
field longer than csv's limit (128 KiB) or a number too large to plan is said plainly.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

from loadtests.spec import MAX_RPS

MAX_INTERVALS = 1_000
"""A plan holds at most this many stages: merge intervals (``interval_s``) for longer traces."""
MAX_STAGE_S = 86_400
"""The longest stage (a plan's limit): a longer interval is an error naming its line."""


class TraceError(ValueError):
    """The trace file is missing or malformed; the message names the file, row and fix."""


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each non-blank row, the header first; streamed."""
    line = 0
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: a BOM is not a header
            reader = csv.reader(f)
            for row in reader:
                line = reader.line_num
                if row and any(c.strip() for c in row):
                    yield line, row
    except OSError as err:
        raise TraceError(f"cannot read trace {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise TraceError(f"trace {path}, after line {line}: not UTF-8 text (a CSV file is "
                         "expected)") from None  # fmt: skip
    except csv.Error as err:  # a field past csv's 128 KiB limit, a NUL byte...
        raise TraceError(
            f"trace {path}, line {line + 1}: not a trace row ({err}); a trace holds short "
            "numbers, a row per interval or request"
        ) from None


def _header(path: Path, records: Iterator[tuple[int, list[str]]], needs: str) -> list[str]:
    for _, row in records:
        return [c.strip().lower() for c in row]
    raise TraceError(f"trace {path} is empty; it needs a header with {needs}")


def _number(path: Path, line: int, text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"trace {path}, line {line}: {what} '{text[:40]}' is not a "
                         "number") from None  # fmt: skip
    if not math.isfinite(value) or value < 0:
        raise TraceError(f"trace {path}, line {line}: {what} must be a number >= 0, got "
                         f"{text[:40]}")  # fmt: skip
    return value


def _cell(path: Path, line: int, row: list[str], col: int, what: str) -> float:
    """Column ``col`` of a row as a number >= 0 (a short row is a missing value)."""
    return _number(path, line, row[col] if col < len(row) else "", what)


def read_rates(path: Path, interval_s: float) -> Iterator[tuple[int, float, float]]:
    """(line, rps, duration_s) per row of a ``rates`` trace, streamed; at most
    :data:`MAX_INTERVALS` rows."""
    records = _records(path)
    header = _header(path, records, "an 'rps' column")
    if "rps" not in header:
        raise TraceError(f"trace {path} needs a header with an 'rps' column (and optionally "
                         f"'duration_s'); found {', '.join(header)[:200]}")  # fmt: skip
    col, dur = header.index("rps"), header.index("duration_s") if "duration_s" in header else None
    for count, (line, row) in enumerate(records, start=1):
        if count > MAX_INTERVALS:
            raise TraceError(f"trace {path}, line {line}: more than {MAX_INTERVALS} intervals; "
                             "merge rows (a longer interval each) or cut the trace")  # fmt: skip
        rps = _cell(path, line, row, col, "rps")
        duration = interval_s if dur is None else _cell(path, line, row, dur, "duration_s")
        if duration <= 0:
            raise TraceError(f"trace {path}, line {line}: duration_s must be positive")
        yield line, rps, duration


def _stamps(path: Path) -> Iterator[tuple[int, float]]:
    records = _records(path)
    header = _header(path, records, "a 'timestamp_s' column")
    if "timestamp_s" not in header:
        raise TraceError(f"trace {path} needs a header with a 'timestamp_s' column; found "
                         f"{', '.join(header)[:200]}")  # fmt: skip
    col = header.index("timestamp_s")
    for line, row in records:
        yield line, _cell(path, line, row, col, "timestamp_s")


def read_timestamps(path: Path, interval_s: float) -> list[tuple[float, float]]:
    """(rps, interval_s) per interval of a ``timestamps`` trace, from its first request. Two
    streamed passes: the span, checked against :data:`MAX_INTERVALS` as each row is read,
    then the counts."""
    first = last = None
    for line, ts in _stamps(path):
        first = ts if first is None else min(first, ts)
        last = ts if last is None else max(last, ts)
        if (last - first) / interval_s >= MAX_INTERVALS:
            raise TraceError(
                f"trace {path}, line {line}: timestamp {ts:g} makes the trace span "
                f"{last - first:g} s, more than {MAX_INTERVALS} intervals of {interval_s:g} s; "
                "raise interval_s or cut the trace"
            )
    if first is None or last is None:
        raise TraceError(f"trace {path} holds no request")
    bins = math.floor((last - first) / interval_s) + 1
    counts = [0] * bins
    for _, ts in _stamps(path):
        counts[min(bins - 1, math.floor((ts - first) / interval_s))] += 1
    return [(n / interval_s, interval_s) for n in counts]


def trace_stages(
    path: Path, form: str, interval_s: float, time_scale: float, rate_scale: float
) -> list[dict[str, float]]:
    """The trace as ``rate`` stages (``rps``, ``duration_s``), scaled; each checked against
    the plan's limits as it is made (a rates trace's error names the row's line)."""
    if form == "rates":
        intervals: Iterable[tuple[int | None, float, float]] = read_rates(path, interval_s)
    else:
        intervals = ((None, r, d) for r, d in read_timestamps(path, interval_s))
    speed = time_scale if form == "timestamps" else 1.0
    stages = []
    for line, rps, duration in intervals:
        stage = {"rps": rps * speed * rate_scale, "duration_s": duration / time_scale}
        where = f"trace {path}" + (f", line {line}" if line is not None else "")
        if stage["rps"] > MAX_RPS:
            raise TraceError(f"{where}: a rate of {stage['rps']:g} rps (scaled) is more than "
                             f"{MAX_RPS} rps; lower rate_scale or time_scale")  # fmt: skip
        if not 0 < stage["duration_s"] <= MAX_STAGE_S:
            raise TraceError(f"{where}: an interval of {stage['duration_s']:g} s (scaled) is "
                             f"not between 0 and {MAX_STAGE_S} s")  # fmt: skip
        stages.append(stage)
    if not any(s["rps"] > 0 for s in stages):
        raise TraceError(f"trace {path} has no request at all (every rate is 0)")
    return stages


def planned_requests(stages: list[dict[str, float]]) -> float:
    """Requests the replayed trace sends: the sum of rate x duration."""
    return sum(s["rps"] * s["duration_s"] for s in stages)
