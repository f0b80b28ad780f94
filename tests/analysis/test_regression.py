"""The regression comparison on synthetic raw records with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.regression import compare_stage, judge


def records(rng: np.random.Generator, seconds: int = 20, rps: float = 200.0,
            scale: float = 1.0) -> pd.DataFrame:  # fmt: skip
    n = int(seconds * rps)
    ts = np.sort(rng.uniform(0, seconds, n))
    latency = rng.lognormal(np.log(5.0), 0.4, n) * scale
    return pd.DataFrame({"ts": ts, "latency_ms": latency, "outcome": "ok"})


def verdicts(base: pd.DataFrame, cand: pd.DataFrame) -> dict[str, str]:
    return {f.figure: f.verdict for f in compare_stage(base, cand, threshold=0.10)}


def test_reruns_of_the_same_distribution_are_not_flagged() -> None:
    rng = np.random.default_rng(11)
    flagged = 0
    for _ in range(10):
        result = verdicts(records(rng), records(rng))
        flagged += "worse" in result.values()
    assert flagged == 0


def test_a_20_percent_slowdown_is_worse_and_a_speedup_better() -> None:
    rng = np.random.default_rng(12)
    base = records(rng)
    slower = records(rng, rps=200 / 1.2, scale=1.2)
    result = verdicts(base, slower)
    assert result["p50_ms"] == "worse" and result["goodput_rps"] == "worse"
    faster = records(rng, scale=0.7)
    assert verdicts(base, faster)["p50_ms"] == "better"


def test_a_change_inside_the_threshold_is_the_same_even_when_significant() -> None:
    rng = np.random.default_rng(13)
    base = records(rng, seconds=60)
    slightly = records(rng, seconds=60, scale=1.04)  # 4%: detectable, below 10%
    assert verdicts(base, slightly)["p50_ms"] == "same"
    assert judge((1.02, 1.08), 1e-9, True, 0.10, 0.01) == "same"
    assert judge((1.12, 1.30), 1e-9, True, 0.10, 0.01) == "worse"
    assert judge((1.12, 1.30), 0.2, True, 0.10, 0.01) == "same"  # not significant
    assert judge(None, None, True, 0.10, 0.01) == "no data"
