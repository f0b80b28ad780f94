"""compare on real runs: a 25% slower target is flagged, an unchanged one is not.

The target is the ``sleepy`` test kind (tests/fixtures/kinds): a server whose every answer
takes ``delay_ms``, driven through ``servecap run`` like any target. The unchanged target's
"reruns" are recorded samples: the requests of the baseline's window split at random into two
halves, five times over, each half compared with the other as a rerun with its baseline
(real latencies with their tails; the two halves share whatever else the machine did).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.load import read_requests, read_summary
from analysis.regression import compare_folders, compare_stage
from loadtests.orchestrator import RunOptions, run
from loadtests.spec import parse_scenarios
from tests.ports import free_port
from tests.runs import sleepy_scenarios

pytestmark = pytest.mark.integration
RERUNS = 5
STAGE = {"users": 4, "duration_s": 6}
DELAY_MS = 40.0
"""Service time, large beside the client's share of the latency (a few ms, and it moves with
what else the machine runs), so the two runs differ by the slowdown, not by their neighbours."""


def measure(out: Path, delay_ms: float, cifar_dir: Path) -> Path:
    load = {"warmup_requests": 5, "settle_s": 1, "image_pool": 16, "stages": [STAGE]}
    spec = parse_scenarios(sleepy_scenarios(free_port(), load, delay_ms=delay_ms))
    outcome = run(RunOptions("s", spec, out / "s.yaml", out, data_dir=str(cifar_dir)),
                  echo=lambda _: None)  # fmt: skip
    assert outcome.ok, outcome.failures
    return out


def halves(records: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The steady window's requests split at random into two samples."""
    window = records[records["in_window"].astype(bool)]
    first = np.random.default_rng(seed).random(len(window)) < 0.5
    return window[first], window[~first]


@pytest.mark.slow
def test_a_slowdown_is_worse_and_reruns_are_not(
    sleepy_kind: Path, tmp_path: Path, cifar_dir: Path
) -> None:
    baseline = measure(tmp_path / "base", DELAY_MS, cifar_dir)
    records = read_requests(baseline / "svc")
    verdicts = [
        {f.figure: f.verdict for f in compare_stage(*halves(records, seed), seed=seed)}
        for seed in range(RERUNS)
    ]
    false_alarms = sum("worse" in v.values() for v in verdicts)
    print(f"\ncompare: {false_alarms} false alarm(s) in {RERUNS} recorded reruns: {verdicts}")
    assert false_alarms == 0
    # A slowdown of 25% of the measured median (the client's share of the latency included).
    base_p50_ms = float(read_summary(baseline)["runs"][0]["stages"][0]["p50_ms"])
    slower = measure(tmp_path / "slower", DELAY_MS + 0.25 * base_p50_ms, cifar_dir)
    (stage,) = compare_folders(baseline, slower)
    figures = {f.figure: f for f in stage.figures}
    print(f"baseline p50 {base_p50_ms:.1f} ms; slower: p50 x{figures['p50_ms'].ratio:.3f} "
          f"(95% CI {figures['p50_ms'].ratio_ci})")  # fmt: skip
    assert stage.verdict == "worse" and figures["p50_ms"].verdict == "worse"
    assert figures["p50_ms"].ratio == pytest.approx(1.25, abs=0.1)
