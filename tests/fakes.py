"""Test stand-ins shared by the web-layer tests of the targets (named as fakes)."""

from __future__ import annotations

import threading

import numpy as np


class FakeModel:
    """Test stand-in for targets.common.model.Predictor: class = image index mod 10.

    ``gate`` holds predictions until set (to keep requests in flight); ``fail`` makes the
    model raise, as a broken model would.
    """

    version = 7

    def __init__(self) -> None:
        self.gate: threading.Event | None = None
        self.calls = 0
        self.fail = False

    def predict(self, images: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.fail:
            raise RuntimeError("model exploded")
        if self.gate is not None:
            self.gate.wait(5)
        probs = np.zeros((len(images), 10), dtype=np.float32)
        probs[np.arange(len(images)), np.arange(len(images)) % 10] = 1.0
        return probs
