"""How sure a percentile is: distribution-free confidence intervals from order statistics.

For the q-quantile of n independent latencies, the number of samples below it is
Binomial(n, q). So the interval between the order statistics of ranks ``lo`` and ``hi``
(1-based, sorted ascending) covers the true quantile with probability
``P(lo <= B < hi)``, whatever the latency distribution; :func:`quantile_ci_ranks` picks
the equal-tailed ranks for a confidence (the construction MLPerf LoadGen's early stopping
rests on). With too few samples no such ranks exist inside the data: a p99 from 100 requests
cannot be bounded above at 95%, and :func:`min_samples` says how many it would take.

Samples of one stage are not strictly independent (queueing correlates neighbours), so the
bounds are a floor on the uncertainty, not a guarantee; they still separate a p99 that rests
on 300 requests from one that rests on 300,000.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
from scipy.stats import binom

DEFAULT_CONFIDENCE = 0.95


@cache
def quantile_ci_ranks(
    n: int, q: float, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[int, int] | None:
    """1-based ranks (lo, hi) of the order statistics bounding the q-quantile of n samples
    with at least ``confidence`` coverage (equal tails); None when n is too small."""
    if n < 1 or not 0 < q < 1:
        return None
    alpha = 1.0 - confidence
    lo = int(binom.ppf(alpha / 2, n, q))
    hi = int(binom.ppf(1 - alpha / 2, n, q)) + 1
    if lo < 1 or hi > n:
        return None
    return lo, hi


def coverage(n: int, q: float, lo: int, hi: int) -> float:
    """P(X(lo) <= true q-quantile < X(hi)) = P(lo <= Binomial(n, q) < hi)."""
    return float(binom.cdf(hi - 1, n, q) - binom.cdf(lo - 1, n, q))


@cache
def min_samples(q: float, confidence: float = DEFAULT_CONFIDENCE) -> int:
    """The fewest samples for which :func:`quantile_ci_ranks` gives an interval."""
    n = max(2, math.ceil(1 / min(q, 1 - q)))
    while quantile_ci_ranks(n, q, confidence) is None:
        n = n * 2 if n < 1_000_000 else n + 1
    low = n // 2
    while low + 1 < n:  # bisect down to the smallest
        mid = (low + n) // 2
        if quantile_ci_ranks(mid, q, confidence) is None:
            low = mid
        else:
            n = mid
    return n


def quantile_ci(
    values: np.ndarray, q: float, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[float, float] | None:
    """The confidence interval of the q-quantile of ``values``; None with too few of them."""
    data = np.sort(np.asarray(values, dtype=float))
    ranks = quantile_ci_ranks(len(data), q, confidence)
    if ranks is None:
        return None
    lo, hi = ranks
    return float(data[lo - 1]), float(data[hi - 1])
