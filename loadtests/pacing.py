"""Open-loop pacing: each request leaves as close to its scheduled send time as possible.

gevent's loop (libev on epoll) wakes timers with millisecond resolution, rounding up, and a
woken sender still has to start its greenlet and build the request (0.1-0.3 ms here): with a
plain ``sleep(until - now)`` requests leave 0.7-0.9 ms late on average. On a model that
answers in 2-4 ms, that systematic lateness would be a quarter of the measured latency,
charged to the target (open-loop latency counts from the scheduled time).

:class:`Pacer` closes the loop on the real send times: each request's lateness (first byte on
the wire minus its scheduled time) nudges how much earlier the next wake-up is asked for, so
sends centre on their schedule instead of always trailing it. The correction is capped at
:data:`MAX_EARLY_S`, so a generator that falls behind (a busy CPU, a full pool) still shows as
lateness: the recorder counts every send later than scheduled, never one earlier.

The lateness of a send is reported when its answer is in, so the feedback trails by about
rate x latency sends; at a small gain and with the 1 ms clamp that delay can only make the
correction swing within 0-1 ms, never run away.
"""

from __future__ import annotations

from collections.abc import Callable

from loadtests.clock import now as clock_now

MAX_EARLY_S = 0.001
"""The most a wake-up is brought forward: one tick of the loop's millisecond timer."""


class Pacer:
    """``wait_until(ts)`` sleeps until about ``ts``; ``sent(ts, sent_ts)`` reports the result."""

    def __init__(
        self,
        sleep: Callable[[float], object],
        clock: Callable[[], float] = clock_now,
        gain: float = 0.1,
    ) -> None:
        self._sleep = sleep
        self._clock = clock
        self._gain = gain
        self.early_s = 0.0
        """How much earlier than scheduled the next wake-up is asked for."""

    def wait_until(self, ts: float) -> None:
        delay = ts - self._clock() - self.early_s
        if delay > 0:
            self._sleep(delay)

    def sent(self, scheduled_ts: float, sent_ts: float) -> None:
        """A request scheduled at ``scheduled_ts`` reached the wire at ``sent_ts``."""
        learned = self.early_s + self._gain * (sent_ts - scheduled_ts)
        self.early_s = min(MAX_EARLY_S, max(0.0, learned))
