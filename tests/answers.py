"""Reading what a target answered, for tests that check more than the status."""

from __future__ import annotations


def timings(header: str) -> dict[str, float]:
    """``Server-Timing`` entries as {name: ms}."""
    out = {}
    for entry in header.split(","):
        name, _, dur = entry.strip().partition(";dur=")
        out[name] = float(dur)
    return out
