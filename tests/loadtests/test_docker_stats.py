"""Docker stats sampler: docker stats' arithmetic on real-shaped frames, then a real container.

The unit tests feed frames shaped like the engine's (cgroup v1 and v2); the integration test
burns one core in a container and checks the sampled CPU % and memory against what the
container really did. Skipped without a Docker engine or the servecap base image.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest

from loadtests.collectors import SAMPLE_COLUMNS
from loadtests.collectors.docker_stats import (
    COLUMNS,
    DockerStatsSampler,
    block_bytes,
    cpu_percent,
    memory_bytes,
    network_bytes,
    stats_row,
)
from tests.machine import BASE_IMAGE, docker_test

MB = 1024 * 1024


def frame(total: int, system: int, online: int | None = 2, **extra: Any) -> dict[str, Any]:
    cpu: dict[str, Any] = {"cpu_usage": {"total_usage": total, "percpu_usage": [0, 0, 0, 0]},
                           "system_cpu_usage": system}  # fmt: skip
    if online is not None:
        cpu["online_cpus"] = online
    return {"cpu_stats": cpu, **extra}


V1_MEMORY = {"usage": 300 * MB, "limit": 1024 * MB,
             "stats": {"cache": 120 * MB, "total_inactive_file": 50 * MB}}  # fmt: skip
V2_MEMORY = {"usage": 300 * MB, "limit": 1024 * MB, "stats": {"inactive_file": 80 * MB}}


def test_cpu_percent_is_docker_stats_formula() -> None:
    prev = frame(1_000_000_000, 10_000_000_000)["cpu_stats"]
    # 0.5 s of container CPU over 2 s of host CPU time on 2 online CPUs = 50 % of one core
    now = frame(1_500_000_000, 12_000_000_000)
    assert cpu_percent(now, prev) == pytest.approx(50.0)
    # no online_cpus (old engines): the length of percpu_usage, here 4
    assert cpu_percent(frame(1_500_000_000, 12_000_000_000, online=None), prev) == 100.0
    assert cpu_percent(frame(1_000_000_000, 12_000_000_000), prev) == 0.0  # idle
    assert cpu_percent(now, {}) is None  # first frame of a stream: nothing to compare
    assert cpu_percent(now, {"cpu_usage": {"total_usage": 1}, "system_cpu_usage": 0}) is None


def test_memory_is_usage_minus_inactive_file() -> None:
    # cgroup v1: docker >= 20.10 subtracts total_inactive_file (not the whole cache)
    assert memory_bytes({"memory_stats": V1_MEMORY}) == 250 * MB
    assert memory_bytes({"memory_stats": V2_MEMORY}) == 220 * MB  # cgroup v2
    assert memory_bytes({"memory_stats": {"usage": 10 * MB, "stats": {}}}) == 10 * MB
    assert memory_bytes({"memory_stats": {}}) is None  # stopped container


def test_network_and_block_io() -> None:
    assert network_bytes({}) is None  # host network: the container has no interface
    nets = {"eth0": {"rx_bytes": 100, "tx_bytes": 10}, "eth1": {"rx_bytes": 1, "tx_bytes": 2}}
    assert network_bytes({"networks": nets}) == (101, 12)
    v1 = [{"op": "Read", "value": 4096}, {"op": "Write", "value": 8192},
          {"op": "Total", "value": 12288}, {"op": "Read", "value": 4096}]  # fmt: skip
    assert block_bytes({"blkio_stats": {"io_service_bytes_recursive": v1}}) == (8192, 8192)
    v2 = [{"op": "read", "value": 1}, {"op": "write", "value": 2}]
    assert block_bytes({"blkio_stats": {"io_service_bytes_recursive": v2}}) == (1, 2)
    assert block_bytes({"blkio_stats": {"io_service_bytes_recursive": None}}) is None


def test_row_follows_the_common_schema_then_docker_columns() -> None:
    prev = frame(0, 10_000_000_000)["cpu_stats"]
    now = frame(2_000_000_000, 12_000_000_000, memory_stats=V1_MEMORY,
                pids_stats={"current": 7})  # fmt: skip
    row = stats_row(now, prev, "target", "proj_fastapi_1", 1700000000.5)
    assert len(row) == len(COLUMNS)
    assert COLUMNS[: len(SAMPLE_COLUMNS)] == SAMPLE_COLUMNS
    values = dict(zip(COLUMNS, row, strict=True))
    assert values["source"] == "docker" and values["name"] == "proj_fastapi_1"
    assert values["cpu_pct"] == "200.00"  # 2 s over 2 s x 2 CPUs
    assert values["mem_mb"] == "250.00" and values["pss_mb"] == "" and values["n_procs"] == 7
    assert values["net_rx_mb"] == "" and values["mem_limit_mb"] == "1024.00"


class FakeContainer:
    def __init__(self, name: str, frames: list[dict[str, Any]], gap_s: float) -> None:
        self.name = name
        self.frames = frames
        self.gap_s = gap_s

    def stats(self, stream: bool, decode: bool) -> Iterator[dict[str, Any]]:
        assert stream and decode
        for f in self.frames:
            time.sleep(self.gap_s)
            yield f


class FakeClient:
    def __init__(self, containers: dict[str, FakeContainer]) -> None:
        self.containers = self
        self._by_id = containers

    def get(self, container_id: str) -> FakeContainer:
        return self._by_id[container_id]


def test_sampler_threads_write_rows_incrementally(tmp_path: Path) -> None:
    frames = [
        frame(i * 500_000_000, 10_000_000_000 + i * 2_000_000_000,
              memory_stats=V2_MEMORY, pids_stats={"current": 3})
        for i in range(6)
    ]  # fmt: skip
    client = FakeClient({"a" * 64: FakeContainer("c_1", frames, 0.05),
                         "b" * 64: FakeContainer("c_2", frames, 0.05)})  # fmt: skip
    path = tmp_path / "resources-docker.csv"
    sampler = DockerStatsSampler(path, interval_s=0.0, client=client)
    sampler.watch("target", ["a" * 64, "b" * 64])
    with sampler:
        deadline = time.monotonic() + 5
        while sampler.samples < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        mid = pd.read_csv(path)  # readable while running
    assert len(mid) >= 1
    rows = pd.read_csv(path)
    assert tuple(rows.columns) == COLUMNS
    assert len(rows) == 10  # 5 per container: the first frame of each stream only primes
    assert set(rows["name"]) == {"c_1", "c_2"}
    assert (rows["cpu_pct"] == 50.0).all()
    assert (rows["mem_mb"] == 220.0).all() and (rows["n_procs"] == 3).all()
    # the live view's figures: the role's last CPU and memory, summed over its containers
    assert sampler.latest == {"target": (100.0, 440.0)}


def test_sampler_survives_a_missing_container(tmp_path: Path) -> None:
    class Gone(FakeClient):
        def get(self, container_id: str) -> FakeContainer:
            raise RuntimeError("No such container")

    sampler = DockerStatsSampler(tmp_path / "r.csv", client=Gone({}))
    with sampler:
        sampler.watch("target", ["x"])  # watched after start
        time.sleep(0.2)
    assert sampler.samples == 0 and sampler.errors


# ------------------------------------------------------------------ a real container


BURN = (
    "import time\n"
    "x = bytearray(150 * 1024 * 1024)\n"  # 150 MB resident
    "for i in range(0, len(x), 4096): x[i] = 1\n"
    "end = time.time() + 60\n"
    "while time.time() < end: pass\n"
)


@docker_test(BASE_IMAGE)
def test_real_container_cpu_and_memory_from_the_docker_api(tmp_path: Path) -> None:
    import docker

    client = docker.from_env()
    container = client.containers.run(
        BASE_IMAGE, ["python", "-c", BURN], detach=True, network_mode="none", init=True,
        labels={"io.servecap.managed": "true", "io.servecap.run": "test-docker-stats"},
    )  # fmt: skip
    try:
        container.reload()
        root = psutil.Process(container.attrs["State"]["Pid"])  # docker-init, then python
        path = tmp_path / "resources-docker.csv"
        with DockerStatsSampler(path, interval_s=1.0) as sampler:
            sampler.watch("target", [container.id])
            deadline = time.monotonic() + 30
            while sampler.samples < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            cpu_before, t_before = _tree_cpu_s(root), time.time()
            while sampler.samples < 6 and time.monotonic() < deadline:
                time.sleep(0.05)
            cpu_after, t_after = _tree_cpu_s(root), time.time()
        rows = pd.read_csv(path)
    finally:
        container.remove(force=True)
    assert len(rows) >= 6
    assert (rows["source"] == "docker").all()
    assert (rows["name"] == container.name).all()
    # CPU: the sampled %, integrated over each row's window, matches the CPU time the
    # container's processes used as the host kernel counts it (psutil), however busy the host.
    rows["window_s"] = rows["ts"].diff()
    window = (rows["ts"] > t_before + 0.5) & (rows["ts"] <= t_after + 0.5)
    inside = rows[window].dropna(subset=["window_s", "cpu_pct"])
    sampled_s = (inside["cpu_pct"] / 100 * inside["window_s"]).sum()
    used_s = (cpu_after - cpu_before) * inside["window_s"].sum() / (t_after - t_before)
    assert used_s > 0.5
    assert abs(sampled_s - used_s) / used_s < 0.35, (sampled_s, used_s)
    busy = rows.iloc[1:]  # the allocation happens during the first second
    assert busy["mem_mb"].between(150, 260).all(), busy["mem_mb"].tolist()
    assert (busy["n_procs"] >= 1).all()


def _tree_cpu_s(root: psutil.Process) -> float:
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def test_stop_returns_while_streams_block(tmp_path: Path) -> None:
    class Slow(FakeContainer):
        def stats(self, stream: bool, decode: bool) -> Iterator[dict[str, Any]]:
            threading.Event().wait(30)
            yield {}

    sampler = DockerStatsSampler(tmp_path / "r.csv", client=FakeClient({"s": Slow("s", [], 0)}))
    sampler.watch("target", ["s"])
    sampler.start()
    t0 = time.monotonic()
    sampler.stop()
    assert time.monotonic() - t0 < 4.0


def test_a_broken_stream_of_a_running_container_is_reopened(tmp_path: Path) -> None:
    frames = [frame(i * 500_000_000, 10_000_000_000 + i * 2_000_000_000, memory_stats=V2_MEMORY)
              for i in range(3)]  # fmt: skip

    class Flaky(FakeContainer):
        status = "running"
        opened = 0

        def stats(self, stream: bool, decode: bool) -> Iterator[dict[str, Any]]:
            Flaky.opened += 1
            yield from super().stats(stream, decode)
            raise ConnectionError("engine restarted")

    client = FakeClient({"a" * 64: Flaky("c_1", frames, 0.01)})
    sampler = DockerStatsSampler(tmp_path / "r.csv", interval_s=0.0, client=client)
    sampler.watch("target", ["a" * 64])
    with sampler:
        deadline = time.monotonic() + 5
        while Flaky.opened < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert Flaky.opened >= 3 and sampler.samples >= 4  # rows from every reopened stream
    assert "engine restarted" in str(sampler.gap_report())
