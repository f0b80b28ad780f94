"""psutil sampler against real processes: a CPU-burning tree is seen with its children; a
sampler whose source fails keeps going and says so."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from loadtests.collectors import SAMPLE_COLUMNS
from loadtests.collectors.process import ProcessTreeSampler
from loadtests.monitor import TargetFailure, Watchdog
from targets.launchers.base import RunningTarget
from targets.registry import target_config

BURN = "import time\nend=time.time()+{s}\nwhile time.time()<end: pass\ntime.sleep(30)"
PARENT = (
    "import subprocess,sys\n"
    "c=subprocess.Popen([sys.executable,'-c',{child!r}])\n"
    "x=bytearray(80*1024*1024)\n"
    "c.wait()"
)


def test_samples_whole_tree_cpu_and_memory(tmp_path: Path) -> None:
    child = BURN.format(s=3)
    proc = subprocess.Popen([sys.executable, "-c", PARENT.format(child=child)])
    try:
        time.sleep(0.3)  # let the parent start its child
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children()]
        path = tmp_path / "resources.csv"
        with ProcessTreeSampler(path, interval_s=0.5) as sampler:
            sampler.watch("target", [proc.pid])
            time.sleep(0.2)
            cpu_before = sum(sum(p.cpu_times()[:2]) for p in tree)
            time.sleep(4)
            cpu_after = sum(sum(p.cpu_times()[:2]) for p in tree)
        frame = pd.read_csv(path)
    finally:
        for p in psutil.Process(proc.pid).children(recursive=True):
            p.kill()
        proc.kill()
        proc.wait()
    assert tuple(frame.columns) == SAMPLE_COLUMNS
    target = frame[frame["role"] == "target"]
    assert len(target) >= 4
    busy = target.iloc[1:]  # the first sample has no CPU delta yet
    # The sampled CPU %, integrated over time, matches what the tree really used (this holds
    # however loaded the machine is, unlike an absolute threshold).
    used_s = cpu_after - cpu_before
    sampled_s = (busy["cpu_pct"] / 100 * 0.5).sum()
    assert used_s > 0.3
    assert abs(sampled_s - used_s) / used_s < 0.35
    assert (busy["n_procs"] == 2).all()  # parent and child
    assert busy["mem_mb"].min() > 80  # the parent's 80 MB buffer
    assert (frame["role"] == "host").sum() >= 4


def test_dead_processes_are_skipped(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    sampler = ProcessTreeSampler(tmp_path / "r.csv")
    sampler.watch("target", [proc.pid])
    rows = sampler.sample_once()
    assert [r[1] for r in rows] == ["host"]


GROW = (
    "import sys\nblocks=[]\n"
    "for line in sys.stdin:\n"
    "    blocks.append(bytearray(60*1024*1024)); print('grown', flush=True)"
)


def test_pss_is_read_every_pss_interval_rss_every_sample(tmp_path: Path) -> None:
    """PSS (an smaps walk, ~14 ms on a TensorFlow worker) is re-read only every
    pss_interval_s; RSS, which is cheap, follows every sample."""
    proc = subprocess.Popen([sys.executable, "-c", GROW], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None

    def grow() -> None:
        proc.stdin.write("\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        assert proc.stdout.readline().strip() == "grown"  # type: ignore[union-attr]

    def mem(sampler: ProcessTreeSampler) -> tuple[float, float]:
        row = next(r for r in sampler.sample_once() if r[1] == "target")
        return float(str(row[5])), float(str(row[6]))

    try:
        slow = ProcessTreeSampler(tmp_path / "a.csv", pss_interval_s=3600)
        fresh = ProcessTreeSampler(tmp_path / "b.csv", pss_interval_s=0)
        for sampler in (slow, fresh):
            sampler.watch("target", [proc.pid])
        rss0, pss0 = mem(slow)
        mem(fresh)
        grow()
        rss1, pss1 = mem(slow)
        assert rss1 - rss0 > 50 and pss1 == pss0  # RSS followed; PSS kept until due
        rss2, pss2 = mem(fresh)
        assert pss2 - pss0 > 50 and abs(rss2 - rss1) < 5
    finally:
        proc.kill()
        proc.wait()


class FlakySource(ProcessTreeSampler):
    """A sampler whose source (the test's switch) fails while ``down`` is set."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, interval_s=0.05)
        self.down = False

    def sample_once(self) -> list[tuple[object, ...]]:
        if self.down:
            raise OSError("source gone")
        return super().sample_once()


def test_a_failing_source_leaves_a_recorded_gap_and_sampling_resumes(tmp_path: Path) -> None:
    path = tmp_path / "resources.csv"
    with FlakySource(path) as sampler:
        time.sleep(0.3)
        sampler.down = True
        time.sleep(sampler.stale_after_s + 0.3)
        assert sampler.problem() is not None and "source gone" in str(sampler.problem())
        good = sampler.samples
        sampler.down = False
        time.sleep(0.3)
        assert sampler.samples > good and sampler.problem() is None  # it kept going
    (gap,) = sampler.gaps
    assert gap.end_ts is not None and gap.failures == sampler.failures > 5
    assert "source gone" in str(sampler.gap_report())
    rows = pd.read_csv(path)
    assert rows["ts"].diff().max() >= sampler.stale_after_s  # the gap is in the records too


def test_a_sampler_that_cannot_write_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "gone"
    with ProcessTreeSampler(folder / "resources.csv", interval_s=0.05) as sampler:
        time.sleep(0.2)
    assert sampler.died is not None and "FileNotFoundError" in sampler.died
    assert "stopped" in str(sampler.problem())


def test_the_watchdog_stops_a_target_whose_memory_limit_it_cannot_enforce(
    tmp_path: Path,
) -> None:
    sampler = FlakySource(tmp_path / "resources.csv")
    running = RunningTarget(name="t", config=target_config(kind="fastapi", memory_limit_mb=500),
                            base_url="http://127.0.0.1:1", launcher="process",
                            time_to_ready_s=0.0)  # fmt: skip
    watchdog = Watchdog(running, sampler, tmp_path)
    with sampler:
        time.sleep(0.2)
        watchdog.check()  # sampling: fine
        sampler.down = True
        time.sleep(sampler.stale_after_s + 0.3)
        with pytest.raises(TargetFailure, match="memory limit .* cannot be enforced"):
            watchdog.check()
        no_limit = RunningTarget(name="u", config=target_config(kind="fastapi"),
                                 base_url="http://127.0.0.1:1", launcher="process",
                                 time_to_ready_s=0.0)  # fmt: skip
        Watchdog(no_limit, sampler, tmp_path).check()  # a gap alone is reported, not fatal
