"""Order-statistic confidence intervals against known binomial values."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.intervals import (
    batch_means_upper,
    coverage,
    min_samples,
    quantile_ci,
    quantile_ci_ranks,
    quantile_upper,
)


def test_the_textbook_median_interval_of_100_samples() -> None:
    # Conover, Practical Nonparametric Statistics, table A3: n = 100, 95% -> X(40), X(61)
    assert quantile_ci_ranks(100, 0.5) == (40, 61)
    assert coverage(100, 0.5, 40, 61) == pytest.approx(0.9648, abs=1e-4)


def test_a_p99_needs_hundreds_of_samples_before_it_can_be_bounded() -> None:
    assert quantile_ci_ranks(100, 0.99) is None  # the upper bound would be beyond the data
    n = min_samples(0.99)
    assert quantile_ci_ranks(n, 0.99) is not None and quantile_ci_ranks(n - 1, 0.99) is None
    # with 0 exceedances allowed, P(all n below the p99) = 0.99^n <= 2.5% at n >= 368
    assert n == int(np.ceil(np.log(0.025) / np.log(0.99)))
    lo, hi = quantile_ci_ranks(1000, 0.99)  # type: ignore[misc]
    assert (lo, hi) == (983, 997) and coverage(1000, 0.99, lo, hi) >= 0.95


def test_intervals_cover_the_true_quantile_as_often_as_promised() -> None:
    rng = np.random.default_rng(7)
    true_p99 = -np.log(0.01)  # exponential(1)
    hits = 0
    for _ in range(400):
        ci = quantile_ci(rng.exponential(size=2000), 0.99)
        assert ci is not None
        hits += ci[0] <= true_p99 < ci[1]
    assert 0.92 <= hits / 400 <= 0.99


def test_more_samples_narrow_the_interval() -> None:
    rng = np.random.default_rng(1)
    small = quantile_ci(rng.lognormal(size=500), 0.99)
    large = quantile_ci(rng.lognormal(size=50_000), 0.99)
    assert small is not None and large is not None
    assert large[1] - large[0] < (small[1] - small[0]) / 3


def test_batch_means_agree_with_order_statistics_on_independent_samples() -> None:
    for seed in range(5):
        latencies = np.random.default_rng(seed).exponential(10.0, 8000)
        iid = quantile_ci(latencies, 0.99)
        batched = batch_means_upper(latencies, 0.99)
        assert iid is not None and batched is not None
        assert batched == pytest.approx(iid[1], rel=0.06)


def test_batch_means_widen_the_bound_when_slow_requests_come_together() -> None:
    # 8 batches of 1,000 in time order: seven with 5 requests at 100 ms, the last with 20 at
    # 300 ms (a busy spell). Pooled, 55 of 8,000 (0.69%) are slow: p99 and its order-statistic
    # bound are 10 ms. Above 10 ms the batch shares are 0.5% x 7 and 2%: mean 0.69%, sd 0.53%,
    # t(0.95, 7) / sqrt(8) = 0.670 -> 0.69% + 0.36% = 1.04% > 1%: 10 ms is not shown. Above
    # 100 ms: 0 x 7 and 2%: 0.25% + 0.670 x 0.71% = 0.72% <= 1%: 100 ms is the bound.
    latencies = np.array(([10.0] * 995 + [100.0] * 5) * 7 + [10.0] * 980 + [300.0] * 20)
    assert quantile_ci(latencies, 0.99) == (10.0, 10.0)
    assert batch_means_upper(latencies, 0.99) == 100.0
    assert quantile_upper(latencies, 0.99) == 100.0
    assert batch_means_upper(latencies[:15], 0.99) is None  # under 2 a batch
    assert quantile_upper(latencies[:100], 0.99) is None  # too few for any bound
