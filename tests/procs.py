"""The processes of servers that tests start, found by their command line."""

from __future__ import annotations

import psutil

from targets.common.apps import FASTAPI_APP


def server_pids(port: int, marker: str = FASTAPI_APP) -> list[psutil.Process]:
    """The server processes serving on ``port`` whose command line holds ``marker``: by
    default the FastAPI server (uvicorn and its workers); :data:`SLEEPY` for the sleepy kind."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        args = proc.info["cmdline"] or []
        if any(marker in arg for arg in args) and str(port) in args:
            found.append(proc)
    return found


SLEEPY = "sleepy/server.py"
"""What the ``sleepy`` test kind's server has on its command line."""
