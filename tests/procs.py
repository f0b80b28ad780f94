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


def launched_tree(flag: str, port: int) -> list[psutil.Process]:
    """The processes started with ``flag PORT`` on their command line, and their children
    (a framework's workers)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if f"{flag} {port} " in " ".join(proc.info["cmdline"] or []) + " ":
            found.append(proc)
            found += proc.children(recursive=True)
    return found
