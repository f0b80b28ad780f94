"""Dynamic batching in one server process: concurrent requests become one model call.

:class:`Batcher` owns one thread that calls the model. A request thread hands it its decoded
images and waits; the batching thread takes the first waiting request, then keeps taking
more while their images fit in ``batch_max`` and more are on their way, for at most
``timeout_s`` after the first one, and runs them as one batch. It waits only while the
server has other requests in flight that have not reached it yet (``in_flight`` minus the
requests already taken): a lone request (concurrency 1) is run at once, so batching costs no
latency at light load. A single request larger than ``batch_max`` runs alone, whole.

Counted per request (admission, max_works) by the caller, as without batching.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass
class _Pending:
    images: np.ndarray
    arrived: float = field(default_factory=time.perf_counter)
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None
    queue_s: float = 0.0
    model_s: float = 0.0
    batch_images: int = 0


@dataclass(frozen=True)
class Timing:
    """What happened to one request in the batcher."""

    queue_s: float
    """From handing the images over to the model call that ran them."""
    model_s: float
    """The model call (shared by every request in the batch)."""
    batch_images: int
    """Images in that model call."""


class Batcher:
    """Runs ``predict`` on batches of concurrent requests (see the module docstring)."""

    def __init__(
        self,
        predict: Predict,
        batch_max: int,
        timeout_s: float,
        in_flight: Callable[[], int] = lambda: 0,
    ) -> None:
        if batch_max < 1:
            raise ValueError(f"batch_max must be at least 1, got {batch_max}")
        self._predict = predict
        self.batch_max = batch_max
        self.timeout_s = timeout_s
        self._in_flight = in_flight
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._carry: _Pending | None = None
        self._thread = threading.Thread(target=self._loop, name="servecap-batcher", daemon=True)
        self._thread.start()

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, Timing]:
        """The model's answer for ``images`` (run within a batch) and how it was run."""
        pending = _Pending(images)
        self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result, Timing(pending.queue_s, pending.model_s, pending.batch_images)

    # ------------------------------------------------------------------ the batching thread

    def _next(self, timeout_s: float | None) -> _Pending | None:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        try:
            return self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def _collect(self) -> list[_Pending]:
        first = self._next(None)
        assert first is not None
        batch, images = [first], len(first.images)
        deadline = time.perf_counter() + self.timeout_s
        while images < self.batch_max:
            waiting = self._in_flight() > len(batch)  # others admitted, not here yet
            remaining = deadline - time.perf_counter()
            ready = not self._queue.empty()
            if not ready and (not waiting or remaining <= 0):
                break
            item = self._next(max(remaining, 0.0) if not ready else None)
            if item is None:
                break
            if images + len(item.images) > self.batch_max:
                self._carry = item  # it starts the next batch
                break
            batch.append(item)
            images += len(item.images)
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._collect()
            start = time.perf_counter()
            try:
                stacked = np.concatenate([p.images for p in batch])
                scores = self._predict(stacked)
            except BaseException as err:  # handed to every waiting request
                for p in batch:
                    p.error = err
                    p.done.set()
                continue
            end = time.perf_counter()
            offset = 0
            for p in batch:
                n = len(p.images)
                p.result = scores[offset : offset + n]
                offset += n
                p.queue_s, p.model_s, p.batch_images = start - p.arrived, end - start, len(stacked)
                p.done.set()
