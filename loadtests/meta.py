"""``meta.json``: what a result was measured on (versions, host, git commit)."""

from __future__ import annotations

import importlib.metadata
import platform
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil


def package_versions() -> dict[str, str | None]:
    """servecap's version and that of every package it depends on (as installed)."""
    names = ["servecap", "keras"]
    try:
        requires = importlib.metadata.requires("servecap") or []
    except importlib.metadata.PackageNotFoundError:
        requires = []
    names += [re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0] for r in requires if "extra ==" not in r]
    versions: dict[str, str | None] = {}
    for name in dict.fromkeys(names):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def host_info() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count_logical": psutil.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "mem_total_mb": round(psutil.virtual_memory().total / 2**20),
        "python": sys.version.split()[0],
    }


def git_info(repo: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=5
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
    }
