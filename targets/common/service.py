"""The framework-independent core of every Python target: decode, limit, infer, encode.

Each web framework (FastAPI, Flask, Django) is a thin adapter around :class:`InferenceService`,
so all targets answer the same schema, the same errors and the same max_works semantics, and
measured differences come from the serving stack, not from diverging code.

max_works semantics: the limit counts inferences in flight **per worker process**. A target
with W workers admits at most ``W x max_works`` requests at once; a request over its worker's
limit is answered at once with 503 and ``Retry-After``, never queued.

With ``batch_max`` set, concurrent requests of a worker are run as one model call
(:class:`targets.common.batching.Batcher`); admission still counts requests. Every request
that reaches the model is recorded in the server's metrics (:mod:`targets.common.metrics`).
"""

from __future__ import annotations

import gc
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import orjson

from targets.common import metrics
from targets.common.batching import Batcher
from targets.common.payload import Decoder, PayloadError, encode_response, error_body
from targets.common.settings import ServerSettings
from targets.protocols.servecap import MODEL_VERSION_HEADER


class Model(Protocol):
    version: int

    def predict(self, images: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Reply:
    """A complete HTTP answer, independent of the framework that sends it."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


class WorkLimiter:
    """Non-blocking counter of inferences in flight (the blog's num_works / max_works)."""

    def __init__(self, max_works: int) -> None:
        self.max_works = max_works
        self._in_flight = 0
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self._lock:
            if self.max_works and self._in_flight >= self.max_works:
                return False
            self._in_flight += 1
        metrics.IN_FLIGHT.inc()
        return True

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1
        metrics.IN_FLIGHT.dec()

    @property
    def in_flight(self) -> int:
        return self._in_flight


class AdmittingService:
    """Size check and max_works admission around :meth:`handle`, which subclasses provide."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.limiter = WorkLimiter(settings.max_works)
        self.decode = Decoder(settings.max_batch, settings.max_decodes, settings.input_shape)

    def predict(self, body: bytes, content_type: str | None) -> Reply:
        """Answer one predict request (size check, admission, handling); never raises."""
        if len(body) > self.settings.max_body_bytes:
            return self.body_too_large()
        if not self.limiter.try_acquire():
            return self.busy()
        try:
            return self.handle(body, content_type)
        finally:
            self.limiter.release()

    def handle(self, body: bytes, content_type: str | None) -> Reply:
        """Decode and answer; the caller has admitted the request."""
        raise NotImplementedError

    def busy(self) -> Reply:
        return Reply(
            503,
            error_body("server busy: max_works reached, try again later"),
            {"Retry-After": str(self.settings.retry_after_s)},
        )

    def body_too_large(self) -> Reply:
        return Reply(413, error_body(f"body exceeds {self.settings.max_body_bytes} bytes"))

    def metrics(self) -> Reply:
        """``GET /metrics``: this server's metrics, every worker process summed."""
        body, content_type = metrics.exposition()
        return Reply(200, body, content_type=content_type)


class InferenceService(AdmittingService):
    """Runs the model in this process (the model server and embedded architectures)."""

    def __init__(self, model: Model, settings: ServerSettings) -> None:
        shape = getattr(getattr(model, "input", None), "shape", settings.input_shape)
        if tuple(shape) != tuple(settings.input_shape):
            raise ValueError(
                f"the model takes {list(shape)} images but the server was told "
                f"{list(settings.input_shape)} (SERVECAP_INPUT_SHAPE): start it through servecap "
                "or fix the variable"
            )
        super().__init__(settings)
        self.model = model
        self.batcher: Batcher | None = None
        if settings.batch_max:
            self.batcher = Batcher(self._predict_batch, settings.batch_max,
                                   settings.batch_timeout_ms / 1000,
                                   in_flight=lambda: self.limiter.in_flight)  # fmt: skip

    def _predict_batch(self, images: np.ndarray) -> np.ndarray:
        metrics.observe_batch(len(images))
        return self.model.predict(images)

    def handle(self, body: bytes, content_type: str | None) -> Reply:
        try:
            images = self.decode(body, content_type)
        except PayloadError as err:
            return Reply(err.status, error_body(err.message))
        if self.batcher is not None:
            probabilities, timing = self.batcher.predict(images)
            metrics.observe_request(timing.queue_s, timing.model_s)
        else:
            start = time.perf_counter()
            probabilities = self._predict_batch(images)
            metrics.observe_request(0.0, time.perf_counter() - start)
        return Reply(200, encode_response(probabilities),
                     headers={MODEL_VERSION_HEADER: str(self.model.version)})  # fmt: skip

    def health(self) -> Reply:
        return Reply(200, orjson.dumps({"status": "ok", "model_version": self.model.version}))

    def info(self) -> Reply:
        return Reply(
            200,
            orjson.dumps(
                {
                    "model_version": self.model.version,
                    "model_path": str(self.settings.model_path),
                    "input_shape": list(self.settings.input_shape),
                    "input_range": list(self.settings.input_range),
                    "max_works": self.settings.max_works,
                    "batch_max": self.settings.batch_max,
                    "in_flight": self.limiter.in_flight,
                    "pid": os.getpid(),
                }
            ),
        )


def load_service(settings: ServerSettings | None = None) -> InferenceService:
    """Load the SavedModel named by the settings and warm it up (one inference)."""
    settings = settings or ServerSettings()
    return InferenceService(load_model(settings), settings)


def load_model(settings: ServerSettings) -> Model:
    """The SavedModel named by the settings, warmed up (one inference), the heap frozen."""
    from targets.common.model import Predictor  # imports TensorFlow: keep it out of clients

    predictor = Predictor(settings.model_path, settings.input_range)
    predictor.warm_up()
    freeze_heap()
    return predictor


def freeze_heap() -> None:
    """Move everything alive after the model load out of the cyclic GC's reach.

    TensorFlow leaves a large graph of Python objects; every full collection walks it again,
    and a JSON request allocates thousands of objects, so full collections come often:
    each one stalled the server for a long moment (a tail of ~200 ms at any load). Objects
    created later are collected as usual. ``SERVECAP_GC_FREEZE=0`` turns this off.
    """
    if os.environ.get("SERVECAP_GC_FREEZE", "1") != "0":
        gc.collect()
        gc.freeze()
