"""The launcher interface and the plan a target kind gives for starting itself."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from targets.config import ModelConfig, TargetConfig


class LaunchError(RuntimeError):
    """A target could not be started (or stopped); the message names the target and the cause."""


@dataclass(frozen=True)
class ProcessSpec:
    """One process of a target (a server, nginx, redis, a queue worker...)."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    role: str = ""
    """The docker-compose.yml service that runs this process in containers (its ``serve``
    command picks the process of this role from the kind's plan)."""
    cwd: Path | None = None
    ready_url: str | None = None
    """GET this URL until it answers 200; None = ready once started."""
    ready_port: int | None = None
    """Or: wait until this TCP port on 127.0.0.1 accepts connections."""
    fresh_dirs: tuple[Path, ...] = ()
    """Folders emptied and made (mode 0700) just before the process starts."""


@dataclass(frozen=True)
class PartRef:
    """One part of a running target that a fault acts on: a process tree or a container."""

    label: str
    pid: int | None = None
    container: str | None = None
    started: float | None = None
    """The process's start time (psutil's ``create_time``): with ``pid``, which process it is
    (a reused pid belongs to a process started later)."""


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


def prepare_dirs(spec: ProcessSpec) -> None:
    """Empty and make the spec's fresh folders (mode 0700) before its process starts."""
    for folder in spec.fresh_dirs:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, mode=0o700)


def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def probe_http(url: str, timeout_s: float = 2.0) -> bool:
    """True when ``url`` answers 200 (only ever called with loopback URLs)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
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
