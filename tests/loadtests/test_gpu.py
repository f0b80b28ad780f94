"""GPU sampler: unavailable without NVML (this host), values from a fake NVML module."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from loadtests.collectors import SAMPLE_COLUMNS
from loadtests.collectors.gpu import COLUMNS, GPU_COLUMNS, GpuSampler

MB = 1024 * 1024


class FakeNVMLError(Exception):
    pass


@dataclass
class FakeNvml:
    """Stands in for ``pynvml``: two GPUs, the second does not report power."""

    fail_init: bool = False
    shutdowns: int = 0

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise FakeNVMLError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(gpu=[87, 3][handle], memory=[41, 0][handle])

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(used=[3000 * MB, 512 * MB][handle], total=16384 * MB)

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        if handle == 1:
            raise FakeNVMLError("Not Supported")
        return 212_350  # milliwatts


def test_no_nvml_here_means_unavailable_and_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "resources-gpu.csv"
    sampler = GpuSampler(path, interval_s=0.1)  # the real pynvml: no driver on this host
    if sampler.available:
        sampler.stop()
        pytest.skip("this host has an NVIDIA GPU")
    assert "NVML" in sampler.reason
    with sampler:
        sampler.watch("target", [])
        time.sleep(0.3)
    assert sampler.sample_once() == []
    assert not path.exists()


def test_failing_init_is_unavailable_not_an_error(tmp_path: Path) -> None:
    sampler = GpuSampler(tmp_path / "g.csv", nvml=FakeNvml(fail_init=True))
    assert not sampler.available and "Not Found" in sampler.reason
    sampler.start().stop()


def test_values_converted_from_nvml_units(tmp_path: Path) -> None:
    nvml = FakeNvml()
    path = tmp_path / "resources-gpu.csv"
    with GpuSampler(path, interval_s=0.05, nvml=nvml) as sampler:
        assert sampler.available
        time.sleep(0.3)
    assert nvml.shutdowns == 1
    rows = pd.read_csv(path, keep_default_na=False)
    assert tuple(rows.columns) == COLUMNS == (*SAMPLE_COLUMNS, *GPU_COLUMNS)
    assert len(rows) >= 4 and set(rows["name"]) == {"gpu0", "gpu1"}
    assert set(rows["role"]) == {"gpu"} and set(rows["source"]) == {"nvml"}
    gpu0 = rows[rows["name"] == "gpu0"].iloc[0]
    assert gpu0["gpu_util_pct"] == 87.0 and gpu0["gpu_mem_util_pct"] == 41.0
    assert gpu0["gpu_mem_mb"] == 3000.0 and gpu0["gpu_mem_total_mb"] == 16384.0
    assert float(gpu0["gpu_power_w"]) == pytest.approx(212.35)  # mW -> W
    assert gpu0["cpu_pct"] == "" and gpu0["mem_mb"] == ""  # not a process
    gpu1 = rows[rows["name"] == "gpu1"].iloc[0]
    assert gpu1["gpu_power_w"] == ""  # not supported: empty, not an error
