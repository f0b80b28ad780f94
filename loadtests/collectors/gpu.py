"""GPU sampler: utilisation, memory and power of every NVIDIA GPU, through NVML (``pynvml``).

Rows use the common schema (:data:`~loadtests.collectors.SAMPLE_COLUMNS`: ``role = "gpu"``,
``source = "nvml"``, ``name = "gpu<index>"``; ``cpu_pct``/``mem_mb``/``pss_mb``/``n_procs``
empty, since a GPU is not a process) followed by :data:`GPU_COLUMNS`, appended to a CSV every
``interval_s`` in a thread. NVML reports the whole device: with several targets or other jobs
on one GPU the numbers are theirs too.

Where there is no NVML (no NVIDIA driver, no GPU, ``nvidia-ml-py`` missing: this is the
normal case on CPU hosts) the sampler is *unavailable*: :attr:`GpuSampler.available` is
False, :attr:`GpuSampler.reason` says why, ``start``/``stop`` do nothing and no file is
written. It never raises for a missing GPU. A metric a device does not support (power on
some boards) is left empty.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from analysis.contract import GPU_COLUMNS
from loadtests.collectors import SAMPLE_COLUMNS
from loadtests.collectors.base import PeriodicSampler

MB = 1024 * 1024
COLUMNS = (*SAMPLE_COLUMNS, *GPU_COLUMNS)


def _load_nvml() -> ModuleType:
    import pynvml

    return pynvml


class GpuSampler(PeriodicSampler):
    """Samples every GPU NVML sees. Same interface as the other samplers (``watch`` is a
    no-op: GPUs are not per process)."""

    columns = COLUMNS
    thread_name = "servecap-gpu"

    def __init__(
        self, path: Path, interval_s: float = 1.0, nvml: ModuleType | Any | None = None
    ) -> None:
        super().__init__(path, interval_s)
        self._nvml = nvml
        self._handles: list[Any] = []
        self.available = False
        self.reason = ""
        self._init()

    def _init(self) -> None:
        try:
            nvml = self._nvml if self._nvml is not None else _load_nvml()
            nvml.nvmlInit()
        except Exception as err:  # ImportError, NVMLError (no driver / library / GPU)
            self.reason = f"NVML unavailable: {type(err).__name__}: {err}".rstrip(": ")
            return
        self._nvml = nvml
        try:
            count = int(nvml.nvmlDeviceGetCount())
            self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception as err:
            self.reason = f"NVML unavailable: {type(err).__name__}: {err}"
            self._shutdown()
            return
        if not self._handles:
            self.reason = "NVML found no GPU"
            self._shutdown()
            return
        self.available = True

    def _shutdown(self) -> None:
        with contextlib.suppress(Exception):
            if self._nvml is not None:
                self._nvml.nvmlShutdown()

    def watch(self, role: str, ids: list[Any]) -> None:
        """Nothing to watch: every GPU is sampled (kept for interface parity)."""

    def start(self) -> GpuSampler:
        return super().start() if self.available else self

    def stop(self) -> None:
        super().stop()
        if self.available:
            self._shutdown()
            self.available = False

    def sample_once(self) -> list[tuple[object, ...]]:
        """One row per GPU (empty when unavailable)."""
        if not self.available:
            return []
        ts = time.time()
        return [self._row(ts, i, handle) for i, handle in enumerate(self._handles)]

    def _metric(self, fn: str, handle: Any) -> Any:
        try:
            return getattr(self._nvml, fn)(handle)
        except Exception:  # NVMLError_NotSupported and friends: leave the column empty
            return None

    def _row(self, ts: float, index: int, handle: Any) -> tuple[object, ...]:
        util = self._metric("nvmlDeviceGetUtilizationRates", handle)
        mem = self._metric("nvmlDeviceGetMemoryInfo", handle)
        power_mw = self._metric("nvmlDeviceGetPowerUsage", handle)
        return (
            f"{ts:.3f}", "gpu", "nvml", f"gpu{index}", "", "", "", "",
            "" if util is None else f"{float(util.gpu):.1f}",
            "" if util is None else f"{float(util.memory):.1f}",
            "" if mem is None else f"{mem.used / MB:.2f}",
            "" if mem is None else f"{mem.total / MB:.2f}",
            "" if power_mw is None else f"{power_mw / 1000.0:.2f}",
        )  # fmt: skip
