"""How sure a percentile is: distribution-free confidence intervals from order statistics.

For the q-quantile of n independent latencies, the number of samples below it is
Binomial(n, q). So the interval between the order statistics of ranks ``lo`` and ``hi``
(1-based, sorted ascending) covers the true quantile with probability
``P(lo <= B < hi)``, whatever the latency distribution; :func:`quantile_ci_ranks` picks
the equal-tailed ranks for a confidence (the construction MLPerf LoadGen's early stopping
rests on). With too few samples no such ranks exist inside the data: a p99 from 100 requests
cannot be bounded above at 95%, and :func:`min_samples` says how many it would take.

Samples of one stage are not independent: queueing correlates neighbours, most near
saturation, where one busy spell slows hundreds of requests in a row. The order-statistic
bound is then far too narrow: at a third of a core near its knee, the same rate gave p99 113
ms in one run and 191 ms in another, each "bounded" within a few ms. :func:`quantile_upper`
also computes the **batch-means** bound (the simulation-output method: split the requests,
in time order, into ``BATCHES`` consecutive batches; the share of each batch above a latency
``L`` varies from batch to batch as much as the correlation makes it; ``L`` bounds the
quantile when the mean share plus a one-sided Student-t margin stays within ``1 - q``) and
takes the larger: on independent samples the two agree, on correlated ones the batch means
widen the bound as far as the data shows.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
from scipy.stats import binom, t

DEFAULT_CONFIDENCE = 0.95
BATCHES = 8
"""Consecutive batches of the batch-means bound (at least 2 samples each)."""


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


def batch_means_upper(
    values_in_order: np.ndarray, q: float, confidence: float = DEFAULT_CONFIDENCE,
    batches: int = BATCHES,
) -> float | None:  # fmt: skip
    """The smallest latency ``L`` (a sample) such that for every sample at or above it the
    share of requests above it, estimated by batch means, is within ``1 - q`` at
    ``confidence``; None with fewer than two samples per batch."""
    data = np.asarray(values_in_order, dtype=float)
    if batches < 2 or len(data) < 2 * batches or not 0 < q < 1:
        return None
    chunks = [np.sort(c) for c in np.array_split(data, batches)]
    candidates = np.unique(data[data >= np.quantile(data, q)])
    shares = np.stack([1.0 - np.searchsorted(c, candidates, side="right") / len(c)
                       for c in chunks])  # fmt: skip
    margin = float(t.ppf(confidence, batches - 1)) / math.sqrt(batches)
    upper = shares.mean(axis=0) + margin * shares.std(axis=0, ddof=1)
    breaking = np.nonzero(upper > 1.0 - q)[0]
    first = 0 if len(breaking) == 0 else int(breaking[-1]) + 1
    return float(candidates[min(first, len(candidates) - 1)])


def quantile_interval(
    values_in_order: np.ndarray, q: float, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[float, float] | None:
    """The q-quantile's interval: the order-statistic bounds, the upper one raised to the
    batch-means bound where that is larger (correlated neighbours); None when too few
    samples for the order statistics."""
    data = np.asarray(values_in_order, dtype=float)
    ci = quantile_ci(data, q, confidence)
    if ci is None:
        return None
    batched = batch_means_upper(data, q, confidence)
    return ci if batched is None else (ci[0], max(ci[1], batched))


def quantile_upper(
    values_in_order: np.ndarray, q: float, confidence: float = DEFAULT_CONFIDENCE
) -> float | None:
    """Upper end of :func:`quantile_interval`."""
    interval = quantile_interval(values_in_order, q, confidence)
    return None if interval is None else interval[1]
