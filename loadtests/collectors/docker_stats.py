"""Docker stats sampler: CPU, memory, network and block I/O of containers, from the engine.

One ``container.stats(stream=True, decode=True)`` stream per container, each read in its own
thread (the engine sends one frame a second). Rows use the psutil sampler's schema
(:data:`~loadtests.collectors.SAMPLE_COLUMNS`, ``source = "docker"``, ``name`` = the
container's name, one row per container: summing replicas is the analysis' job) followed by
:data:`DOCKER_COLUMNS`, and are appended to a CSV as they come (a run that dies keeps them).

Values, computed as ``docker stats`` computes them (docker/cli ``stats_helpers.go``):

* ``cpu_pct`` = Δ container CPU time / Δ host CPU time x online CPUs x 100 (100 = one core),
  between two consecutive rows. With the default 1 s interval that is exactly the frame's
  ``cpu_stats`` against its ``precpu_stats``; with a longer interval the window is the interval.
  The first frame of a stream only primes the counters.
* ``mem_mb`` = usage minus inactive page cache: ``total_inactive_file`` on cgroup v1 (since
  Docker 20.10; Docker 19.03 and older subtracted ``cache``), ``inactive_file`` on cgroup v2.
* ``n_procs`` = ``pids_stats.current``; ``pss_mb`` stays empty (cgroups have no PSS).
* ``net_rx_mb``/``net_tx_mb``: cumulative bytes of the container's interfaces. Empty on the
  host network (the servecap default), where a container has no interface of its own.
* ``blk_read_mb``/``blk_write_mb``: cumulative ``io_service_bytes_recursive`` read/write.
* ``mem_limit_mb``: the memory limit the engine reports (the host's memory when unlimited).

Healthchecks run inside the containers, so their few milliseconds of CPU every 5 s are counted.
"""

from __future__ import annotations

import csv
import math
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from analysis.contract import DOCKER_COLUMNS
from loadtests.collectors import SAMPLE_COLUMNS
from loadtests.collectors.base import STALE_INTERVALS

MB = 1024 * 1024
COLUMNS = (*SAMPLE_COLUMNS, *DOCKER_COLUMNS)
STOP_WAIT_S = 3.0
"""A stream yields once a second; stop() waits this long for each reader to notice."""


def cpu_percent(stats: Mapping[str, Any], previous: Mapping[str, Any]) -> float | None:
    """docker stats' CPU %: container CPU delta / host CPU delta x online CPUs x 100.

    ``previous`` is an earlier frame's ``cpu_stats`` (a frame's own ``precpu_stats`` gives
    exactly what ``docker stats`` shows). None when there is no valid window yet."""
    cpu = stats.get("cpu_stats") or {}
    total = (cpu.get("cpu_usage") or {}).get("total_usage")
    system = cpu.get("system_cpu_usage")
    prev_total = (previous.get("cpu_usage") or {}).get("total_usage")
    prev_system = previous.get("system_cpu_usage")
    if total is None or system is None or prev_total is None or not prev_system:
        return None
    cpu_delta = float(total) - float(prev_total)
    system_delta = float(system) - float(prev_system)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [])
    if system_delta <= 0:
        return None
    if cpu_delta <= 0:
        return 0.0
    return cpu_delta / system_delta * float(online or 1) * 100.0


def memory_bytes(stats: Mapping[str, Any]) -> float | None:
    """docker stats' memory usage: usage minus inactive file cache (cgroup v1 or v2)."""
    mem = stats.get("memory_stats") or {}
    usage = mem.get("usage")
    if usage is None:
        return None
    detail = mem.get("stats") or {}
    v1 = detail.get("total_inactive_file")
    if v1 is not None and v1 < usage:
        return float(usage - v1)
    v2 = detail.get("inactive_file")
    if v2 is not None and v2 < usage:
        return float(usage - v2)
    return float(usage)


def network_bytes(stats: Mapping[str, Any]) -> tuple[float, float] | None:
    networks = stats.get("networks")
    if not networks:
        return None
    rx = sum(float(n.get("rx_bytes", 0)) for n in networks.values())
    tx = sum(float(n.get("tx_bytes", 0)) for n in networks.values())
    return rx, tx


