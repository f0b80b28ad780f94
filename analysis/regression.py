"""Regression comparison of two results folders: did the candidate get worse than the baseline?

Per target and stage present in both, from the raw records of each stage's steady window:

* **latency**: p50 and p99 of the successful requests, their ratio candidate / baseline with a
  bootstrap 95% confidence interval (both samples resampled), and a Mann-Whitney U test of
  the two latency samples;
* **throughput**: goodput, the ratio of the means of its per-second counts, with a bootstrap
  interval over the seconds of each window.

A figure is **worse** only when both hold: the test says the samples differ (p below
``alpha``) and the whole confidence interval of the ratio lies beyond ``threshold`` in the bad
direction (latency up, throughput down); **better** the same way in the good direction;
otherwise **same**. Requiring the interval, not the point estimate, beyond the threshold is
what keeps reruns of an unchanged target (whose figures move by several percent from run to
run) from being flagged, while a slowdown larger than the threshold is.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

from analysis.contract import stage_number
from analysis.load import read_requests, read_summary
from analysis.stages import primary_request

Verdict = Literal["better", "same", "worse", "no data"]
DEFAULT_THRESHOLD = 0.10
DEFAULT_ALPHA = 0.01
BOOTSTRAP_SAMPLES = 1000
MAX_BOOTSTRAP_N = 20_000
"""Larger samples are subsampled (without replacement) for the bootstrap, for speed."""


@dataclass(frozen=True)
class FigureChange:
    figure: str
    baseline: float | None
    candidate: float | None
    ratio: float | None
    ratio_ci: tuple[float, float] | None
    p_value: float | None
    verdict: Verdict


@dataclass
class StageComparison:
    target: str
    stage: int
    label: str
    figures: list[FigureChange] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        verdicts = {f.verdict for f in self.figures}
        order: tuple[Verdict, ...] = ("worse", "better", "same")
        return next((v for v in order if v in verdicts), "no data")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


def _quantile(values: np.ndarray, q: float) -> np.ndarray:
    """Nearest-rank quantile along the last axis (as servecap's percentiles)."""
    return np.percentile(values, q, axis=-1, method="inverted_cdf")


def _subsample(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(values) <= MAX_BOOTSTRAP_N:
        return values
    return rng.choice(values, MAX_BOOTSTRAP_N, replace=False)


def ratio_ci(
    base: np.ndarray, cand: np.ndarray, statistic: str, rng: np.random.Generator,
    confidence: float = 0.95,
) -> tuple[float, float]:  # fmt: skip
    """Bootstrap interval of statistic(cand) / statistic(base); statistic: p50, p99 or mean."""
    b, c = _subsample(base, rng), _subsample(cand, rng)
    bs = b[rng.integers(0, len(b), (BOOTSTRAP_SAMPLES, len(b)))]
    cs = c[rng.integers(0, len(c), (BOOTSTRAP_SAMPLES, len(c)))]
    if statistic == "mean":
        ratios = cs.mean(axis=1) / bs.mean(axis=1)
    else:
        q = float(statistic.removeprefix("p"))
        ratios = _quantile(cs, q) / _quantile(bs, q)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios[np.isfinite(ratios)], [tail, 100 - tail])
    return float(low), float(high)


def judge(
    ratio_ci: tuple[float, float] | None, p_value: float | None, higher_is_worse: bool,
    threshold: float, alpha: float,
) -> Verdict:  # fmt: skip
    if ratio_ci is None or p_value is None or math.isnan(p_value):
        return "no data"
    low, high = ratio_ci
    if p_value >= alpha:
        return "same"
    up, down = low > 1 + threshold, high < 1 - threshold
    if higher_is_worse:
        return "worse" if up else "better" if high < 1 / (1 + threshold) else "same"
    return "worse" if down else "better" if up else "same"


def _window(records: pd.DataFrame, stage: int) -> pd.DataFrame:
    sel = records[records["stage"] == stage]
    return sel[sel["in_window"].astype(bool)] if "in_window" in sel else sel


def _per_second(window: pd.DataFrame) -> np.ndarray:
    ok = window[window["outcome"] == "ok"]
    if window.empty:
        return np.array([])
    start = float(window["ts"].min())
    seconds = np.floor(ok["ts"].to_numpy(dtype=float) - start).astype(int)
    span = int(np.floor(float(window["ts"].max()) - start)) + 1
    counts = np.bincount(seconds, minlength=span)[:span] if len(seconds) else np.zeros(span)
    return counts[:-1] if span > 2 else counts.astype(float)  # the last second is partial


def compare_stage(
    base: pd.DataFrame, cand: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA, seed: int = 0,
) -> list[FigureChange]:  # fmt: skip
    """The figures of one stage (two windows of raw records) compared."""
    rng = np.random.default_rng(seed)
    out: list[FigureChange] = []
    b_lat = base.loc[base["outcome"] == "ok", "latency_ms"].to_numpy(dtype=float)
    c_lat = cand.loc[cand["outcome"] == "ok", "latency_ms"].to_numpy(dtype=float)
    p_lat = None
    if len(b_lat) >= 2 and len(c_lat) >= 2:
        p_lat = float(mannwhitneyu(c_lat, b_lat, alternative="two-sided").pvalue)
    for name, q in (("p50_ms", 50.0), ("p99_ms", 99.0)):
        if p_lat is None:
            out.append(FigureChange(name, None, None, None, None, None, "no data"))
            continue
        b_val, c_val = float(_quantile(b_lat, q)), float(_quantile(c_lat, q))
        ci = ratio_ci(b_lat, c_lat, f"p{q:g}", rng)
        out.append(FigureChange(name, b_val, c_val, c_val / b_val if b_val else None, ci, p_lat,
                                judge(ci, p_lat, True, threshold, alpha)))  # fmt: skip
    b_rate, c_rate = _per_second(base), _per_second(cand)
    if len(b_rate) >= 2 and len(c_rate) >= 2 and b_rate.mean() > 0:
        p_rate = float(mannwhitneyu(c_rate, b_rate, alternative="two-sided").pvalue)
        ci = ratio_ci(b_rate.astype(float), c_rate.astype(float), "mean", rng)
        verdict = judge(ci, p_rate, False, threshold, alpha)
        b_mean, c_mean = float(b_rate.mean()), float(c_rate.mean())
        out.append(
            FigureChange("goodput_rps", b_mean, c_mean, c_mean / b_mean, ci, p_rate, verdict)
        )
    else:
        out.append(FigureChange("goodput_rps", None, None, None, None, None, "no data"))
    return out


def _stage_label(stage: dict[str, Any]) -> str:
    if stage.get("users"):
        return f"users={stage['users']}"
    return f"stage {stage_number(stage.get('index', 0))}"


def compare_folders(
    baseline: Path, candidate: Path, threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
) -> list[StageComparison]:  # fmt: skip
    """Every target and stage both folders measured, compared (see the module docstring)."""
    base_runs = {r["target"]: r for r in read_summary(baseline).get("runs", [])}
    cand_runs = {r["target"]: r for r in read_summary(candidate).get("runs", [])}
    out: list[StageComparison] = []
    for target in [t for t in base_runs if t in cand_runs]:
        b_rec = read_requests(Path(baseline) / target)
        c_rec = read_requests(Path(candidate) / target)
        primary = primary_request(base_runs[target])
        if primary is not None:
            b_rec, c_rec = b_rec[b_rec["name"] == primary], c_rec[c_rec["name"] == primary]
        cand_stages = {s["index"]: s for s in cand_runs[target].get("stages", [])}
        for stage in base_runs[target].get("stages", []):
            index = stage["index"]
            if index not in cand_stages or "stage" not in b_rec or "stage" not in c_rec:
                continue
            figures = compare_stage(_window(b_rec, index), _window(c_rec, index), threshold,
                                    alpha, seed=index)  # fmt: skip
            out.append(StageComparison(target, index, _stage_label(stage), figures))
    return out


def table(comparisons: list[StageComparison]) -> pd.DataFrame:
    """One row per target, stage and figure."""
    rows = []
    for c in comparisons:
        for f in c.figures:
            rows.append({
                "target": c.target, "stage": c.label, "figure": f.figure,
                "baseline": f.baseline, "candidate": f.candidate, "ratio": f.ratio,
                "ratio_low": f.ratio_ci[0] if f.ratio_ci else None,
                "ratio_high": f.ratio_ci[1] if f.ratio_ci else None,
                "p_value": f.p_value, "verdict": f.verdict,
            })  # fmt: skip
    return pd.DataFrame(rows)
