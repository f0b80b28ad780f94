"""Supervision and fault control for a target started as containers.

The Docker launcher's counterpart of :mod:`targets.launchers.supervise`: parts are the kind's
container services (or their :attr:`Kind.part_roles` aliases; ``model-server`` and ``replica``
are the model-serving service), one per replica. A container a fault killed is started again
(the restart policy a deployment would give it) and its death is not a failure; any other
container that stops fails the run, as before. ``stop`` pauses a container (``docker pause``),
``cpu_limit`` is ``docker update --cpus``.
"""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any

from targets.kind import Kind
from targets.launch_types import LaunchError, PartRef
from targets.launchers.docker.engine import SERVICE_LABEL, containers_health
from targets.launchers.docker.environment import cfs_quota_us


@dataclass
class DockerSupervisor:
    client: Any
    kind: Kind
    ids: list[str]
    """The target's containers (ids), as the launcher found them ready."""
    expected: set[str] = field(default_factory=set)
    """Containers a fault killed: started again, not a failure."""
    paused: set[str] = field(default_factory=set)
    """Containers a fault paused: paused is not stopped."""
    restarts: list[str] = field(default_factory=list)
    _limits: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def health(self) -> str | None:
        with self._lock:
            for cid in list(self.expected):
                try:
                    container = self.client.containers.get(cid)
                except Exception:
                    continue
                if container.status in ("exited", "dead"):
                    container.start()  # the restart policy of a deployment
                    self.restarts.append(container.name)
                    self.expected.discard(cid)
            others = [c for c in self.ids if c not in self.expected and c not in self.paused]
        return containers_health(self.client, others)

    def resolve(self, part: str, index: int) -> PartRef:
        services = list(self.kind.containers.services) if self.kind.containers else []
        service = self.kind.part_roles.get(part, part)
        if part in ("model-server", "replica") and services:
            service = services[0]
        if service not in services:
            allowed = sorted({"model-server", "replica", *self.kind.part_roles, *services})
            raise LaunchError(f"no part '{part}' in a {self.kind.name} target's containers; "
                              f"parts: {', '.join(allowed)}")  # fmt: skip
        mine = [self.client.containers.get(cid) for cid in self.ids]
        matches = sorted((c for c in mine if c.labels.get(SERVICE_LABEL) == service),
                         key=lambda c: c.name)  # fmt: skip
        if index > len(matches):
            raise LaunchError(f"part {part} {index}: the target has {len(matches)}")
        container = matches[index - 1]
        return PartRef(container.name, container=container.id)

    def _get(self, ref: PartRef) -> Any:
        return self.client.containers.get(ref.container)

    def kill(self, ref: PartRef) -> None:
        with self._lock:
            self.expected.add(str(ref.container))
        self._get(ref).kill()

    def restart(self, ref: PartRef) -> None:
        container = self._get(ref)
        threading.Thread(target=container.restart, kwargs={"timeout": 10}, daemon=True,
                         name="servecap-restart").start()  # fmt: skip

    def pause(self, ref: PartRef) -> None:
        with self._lock:
            self.paused.add(str(ref.container))
        self._get(ref).pause()

    def resume(self, ref: PartRef) -> None:
        self._get(ref).unpause()
        with self._lock:
            self.paused.discard(str(ref.container))

    def update_model(self, part: str, model_path: str) -> None:
        raise LaunchError("model_update is not implemented for containers yet (the model is a "
                          "read-only mount); use the process launcher")  # fmt: skip

    def cpu_limit(self, ref: PartRef, cpus: float | None) -> None:
        cid = str(ref.container)
        host = self._get(ref).attrs.get("HostConfig", {})
        period_us = int(host.get("CpuPeriod") or 0)  # a quota with its own period (cpu_period_ms)
        if cpus is None:
            cpus = self._limits.pop(cid, 0.0)
        elif period_us:
            self._limits.setdefault(cid, max(0, int(host.get("CpuQuota") or 0)) / period_us)
        else:
            self._limits.setdefault(cid, (host.get("NanoCpus") or 0) / 1e9)
        limit = (["--cpu-quota", str(cfs_quota_us(cpus, period_us) if cpus else -1)]
                 if period_us else ["--cpus", f"{cpus:g}"])  # fmt: skip
        subprocess.run(["docker", "update", *limit, cid], check=True, capture_output=True,
                       timeout=30)  # fmt: skip
