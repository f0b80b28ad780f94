"""The model of N replicas, on numbers worked out by hand."""

from __future__ import annotations

import pytest

from analysis.openloop import RatePoint
from analysis.replicas import ReplicaModel

# One replica: the upper bound of p99 at each Poisson rate; latency cv 0.5 at light load.
CURVE = (
    RatePoint(10.0, 18.0, 20.0, latency_cv=0.5),
    RatePoint(20.0, 27.0, 30.0),
    RatePoint(30.0, 55.0, 60.0),
    RatePoint(40.0, 120.0, 150.0),
)


def test_random_split_is_linear_and_reads_the_one_replica_curve() -> None:
    model = ReplicaModel(CURVE, slo_p99_ms=100.0)
    assert model.queueing_factor(3) == 1.0
    assert [model.capacity_rps(n) for n in (1, 2, 3)] == [30.0, 60.0, 90.0]
    # 75 rps over 3 -> 25 each -> the lowest measured rate at or above it: 30 -> 60 ms
    assert model.p99_ms(75.0, 3) == 60.0
    assert model.p99_ms(90.0, 3) == 60.0  # exactly a measured rate
    assert model.p99_ms(121.0, 3) is None  # 40.3 each: beyond the highest rate run
    assert model.replicas_for(83.3) == 3 and model.replicas_for(60.0) == 2


def test_round_robin_shrinks_the_queueing_part() -> None:
    """cs2 = 0.25; N = 2: (0.5 + 0.25) / 1.25 = 0.6; N = 3: (1/3 + 0.25) / 1.25 = 0.4667.
    Base = 20 ms (the lowest rate's bound). At 40 rps each: 20 + 130 x 0.6 = 98 ms."""
    model = ReplicaModel(CURVE, slo_p99_ms=100.0, balancer="round-robin")
    assert model.scv == pytest.approx(0.25)
    assert model.queueing_factor(2) == pytest.approx(0.6)
    assert model.queueing_factor(3) == pytest.approx(0.46667, abs=1e-5)
    assert model.p99_ms(80.0, 2) == pytest.approx(98.0)
    assert model.p99_ms(60.0, 2) == pytest.approx(20 + 40 * 0.6)
    assert model.capacity_rps(1) == 30.0  # one replica: nothing to smooth
    assert (model.capacity_rps(2), model.capacity_rps(3)) == (80.0, 120.0)
    assert model.replicas_for(83.3) == 3
    assert ReplicaModel(CURVE, 97.0, "round-robin").capacity_rps(2) == 60.0  # 98 > 97


def test_least_conn_is_bounded_by_round_robin() -> None:
    rr = ReplicaModel(CURVE, 100.0, "round-robin")
    lc = ReplicaModel(CURVE, 100.0, "least-conn")
    assert [lc.capacity_rps(n) for n in (1, 2, 3)] == [rr.capacity_rps(n) for n in (1, 2, 3)]
    assert "conservative bound" in " ".join(lc.assumptions())


def test_the_curve_is_made_non_decreasing_and_errors_count() -> None:
    noisy = (RatePoint(10.0, 50, 80), RatePoint(20.0, 40, 60), RatePoint(30.0, 90, 99))
    model = ReplicaModel(noisy, 100.0)
    assert model.p99_ms(20.0, 1) == 80  # not 60: a higher rate is never predicted faster
    failing = (RatePoint(10.0, 10, 12), RatePoint(20.0, 12, 14, error_rate=0.2))
    assert ReplicaModel(failing, 100.0).capacity_rps(1) == 10.0
    with pytest.raises(ValueError, match="no measured rate meets"):
        ReplicaModel((RatePoint(10.0, 200, 250),), 100.0).replicas_for(5)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="balancer"):
        ReplicaModel(CURVE, 100.0, "dns")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        ReplicaModel((), 100.0)
    with pytest.raises(ValueError, match="replicas must be at least 1"):
        ReplicaModel(CURVE, 100.0).queueing_factor(0)
    with pytest.raises(ValueError, match="more than"):
        ReplicaModel((RatePoint(1e-3, 1, 1),), 100.0).replicas_for(1e3)


def test_a_light_load_p99_near_the_slo_is_called_fragile() -> None:
    # CURVE's lightest judged p99 is 20 ms: 20% of 100, 80% of 25 (the threshold itself)
    assert ReplicaModel(CURVE, slo_p99_ms=100.0).floor_warning() is None
    assert ReplicaModel(CURVE, slo_p99_ms=25.1).floor_warning() is None
    fragile = ReplicaModel(CURVE, slo_p99_ms=25.0)
    warning = fragile.floor_warning()
    assert warning is not None and "lightest rate measured (100% of the capacity) is already " \
        "20.0 ms, 80% of the 25 ms SLO" in warning  # fmt: skip
    assert warning in fragile.assumptions()


def test_a_plateau_near_the_slo_below_the_knee_is_called_fragile() -> None:
    """The lightest rate is fine (60 ms) but at 20 requests/s, 67% of the 30 requests/s
    capacity, p99 is already 85 ms of 100: the knee is not what decides the capacity."""
    plateau = (RatePoint(10.0, 50.0, 60.0), RatePoint(20.0, 80.0, 85.0),
               RatePoint(30.0, 90.0, 95.0), RatePoint(40.0, 250.0, 300.0))  # fmt: skip
    warning = ReplicaModel(plateau, slo_p99_ms=100.0).floor_warning()
    assert warning is not None
    assert "at 20.0 requests/s (67% of the capacity) is already 85.0 ms, 85%" in warning
    # the same curve with its plateau lower: the knee decides, no warning
    lower = (*plateau[:1], RatePoint(20.0, 60.0, 70.0), *plateau[2:])
    assert ReplicaModel(lower, slo_p99_ms=100.0).floor_warning() is None


def test_a_rate_run_twice_is_judged_on_its_worse_p99() -> None:
    twice = (RatePoint(10.0, 18.0, 20.0), RatePoint(30.0, 55.0, 60.0),
             RatePoint(30.0, 95.0, 120.0), RatePoint(20.0, 27.0, 30.0))  # fmt: skip
    model = ReplicaModel(twice, slo_p99_ms=100.0)
    assert model.capacity_rps(1) == 20.0 and model.capacity_rps(3) == 60.0
    assert model.p99_ms(90.0, 3) == 120.0
