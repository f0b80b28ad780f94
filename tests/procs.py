"""The processes of servers that tests start, found by their command line."""

from __future__ import annotations

import psutil

from targets.common.apps import FASTAPI_APP


def server_pids(port: int) -> list[psutil.Process]:
    """The FastAPI server processes (uvicorn and its workers) serving on ``port``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        args = proc.info["cmdline"] or []
        if FASTAPI_APP in args and str(port) in args:
            found.append(proc)
    return found
