"""Reading what a target answered, for tests that check more than the status."""

from __future__ import annotations

import urllib.error
import urllib.request


def timings(header: str) -> dict[str, float]:
    """``Server-Timing`` entries as {name: ms}."""
    out = {}
    for entry in header.split(","):
        name, _, dur = entry.strip().partition(";dur=")
        out[name] = float(dur)
    return out


def post_status(url: str, body: bytes, content_type: str = "application/json") -> int:
    """The HTTP status a POST of ``body`` to ``url`` gets (errors included)."""
    request = urllib.request.Request(url, body, {"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as err:
        return err.code
