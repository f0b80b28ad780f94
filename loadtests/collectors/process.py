"""psutil sampler: CPU % and memory of whole process trees, every ``interval_s``, in a thread.

CPU is computed per process from ``cpu_times`` deltas, so workers that appear mid-run are
counted from their first sample and workers that exit drop out without negative spikes.
Rows are appended to a CSV as they are taken (a run that dies keeps its samples).

RSS is read every sample (``/proc/<pid>/statm``, ~0.01 ms). PSS needs a walk of
``/proc/<pid>/smaps``: about 14 ms on a 740 MB TensorFlow worker, during which the kernel
holds the target's memory-map lock. It is read every ``pss_interval_s`` (default 10 s) per
process, and the last value is reported in between: memory moves slowly, the target should
not pay for the observation.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import psutil

from loadtests.collectors import SAMPLE_COLUMNS
from loadtests.collectors.base import PeriodicSampler

MB = 1024 * 1024


class ProcessTreeSampler(PeriodicSampler):
    """Samples named groups of process trees (``role -> root pids``) plus the host."""

    columns = SAMPLE_COLUMNS

    def __init__(
        self, path: Path, interval_s: float = 1.0, name: str = "", pss_interval_s: float = 10.0
    ) -> None:
        super().__init__(path, interval_s)
        self.name = name
        self.pss_interval_s = pss_interval_s
        self._pss: dict[tuple[int, float], tuple[float, float]] = {}
        """(pid, create time) -> (PSS bytes, monotonic): a reused pid never inherits a PSS."""
        self._roles: dict[str, list[int]] = {}
        self._last: dict[int, tuple[float, float]] = {}  # pid -> (cpu seconds, monotonic)
        self._procs: dict[int, psutil.Process] = {}
        self._lock = threading.Lock()
        self.last_mem_mb: dict[str, float] = {}
        """Latest RSS (MB) per role, for watchdogs."""

    def watch(self, role: str, pids: list[int]) -> None:
        with self._lock:
            self._roles[role] = list(pids)

    def start(self) -> ProcessTreeSampler:
        psutil.cpu_percent(None)  # prime the host counter
        return super().start()

    def sample_once(self) -> list[tuple[object, ...]]:
        ts = time.time()
        with self._lock:
            roles = dict(self._roles)
        rows: list[tuple[object, ...]] = []
        for role, roots in roles.items():
            cpu, rss, pss, n = self._tree_usage(roots)
            if n:
                self.last_mem_mb[role] = rss / MB
                rows.append((f"{ts:.3f}", role, "psutil", self.name or role, f"{cpu:.2f}",
                             f"{rss / MB:.2f}", f"{pss / MB:.2f}", n))  # fmt: skip
        mem = psutil.virtual_memory()
        host_cpu = psutil.cpu_percent(None) * (psutil.cpu_count() or 1)
        used_mb = (mem.total - mem.available) / MB
        rows.append(
            (f"{ts:.3f}", "host", "psutil", "host", f"{host_cpu:.2f}", f"{used_mb:.2f}", "", "")
        )
        return rows

    def _tree_usage(self, roots: list[int]) -> tuple[float, float, float, int]:
        procs: dict[int, psutil.Process] = {}
        for pid in roots:
            with contextlib.suppress(psutil.Error):
                root = self._procs.get(pid) or psutil.Process(pid)
                procs[pid] = root
                for child in root.children(recursive=True):
                    procs[child.pid] = self._procs.get(child.pid, child)
        now = time.monotonic()
        cpu_pct = rss = pss = 0.0
        alive = 0
        for pid, proc in procs.items():
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    used = times.user + times.system
                    proc_rss, proc_pss = self._memory(pid, proc, now)
            except psutil.Error:
                continue
            alive += 1
            rss += proc_rss
            pss += proc_pss
            last = self._last.get(pid)
            if last is not None and now > last[1]:
                cpu_pct += 100.0 * (used - last[0]) / (now - last[1])
            self._last[pid] = (used, now)
        self._procs = {**self._procs, **procs}
        return cpu_pct, rss, pss, alive

    def _memory(self, pid: int, proc: psutil.Process, now: float) -> tuple[float, float]:
        """(RSS, PSS) in bytes; PSS re-read only every ``pss_interval_s``."""
        key = (pid, proc.create_time())
        cached = self._pss.get(key)
        if cached is not None and now - cached[1] < self.pss_interval_s:
            return float(proc.memory_info().rss), cached[0]
        mem = proc.memory_full_info()
        pss = float(getattr(mem, "pss", mem.rss))
        self._pss[key] = (pss, now)
        return float(mem.rss), pss
