"""The run clock reads like Unix time but ignores steps of the system clock."""

from __future__ import annotations

import time

import pytest

from loadtests import clock


def test_now_reads_like_unix_time() -> None:
    assert abs(clock.now() - time.time()) < 1.0


def test_a_step_of_the_system_clock_moves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    before = clock.now()
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 3600)  # the wall clock jumps back 1 h
    after = clock.now()
    assert 0 <= after - before < 1.0
