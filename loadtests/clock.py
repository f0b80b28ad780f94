"""One clock for schedules, stage boundaries and records: monotonic, anchored once to Unix time.

:func:`now` is the wall-clock time at import plus the monotonic time elapsed since. It reads
like Unix time (records stay human-readable; the harness, its samplers and every Locust
process on a host agree, since CLOCK_MONOTONIC is system-wide), but a step of the system
clock during a run (NTP, an operator) moves nothing: open-loop schedules fire no burst, and
records do not jump between stages.
"""

from __future__ import annotations

import time

_ANCHOR = time.time() - time.monotonic()


def now() -> float:
    """Seconds since the epoch, advancing with the monotonic clock."""
    return _ANCHOR + time.monotonic()
