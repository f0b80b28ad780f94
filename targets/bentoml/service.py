"""The BentoML service of the ``bentoml`` kind: the SavedModel as a new-style service.

``bentoml serve targets.bentoml.service:Classifier`` (the kind's process plan; knobs from
``SERVECAP_BENTOML_*`` and the model from ``SERVECAP_*``, read when BentoML imports this
module in each of its processes)::

    BentoML HTTP server (host:port, workers processes)
      POST /v1/predict  {"images": [n, h, w, c] pixel values} -> [[scores], ...]
                        (batchable when max_batch_size > 1: adaptive batching up to
                        max_batch_size requests, max_latency_ms)
      GET  /readyz      200 once the service is up
      GET  /metrics     BentoML's metrics and servecap's (targets.common.metrics: images and
                        model calls; with batching, requests counted as they are validated and
                        no model time per request, which a batched call does not tell)

Every body is validated per request, before any batching (shape, type, pixel range): a bad
one is BentoML's 400 and never reaches, or fails, a batch of other requests.
"""

# No `from __future__ import annotations`: BentoML reads the API's annotations as types.

import time
from typing import Annotated, Any, cast

import bentoml
import numpy as np
from bentoml.validators import DType, Shape
from pydantic import AfterValidator

from targets.bentoml.settings import PREDICT_PATH, BentoMLSettings
from targets.common import metrics
from targets.common.body_limit import JsonOnly
from targets.common.runner import ModelRunner
from targets.common.settings import ServerSettings

KNOBS = BentoMLSettings()
MODEL = ServerSettings()
BATCHING = (
    {"batchable": True, "max_batch_size": KNOBS.max_batch_size,
     "max_latency_ms": KNOBS.max_latency_ms}
    if KNOBS.max_batch_size > 1 else {}
)  # fmt: skip


def _pixels(images: np.ndarray) -> np.ndarray:
    """Per request, before any batching: its size and pixel range; counted as a request that
    reaches the model when batching (the batched call does not say how many it holds)."""
    if images.shape[0] < 1 or images.shape[0] > MODEL.max_batch:
        raise ValueError(f"a request carries 1 to {MODEL.max_batch} images")
    if not np.isfinite(images).all() or images.min() < 0 or images.max() > 255:
        raise ValueError("pixel values must be finite and within 0..255")
    if BATCHING:
        metrics.REQUESTS.inc()
    return images


Images = Annotated[
    np.ndarray, Shape((-1, *MODEL.input_shape)), DType("float32"), AfterValidator(_pixels)
]


@bentoml.service(
    workers=KNOBS.workers,
    traffic={"timeout": KNOBS.timeout_s},
    monitoring={"enabled": False},
    logging={"access": {"enabled": False}},
)
class Classifier:
    def __init__(self) -> None:
        self.runner = ModelRunner(MODEL)

    @bentoml.api(route=PREDICT_PATH, **BATCHING)
    def predict(self, images: Images) -> np.ndarray:
        # One request (its queue time 0, its model time the call's), or a batch of requests
        # that BentoML concatenated: then only images and calls are counted here.
        arrived_s = None if BATCHING else [time.monotonic()]
        return self.runner.run([images], arrived_s)[0]


cast(Any, Classifier).add_asgi_middleware(
    JsonOnly, path=PREDICT_PATH, max_body_bytes=MODEL.max_body_bytes
)
