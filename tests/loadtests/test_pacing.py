"""Open-loop pacing (loadtests.pacing) against a simulated event loop.

``CoarseLoop`` is a stand-in clock and sleep with the real loop's fault: it wakes on the
next whole millisecond after the deadline, and a woken sender needs ``send_cost_s`` more
before its request is on the wire.
"""

from __future__ import annotations

import math

import pytest

from loadtests.pacing import MAX_EARLY_S, Pacer


class CoarseLoop:
    def __init__(self, send_cost_s: float = 0.0002) -> None:
        self.now = 1000.0
        self.send_cost_s = send_cost_s
        self.sleeps = 0

    def clock(self) -> float:
        return self.now

    def sleep(self, delay_s: float) -> None:
        self.sleeps += 1
        self.now = math.ceil((self.now + delay_s) * 1000 + 1e-9) / 1000

    def send(self) -> float:
        self.now += self.send_cost_s
        return self.now


def run(pacer: Pacer, loop: CoarseLoop, interval_s: float, n: int) -> list[float]:
    """Lateness (s) of each of ``n`` sends scheduled every ``interval_s``."""
    late = []
    ts = loop.now + interval_s / 3  # deadlines fall between the loop's millisecond ticks
    for _ in range(n):
        pacer.wait_until(ts)
        sent = loop.send()
        pacer.sent(ts, sent)
        late.append(sent - ts)
        ts += interval_s
    return late


def test_a_plain_sleep_is_late_by_the_loop_resolution() -> None:
    loop = CoarseLoop()
    late = run(Pacer(loop.sleep, loop.clock, gain=0.0), loop, 0.0087, 200)
    assert min(late) > 0.0002 and sum(late) / len(late) > 0.0006


def test_pacer_centres_sends_on_their_schedule() -> None:
    loop = CoarseLoop()
    late = run(Pacer(loop.sleep, loop.clock), loop, 0.0087, 400)[100:]  # after it has learned
    mean = sum(late) / len(late)
    assert abs(mean) < 0.0002
    assert max(abs(x) for x in late) <= 0.0011  # within the loop's resolution either way


def test_a_generator_that_falls_behind_still_shows_as_late() -> None:
    """Sends that cost 5 ms each cannot be hidden: the correction stops at MAX_EARLY_S."""
    loop = CoarseLoop(send_cost_s=0.005)
    pacer = Pacer(loop.sleep, loop.clock)
    late = run(pacer, loop, 0.02, 200)
    assert pacer.early_s == pytest.approx(MAX_EARLY_S)
    assert min(late[50:]) >= 0.005 - MAX_EARLY_S - 1e-9


def test_no_sleep_when_the_send_is_already_due() -> None:
    loop = CoarseLoop()
    pacer = Pacer(loop.sleep, loop.clock)
    pacer.wait_until(loop.now - 0.01)
    pacer.wait_until(loop.now)
    assert loop.sleeps == 0
    pacer.sent(loop.now, loop.now - 0.5)  # early sends pull the correction back, not below 0
    assert pacer.early_s == 0.0
