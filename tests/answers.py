"""Reading what a target answered, for tests that check more than the status."""

from __future__ import annotations

import contextlib
import http.client
import urllib.parse


def timings(header: str) -> dict[str, float]:
    """``Server-Timing`` entries as {name: ms}."""
    out = {}
    for entry in header.split(","):
        name, _, dur = entry.strip().partition(";dur=")
        out[name] = float(dur)
    return out


def post_status(url: str, body: bytes, content_type: str = "application/json") -> int:
    """The HTTP status a POST of ``body`` to ``url`` gets (errors included). A server may
    answer (413) and close before the whole body is sent: its answer is read all the same."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        # when it stopped reading, its answer is already on the way
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.request("POST", path, body=body, headers={"Content-Type": content_type})
        return conn.getresponse().status
    finally:
        conn.close()
