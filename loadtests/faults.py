"""Faults inside a scenario (``faults:``): what to break, when, and the injector that does it.

::

    faults:
      - {target: jq, part: worker, index: 1, action: kill, stage: 2, offset_s: 5}
      - {part: model-server, action: stop, at_s: 40, duration_s: 3}
      - {part: replica, index: 2, action: cpu_limit, cpus: 0.25, at_s: 60, duration_s: 10}

``at_s`` counts from the start of the load; ``stage`` + ``offset_s`` from a stage's start.
Actions: ``kill`` (SIGKILL; a container: killed), ``stop`` for ``duration_s`` (SIGSTOP then
SIGCONT; a container: paused), ``restart`` (SIGTERM, then started again; a container:
restarted), ``cpu_limit`` to ``cpus`` for ``duration_s`` (a container: ``docker update``; a
process tree: its CPU affinity, rounded up to whole CPUs), ``model_update`` to ``model_path``
(the model-load pattern: every process of the part is restarted on the new model, one after
the other, each ready before the next; answers say which version served them). Parts are
roles of the target's kind (:attr:`targets.kind.Kind.part_roles`: ``worker``, ``web``,
``redis``; any of its container services), ``model-server`` (the model-serving role),
``worker`` of a server that forks workers (a uvicorn or gunicorn worker process), or
``replica`` (a container replica of the model server), with a 1-based ``index``.

A part killed by a fault is restarted the way a deployment would restart it (the launcher's
supervision: :class:`targets.launchers.base.TargetControl`); the watchdog knows the death was
injected and the run goes on. A death that no fault caused still fails the run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from targets.config import StrictModel

FaultAction = Literal["kill", "stop", "restart", "cpu_limit", "model_update"]
GENERIC_PARTS = ("model-server", "worker", "replica")
FAULTS_FILE = "faults.json"
"""Per target: the faults injected, when, and what happened (``analysis.faults`` reads it)."""


class Fault(StrictModel):
    """One timed action against a part of a target."""

    action: FaultAction
    part: str = Field(description="a role of the target's kind, model-server, worker or replica")
    index: int = Field(default=1, ge=1, le=1_000, description="which one of that part (1-based)")
    target: str | None = Field(default=None, description="default: every target of the scenario")
    at_s: float | None = Field(default=None, ge=0, le=86_400, description="from the load start")
    stage: int | None = Field(default=None, ge=1, le=1_000, description="1-based stage")
    offset_s: float = Field(default=0.0, ge=0, le=86_400, description="after the stage starts")
    duration_s: float | None = Field(default=None, gt=0, le=86_400, description="stop, cpu_limit")
    cpus: float | None = Field(default=None, gt=0, le=1_024, description="cpu_limit: cores")
    model_path: str | None = Field(
        default=None, description="model_update: the new SavedModel (a version folder)"
    )

    @model_validator(mode="after")
    def _when_and_what(self) -> Fault:
        if (self.at_s is None) == (self.stage is None):
            raise ValueError("give the time as at_s, or as stage (with offset_s), not both")
        if self.action in ("stop", "cpu_limit") and self.duration_s is None:
            raise ValueError(f"action {self.action} needs duration_s")
        if self.action == "cpu_limit" and self.cpus is None:
            raise ValueError("action cpu_limit needs cpus (the cores left to the part)")
        if self.action not in ("stop", "cpu_limit") and self.duration_s is not None:
            raise ValueError(f"action {self.action} takes no duration_s")
        if (self.action == "model_update") != (self.model_path is not None):
            raise ValueError("model_path goes with action model_update (the new model), and "
                             "model_update needs it")  # fmt: skip
        return self

    def start_s(self, stage_starts_s: list[float]) -> float | None:
        """Seconds after the load start (None: its stage never starts)."""
        if self.at_s is not None:
            return self.at_s
        assert self.stage is not None
        if self.stage > len(stage_starts_s):
            return None
        return stage_starts_s[self.stage - 1] + self.offset_s


@dataclass
class FaultEvent:
    """A fault as it happened: recorded in ``faults.json``."""

    index: int
    action: str
    part: str
    part_index: int
    planned_s: float
    start_ts: float | None = None
    end_ts: float | None = None
    """When a stop or a CPU limit was lifted (None: instantaneous or not lifted)."""
    what: str = ""
    """The process or container it acted on."""
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Injector:
    """Fires a target's faults at their times, from the monitor's polling loop."""

    faults: list[Fault]
    control: Any
    """The running target's :class:`targets.launchers.base.TargetControl`."""
    echo: Callable[[str], None]
    target: str
    events: list[FaultEvent] = field(default_factory=list)
    _pending: list[tuple[int, Fault]] = field(default_factory=list)
    _undo: list[tuple[float, FaultEvent, Callable[[], None]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._pending = list(enumerate(self.faults))

    def poll(self, load_t0: float | None, stage_starts_s: list[float], now: float) -> None:
        """Fire what is due (``load_t0``: the load's first stage start, None before it)."""
        with self._lock:
            for until, event, undo in list(self._undo):
                if now >= until:
                    self._undo.remove((until, event, undo))
                    self._run(event, undo)
                    event.end_ts = time.time()
            if load_t0 is None:
                return
            for item in list(self._pending):
                i, fault = item
                start = fault.start_s(stage_starts_s)
                if start is None or now < load_t0 + start:
                    continue
                self._pending.remove(item)
                self._fire(i, fault, start, now)

    def _fire(self, i: int, fault: Fault, planned_s: float, now: float) -> None:
        event = FaultEvent(i, fault.action, fault.part, fault.index, planned_s)
        self.events.append(event)
        event.start_ts = time.time()
        try:
            part = self.control.resolve(fault.part, fault.index)
            event.what = part.label
            if fault.action == "kill":
                self.control.kill(part)
            elif fault.action == "restart":
                self.control.restart(part)
            elif fault.action == "model_update":
                assert fault.model_path is not None
                self.control.update_model(fault.part, fault.model_path)
            elif fault.action == "stop":
                self.control.pause(part)
                assert fault.duration_s is not None
                self._undo.append((now + fault.duration_s, event,
                                   lambda: self.control.resume(part)))  # fmt: skip
            else:
                assert fault.cpus is not None and fault.duration_s is not None
                self.control.cpu_limit(part, fault.cpus)
                self._undo.append((now + fault.duration_s, event,
                                   lambda: self.control.cpu_limit(part, None)))  # fmt: skip
        except Exception as err:  # a fault that cannot be injected is recorded, not fatal
            event.error = f"{type(err).__name__}: {err}"
        self.echo(f"[{self.target}] fault {i + 1}: {fault.action} {fault.part} {fault.index}"
                  + (f" ({event.what})" if event.what else "")
                  + (f" FAILED: {event.error}" if event.error else ""))  # fmt: skip

    def _run(self, event: FaultEvent, undo: Callable[[], None]) -> None:
        try:
            undo()
        except Exception as err:
            event.error = f"undo failed: {type(err).__name__}: {err}"

    def finish(self) -> None:
        """Lift what is still in force (a stop or a CPU limit past the end of the load)."""
        with self._lock:
            for _, event, undo in self._undo:
                self._run(event, undo)
                event.end_ts = time.time()
            self._undo.clear()
            for i, fault in self._pending:
                never = FaultEvent(i, fault.action, fault.part, fault.index, -1.0,
                                   error="not injected: its time never came")  # fmt: skip
                self.events.append(never)
            self._pending.clear()

    def write(self, tdir: Path) -> Path:
        from analysis.contract import write_json

        path = tdir / FAULTS_FILE
        write_json(path, [e.to_dict() for e in sorted(self.events, key=lambda e: e.index)])
        return path
