"""The launcher interface: what a started target is, what faults may do to it, and the helpers
every launcher uses (model fetch, held signals, port and readiness probes).

The plain types a kind declares (``ProcessSpec``, ``Probe``...) and ``LaunchError`` live in
:mod:`targets.launch_types`; they are re-exported here for the modules that import them from
the launchers.
"""

from __future__ import annotations

import contextlib
import random
import signal
import socket
import threading
import urllib.error
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from targets.common import loopback
from targets.config import ModelConfig, TargetConfig
from targets.launch_types import LaunchError, PartRef, ProcessSpec, prepare_dirs

__all__ = [
    "LaunchError",
    "Launcher",
    "PartRef",
    "ProcessSpec",
    "RunningTarget",
    "TargetControl",
    "free_port",
    "held_signals",
    "port_is_free",
    "prepare_dirs",
    "probe_http",
    "probe_tcp",
    "tail",
    "with_fetched_model",
]


class TargetControl(Protocol):
    """What faults do to a running target's parts (``loadtests.faults``). A part killed or
    restarted through it is expected to die: the launcher restarts it as a deployment would
    (supervision), and its health check does not report that death as a failure."""

    def resolve(self, part: str, index: int) -> PartRef:
        """The ``index``-th (1-based) part called ``part``; LaunchError naming the parts."""
        ...

    def kill(self, ref: PartRef) -> None: ...

    def restart(self, ref: PartRef) -> None: ...

    def pause(self, ref: PartRef) -> None: ...

    def resume(self, ref: PartRef) -> None: ...

    def cpu_limit(self, ref: PartRef, cpus: float | None) -> None:
        """Limit the part to ``cpus`` cores; None lifts the limit."""
        ...

    def update_model(self, part: str, model_path: str) -> None:
        """Serve ``model_path`` from now on: every process of ``part`` restarted on it, one
        at a time (a rolling restart), in the background."""
        ...


@dataclass
class RunningTarget:
    """A started target, as the collectors and the load generator need it."""

    name: str
    config: TargetConfig
    base_url: str
    launcher: str
    time_to_ready_s: float
    pids: list[int] = field(default_factory=list)
    """Root processes; the collector samples each one's whole process tree."""
    containers: list[str] = field(default_factory=list)
    logs_dir: Path | None = None
    health: Callable[[], str | None] = lambda: None
    """Polled during the run: None while the target is up, else what went wrong (a process
    or container exited, was OOM-killed...)."""
    control: TargetControl | None = None
    """Fault injection (None: the launcher has none, e.g. external servers)."""


class Launcher(Protocol):
    name: str

    def preflight(self, name: str, config: TargetConfig) -> None:
        """Raise LaunchError, before anything starts, when the target cannot start."""
        ...

    def launch(
        self, name: str, config: TargetConfig, logs_dir: Path
    ) -> contextlib.AbstractContextManager[RunningTarget]:
        """Start the target, wait until it is ready, yield it; stop everything on exit."""
        ...


def with_fetched_model(name: str, config: TargetConfig) -> TargetConfig:
    """``config`` with its ``model_url`` archive fetched, verified and unpacked (once: the
    cache is content-addressed) and served from there as ``model_path``; unchanged without a
    ``model_url``. Every process and container of the target then reads the same files."""
    if not isinstance(config, ModelConfig) or config.model_url is None:
        return config
    from targets.common.model_fetch import ModelFetchError, fetch_model, model_root

    assert config.model_sha256 is not None  # the config requires it with model_url
    try:
        folder = fetch_model(config.model_url, config.model_sha256,
                             max_bytes=config.model_max_mb * 2**20)  # fmt: skip
    except ModelFetchError as err:
        raise LaunchError(f"target '{name}': {err}") from None
    return config.model_copy(update={"model_path": str(model_root(folder)), "model_url": None})


HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Let a teardown or a results write finish: SIGINT (Ctrl-C) and SIGTERM received meanwhile
    are held and delivered afterwards (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in HELD_SIGNALS}
    for sig in HELD_SIGNALS:
        signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for signum in dict.fromkeys(received):
        signal.raise_signal(signum)


def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


FREE_PORT_BLOCK = 4
"""A target uses its port and the three after it (app server, model server or Redis, gRPC)."""
FREE_PORT_RANGE = (20_000, 32_000)
"""Below Linux's default ephemeral range (32768-60999): client sockets of the load generator
come from there and would otherwise take a target's second or third port between the check
and the launch."""


def free_port(block: int = FREE_PORT_BLOCK) -> int:
    """The first of ``block`` consecutive free loopback ports, drawn from
    :data:`FREE_PORT_RANGE` (for servers started on any free port: tests, benchmarks)."""
    low, high = FREE_PORT_RANGE
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(low, high - block)
        if all(port_is_free("127.0.0.1", port + i) for i in range(block)):
            return port
    raise RuntimeError(f"no {block} consecutive free ports in {low}-{high}")


def probe_http(url: str, timeout_s: float = 2.0) -> bool:
    """True when ``url`` answers 200 (only ever called with loopback URLs)."""
    try:
        with loopback.urlopen(url, timeout_s) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def probe_tcp(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(empty log)"
