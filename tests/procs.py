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


def launched_tree(flag: str, port: int) -> list[psutil.Process]:
    """The processes started with ``flag PORT`` on their command line, and their children
    (a framework's workers)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if f"{flag} {port} " in " ".join(proc.info["cmdline"] or []) + " ":
            found.append(proc)
            found += proc.children(recursive=True)
    return found