def block_bytes(stats: Mapping[str, Any]) -> tuple[float, float] | None:
    entries = (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive")
    if entries is None:
        return None
    read = write = 0.0
    for entry in entries:
        op = str(entry.get("op", "")).lower()
        if op == "read":
            read += float(entry.get("value", 0))
        elif op == "write":
            write += float(entry.get("value", 0))
    return read, write


def _mb(value: float | None) -> str:
    return "" if value is None else f"{value / MB:.2f}"


def stats_row(
    stats: Mapping[str, Any], previous_cpu: Mapping[str, Any], role: str, name: str, ts: float
) -> tuple[object, ...]:
    """One CSV row (COLUMNS) from a stats frame and the ``cpu_stats`` of the previous row."""
    cpu = cpu_percent(stats, previous_cpu)
    net = network_bytes(stats)
    blk = block_bytes(stats)
    pids = (stats.get("pids_stats") or {}).get("current")
    limit = (stats.get("memory_stats") or {}).get("limit")
    return (
        f"{ts:.3f}", role, "docker", name,
        "" if cpu is None else f"{cpu:.2f}",
        _mb(memory_bytes(stats)), "", "" if pids is None else int(pids),
        _mb(net[0] if net else None), _mb(net[1] if net else None),
        _mb(blk[0] if blk else None), _mb(blk[1] if blk else None),
        _mb(float(limit) if limit else None),
    )  # fmt: skip


class DockerStatsSampler:
    """Samples named groups of containers (``role -> container ids``) through the Docker API.

    Same interface as :class:`~loadtests.collectors.process.ProcessTreeSampler`: ``watch``,
    ``start``/``stop``, context manager, ``samples`` (rows written), ``problem()`` and
    ``gap_report()``. A container watched before ``start`` is read from ``start``; one watched
    later, at once. A container that stops ends its stream quietly; a stream that breaks while
    its container runs (the engine restarting) is opened again and the gap recorded.
    """

    def __init__(
        self, path: Path, interval_s: float = 1.0, name: str = "", client: Any | None = None
    ) -> None:
        self.path = path
        self.interval_s = interval_s
        self.name = name
        self._client = client
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._pending: list[tuple[str, str]] = []
        self._started = False
        self._file: Any = None
        self._writer: Any = None
        self.samples = 0
        self.errors: list[str] = []
        self.died: str | None = None
        """Never set: a stream that breaks is reopened (kept for the sampler interface)."""
        self._last_mem: dict[tuple[str, str], float] = {}
        self._last_cpu: dict[tuple[str, str], float] = {}
        self._last_frame: dict[str, float] = {}
        """container id -> monotonic time of its last frame (or of its watch)."""

    @property
    def last_mem_mb(self) -> dict[str, float]:
        """Latest memory (MB) per role, summed over its containers, for watchdogs."""
        with self._lock:
            totals: dict[str, float] = {}
            for (role, _), mb in self._last_mem.items():
                totals[role] = totals.get(role, 0.0) + mb
            return totals

    @property
    def latest(self) -> dict[str, tuple[float, float]]:
        """Latest (CPU %, memory MB) per role, summed over its containers (live view)."""
        with self._lock:
            cpu: dict[str, float] = {}
            for (role, _), pct in self._last_cpu.items():
                cpu[role] = cpu.get(role, 0.0) + pct
            mem: dict[str, float] = {}
            for (role, _), mb in self._last_mem.items():
                mem[role] = mem.get(role, 0.0) + mb
            return {role: (cpu.get(role, 0.0), mem.get(role, 0.0)) for role in {*cpu, *mem}}

    @property
    def stale_after_s(self) -> float:
        return STALE_INTERVALS * self.interval_s + 1.0

    def problem(self) -> str | None:
        """A watched, running container without stats for longer than ``stale_after_s``."""
        now = time.monotonic()
        with self._lock:
            quiet = {cid: now - t for cid, t in self._last_frame.items()}
        late = [(cid, s) for cid, s in quiet.items() if s > self.stale_after_s]
        if not late or self._stop.is_set():
            return None
        cid, quiet_s = max(late, key=lambda item: item[1])
        last = f": {self.errors[-1]}" if self.errors else ""
        return f"DockerStatsSampler has had no stats of {cid[:12]} for {quiet_s:.0f} s{last}"

    def gap_report(self) -> str | None:
        if not self.errors:
            return None
        return f"DockerStatsSampler: {len(self.errors)} stats streams broke ({self.errors[-1]})"

    @property
    def client(self) -> Any:
        if self._client is None:
            import docker

            self._client = docker.from_env(timeout=60)
        return self._client

    def watch(self, role: str, containers: Iterable[str]) -> None:
        with self._lock:
            items = [(role, cid) for cid in containers]
            if not self._started:
                self._pending += items
                return
        for role_, cid in items:
            self._follow(role_, cid)

    def start(self) -> DockerStatsSampler:
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._file = self.path.open("a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(COLUMNS)
            self._file.flush()
        with self._lock:
            self._started = True
            pending, self._pending = self._pending, []
        for role, cid in pending:
            self._follow(role, cid)
        return self

    def stop(self) -> None:
        self._stop.set()
        deadline = time.monotonic() + STOP_WAIT_S
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> DockerStatsSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _follow(self, role: str, container_id: str) -> None:
        name = f"docker-stats-{container_id[:12]}"
        thread = threading.Thread(
            target=self._read, args=(role, container_id), name=name, daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _read(self, role: str, container_id: str) -> None:
        """Follow one container's stats stream until the stop or the container's end;
        reopen it (recording the break) when it breaks while the container runs."""
        with self._lock:
            self._last_frame[container_id] = time.monotonic()
        while not self._stop.is_set():
            error = self._stream(role, container_id)
            if self._stop.is_set():
                break
            if error is not None:
                self.errors.append(f"{container_id[:12]}: {error}")
            if not self._running(container_id):
                break  # the container ended (or is gone): the target's health says so
            if error is None:
                self.errors.append(f"{container_id[:12]}: stats stream ended; reopened")
            self._stop.wait(self.interval_s)
        with self._lock:
            self._last_frame.pop(container_id, None)

    def _running(self, container_id: str) -> bool:
        try:
            return bool(self.client.containers.get(container_id).status == "running")
        except Exception:
            return False

    def _stream(self, role: str, container_id: str) -> str | None:
        """Read frames until the stream ends; returns why it ended when it failed."""
        try:
            container = self.client.containers.get(container_id)
            name = self.name or container.name
            stream = container.stats(stream=True, decode=True)
        except Exception as err:  # container gone, engine unreachable: no rows, no crash
            return str(err)
        previous: Mapping[str, Any] | None = None
        last_ts = 0.0
        try:
            for frame in stream:
                if self._stop.is_set():
                    break
                now = time.time()
                with self._lock:
                    self._last_frame[container_id] = time.monotonic()
                if previous is None:
                    previous, last_ts = frame.get("cpu_stats") or {}, now
                    continue
                if now - last_ts < self.interval_s - 0.25:
                    continue
                row = stats_row(frame, previous, role, name, now)
                previous, last_ts = frame.get("cpu_stats") or {}, now
                mem = memory_bytes(frame)
                if mem is not None:
                    with self._lock:
                        self._last_mem[(role, container_id)] = mem / MB
                self._write(row)
        except Exception as err:  # the engine went away mid-stream
            return str(err)
        return None

    def _write(self, row: tuple[object, ...]) -> None:
        with self._lock:
            if self._writer is None:
                return
            try:  # SAMPLE_COLUMNS: ts, role, source, name, cpu_pct, ... (numbers or text)
                cpu = float(row[4])  # type: ignore[arg-type]
            except (TypeError, ValueError):
                cpu = math.nan
            if cpu == cpu:
                self._last_cpu[(str(row[1]), str(row[3]))] = cpu
            self._writer.writerow(row)
            self._file.flush()
            self.samples += 1
