"""The model behind a serving framework's own API: decode, run a batch, answer, count.

The framework kinds (Ray Serve, BentoML, LitServe) each bring their request path, batching and
workers; what they call is this, the same for all of them, so measured differences come from
the frameworks and not from diverging model code. A framework hands :meth:`ModelRunner.run`
the requests it batched (one or more, each with its arrival time) and gets each one's scores
back; every model call is counted through a :class:`Recorder` in servecap's metric names
(:mod:`targets.common.metrics`), which each framework exports its own way (prometheus_client,
``ray.serve.metrics``, ``bentoml.metrics``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from targets.common import metrics
from targets.common.payload import Decoder, PayloadError, decode_document, encode_response
from targets.common.service import Model, Reply, load_model
from targets.common.settings import ServerSettings
from targets.protocols.servecap import MODEL_VERSION_HEADER


class Recorder(Protocol):
    """Where a framework's server counts its model calls (servecap's metric names)."""

    def batch(self, images: int) -> None: ...

    def request(self, queue_s: float, model_s: float) -> None: ...


class PrometheusRecorder:
    """servecap's own prometheus_client metrics (summed over processes when
    ``PROMETHEUS_MULTIPROC_DIR`` is set): for frameworks that let a server add ``/metrics``."""

    def batch(self, images: int) -> None:
        metrics.observe_batch(images)

    def request(self, queue_s: float, model_s: float) -> None:
        metrics.observe_request(queue_s, model_s)


class ModelRunner:
    """The SavedModel of the ``SERVECAP_*`` settings, behind a framework's API."""

    def __init__(
        self,
        settings: ServerSettings | None = None,
        recorder: Recorder | None = None,
        model: Model | None = None,
    ) -> None:
        self.settings = settings or ServerSettings()
        self.recorder = recorder or PrometheusRecorder()
        self.model = model or load_model(self.settings)
        shape = tuple(self.settings.input_shape)
        self.decoder = Decoder(self.settings.max_batch, self.settings.max_decodes, shape)  # type: ignore[arg-type]

    def decode(self, body: bytes, content_type: str | None) -> np.ndarray:
        """A servecap request body as float32 images; PayloadError (its 4xx) when it is not."""
        if len(body) > self.settings.max_body_bytes:
            raise PayloadError(413, f"body exceeds {self.settings.max_body_bytes} bytes")
        return self.decoder(body, content_type)

    def decode_document(self, doc: Any) -> np.ndarray:
        """A servecap body the framework already parsed from JSON."""
        return decode_document(doc, self.settings.max_batch, self.decoder.shape)

    def run(
        self, batch: Sequence[np.ndarray], arrived_s: Sequence[float] | None = None
    ) -> list[np.ndarray]:
        """Each request's scores, the requests run as one model call. ``arrived_s``: when each
        was decoded (``time.monotonic()``, any process of this host), for its queue time; None
        when the framework does not say which requests a batch holds (none are counted)."""
        start = time.monotonic()
        scores = self.model.predict(np.concatenate(batch) if len(batch) > 1 else batch[0])
        end = time.monotonic()
        self.recorder.batch(len(scores))
        for arrived in arrived_s or ():
            self.recorder.request(max(start - arrived, 0.0), end - start)
        bounds = np.cumsum([len(images) for images in batch])[:-1]
        return list(np.split(scores, bounds))

    def reply(self, scores: np.ndarray) -> Reply:
        """servecap's answer for one request's scores."""
        return Reply(200, encode_response(scores),
                     headers={MODEL_VERSION_HEADER: str(self.model.version)})  # fmt: skip
