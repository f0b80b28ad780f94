"""The LitServe server of the ``litserve`` kind: a LitAPI around the SavedModel.

``python -m targets.litserve.server`` (settings from ``SERVECAP_*`` and ``SERVECAP_LITSERVE_*``,
set by the kind's process plan) runs::

    LitServer (uvicorn API server, host:port)
      POST /v1/predict  servecap's JSON body, validated by FastAPI as PredictRequest
      GET  /health      200 once every inference worker has loaded the model
      GET  /metrics     servecap's metrics, summed over the workers (prometheus_client)
      -> request queue -> inference workers (workers) x ClassifierAPI:
         decode_request -> batch (up to max_batch_size, batch_timeout_s) -> predict
         -> unbatch -> encode_response

A malformed body is a 422 from FastAPI's validation or from :meth:`decode_request` (raised as
HTTPException in the worker, which LitServe answers with its status); a body over
``max_body_bytes`` is a 413, another media type a 415 (:class:`targets.common.body_limit.JsonOnly`).
"""

# No `from __future__ import annotations`: LitServe reads decode_request's annotation as a type.

import time
from typing import Any

import litserve as ls
import numpy as np
from fastapi import HTTPException, Response
from pydantic import BaseModel, ConfigDict, PrivateAttr

from targets.common import metrics
from targets.common.body_limit import JsonOnly
from targets.common.payload import PayloadError, response_document
from targets.common.runner import ModelRunner
from targets.common.settings import ServerSettings
from targets.litserve.settings import HEALTH_PATH, LitServeSettings
from targets.protocols.servecap import PREDICT_PATH

METRICS_PATH = "/metrics"

Item = tuple[np.ndarray, float]
"""A decoded request: its images and when it was validated (``time.monotonic()``)."""


class PredictRequest(BaseModel):
    """servecap's predict body (:mod:`targets.common.payload`), as FastAPI validates it."""

    model_config = ConfigDict(strict=True, extra="forbid")

    images: list[list[list[list[float]]]] | None = None
    images_b64: list[str] | None = None
    images_jpeg_b64: list[str] | None = None
    _arrived_s: float = PrivateAttr(default_factory=time.monotonic)


class ClassifierAPI(ls.LitAPI):
    """The SavedModel as a LitAPI; batched when ``max_batch_size`` > 1."""

    def setup(self, device: str) -> None:
        self.runner = ModelRunner(ServerSettings())

    def decode_request(self, request: PredictRequest, **kwargs: Any) -> Item:
        try:
            images = self.runner.decode_document(request.model_dump(exclude_none=True))
        except PayloadError as err:
            raise HTTPException(err.status, err.message) from None
        return images, request._arrived_s

    def batch(self, inputs: list[Item]) -> list[Item]:
        return inputs

    def predict(self, x: Item | list[Item], **kwargs: Any) -> np.ndarray | list[np.ndarray]:
        items = x if isinstance(x, list) else [x]
        scores = self.runner.run([images for images, _ in items], [t for _, t in items])
        return scores if isinstance(x, list) else scores[0]

    def unbatch(self, output: list[np.ndarray]) -> list[np.ndarray]:
        return output

    def encode_response(self, output: np.ndarray, **kwargs: Any) -> dict[str, Any]:
        return response_document(output)


def build(settings: LitServeSettings, model: ServerSettings) -> ls.LitServer:
    """The LitServer of these settings, with servecap's ``/metrics`` added."""
    api = ClassifierAPI(max_batch_size=settings.max_batch_size,
                        batch_timeout=settings.batch_timeout_s, api_path=PREDICT_PATH)  # fmt: skip
    server = ls.LitServer(
        api, accelerator="cpu", devices=1, workers_per_device=settings.workers,
        timeout=settings.timeout_s, healthcheck_path=HEALTH_PATH,
        middlewares=[(JsonOnly, {"path": PREDICT_PATH, "max_body_bytes": model.max_body_bytes})],
        disable_openapi_url=True,
    )  # fmt: skip

    async def scrape() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    server.app.add_api_route(METRICS_PATH, scrape, methods=["GET"])
    return server


def main() -> None:
    settings = LitServeSettings()
    server = build(settings, ServerSettings())
    server.run(host=settings.host, port=settings.port, generate_client_file=False,
               log_level="warning")  # fmt: skip


if __name__ == "__main__":
    main()
