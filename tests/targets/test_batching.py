"""The in-server batcher: concurrent requests share a model call; a lone one does not wait."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from targets.common.batching import Batcher


class CountingModel:
    """Test stand-in for a model: records the size of every call; scores = image id."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[int] = []
        self.delay_s = delay_s
        self.fail = False

    def predict(self, images: np.ndarray) -> np.ndarray:
        self.calls.append(len(images))
        time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("model exploded")
        return images[:, :1].astype(np.float32)


def images(ids: list[int]) -> np.ndarray:
    return np.asarray(ids, dtype=np.float32).reshape(-1, 1)


def test_concurrent_requests_share_a_model_call_and_get_their_own_rows() -> None:
    model = CountingModel(delay_s=0.05)
    in_flight = 8
    batcher = Batcher(model.predict, batch_max=8, timeout_s=0.2, in_flight=lambda: in_flight)
    results: dict[int, tuple[np.ndarray, int]] = {}

    def one(i: int) -> None:
        answer, timing = batcher.predict(images([i]))
        results[i] = (answer, timing.batch_images)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == list(range(8))
    for i, (answer, _) in results.items():
        assert answer.tolist() == [[float(i)]]  # each request gets its own rows back
    assert len(model.calls) < 8 and max(model.calls) > 1  # batched
    assert sum(model.calls) == 8


def test_a_lone_request_runs_at_once() -> None:
    model = CountingModel()
    batcher = Batcher(model.predict, batch_max=32, timeout_s=1.0, in_flight=lambda: 1)
    start = time.perf_counter()
    answer, timing = batcher.predict(images([3, 4]))
    assert time.perf_counter() - start < 0.5  # not the 1 s timeout: nobody else is coming
    assert answer.tolist() == [[3.0], [4.0]] and timing.batch_images == 2
    assert model.calls == [2]


def test_batches_never_exceed_batch_max_but_a_large_request_runs_whole() -> None:
    model = CountingModel(delay_s=0.02)
    batcher = Batcher(model.predict, batch_max=4, timeout_s=0.1, in_flight=lambda: 6)
    done: list[int] = []

    def one(ids: list[int]) -> None:
        batcher.predict(images(ids))
        done.append(len(ids))

    threads = [threading.Thread(target=one, args=([i, i],)) for i in range(5)]
    threads.append(threading.Thread(target=one, args=(list(range(9)),)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(done) == [2, 2, 2, 2, 2, 9]
    assert 9 in model.calls  # alone, whole
    assert all(n <= 4 for n in model.calls if n != 9)


def test_model_errors_reach_every_request_of_the_batch() -> None:
    model = CountingModel()
    model.fail = True
    batcher = Batcher(model.predict, batch_max=4, timeout_s=0.01)
    with pytest.raises(RuntimeError, match="exploded"):
        batcher.predict(images([1]))
    model.fail = False
    assert batcher.predict(images([1]))[0].tolist() == [[1.0]]  # and it keeps serving
