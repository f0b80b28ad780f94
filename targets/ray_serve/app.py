"""The Ray Serve deployment of the ``ray-serve`` kind: the SavedModel behind Serve's HTTP proxy.

Each replica (an actor of the Ray cluster) answers servecap's predict API on Serve's HTTP
proxy (``route_prefix="/"``)::

    GET  /healthz     200 once this replica has loaded the model
    POST /v1/predict  servecap's bodies (:mod:`targets.common.payload`) -> classes, scores

The body is read up to ``max_body_bytes`` (413 past it) and decoded off the event loop; a
malformed one is a 4xx. With ``max_batch_size`` > 1 concurrent requests go through
``@serve.batch`` (max_batch_size requests, batch_wait_timeout_s) into one model call. Model calls
are counted through ``ray.serve.metrics`` in servecap's metric names (exported by Ray's
Prometheus endpoint with a ``ray_`` prefix).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, cast

import numpy as np
import orjson
from ray import serve
from ray.serve import metrics
from starlette.requests import Request
from starlette.responses import Response

from targets.common.asgi import read_limited, to_response
from targets.common.payload import PayloadError, error_body
from targets.common.runner import ModelRunner
from targets.common.service import Reply
from targets.common.settings import ServerSettings
from targets.protocols.servecap import HEALTH_PATH, PREDICT_PATH
from targets.ray_serve.settings import LOOPBACK_ENV

Item = tuple[np.ndarray, float]


class RayRecorder:
    """servecap's counters as Ray Serve application metrics (one time series per replica)."""

    def __init__(self) -> None:
        self.requests = metrics.Counter(
            "servecap_inference_requests", description="Requests that reached the model"
        )
        self.images = metrics.Counter(
            "servecap_inference_images", description="Images the model ran"
        )
        self.batches = metrics.Counter("servecap_inference_batches", description="Model calls")
        self.queue_s = metrics.Counter(
            "servecap_queue_seconds_sum", description="Per request: wait before its model call"
        )
        self.model_s = metrics.Counter(
            "servecap_model_seconds_sum", description="Per request: the model call it was part of"
        )

    def batch(self, images: int) -> None:
        self.batches.inc()
        self.images.inc(images)

    def request(self, queue_s: float, model_s: float) -> None:
        self.requests.inc()
        self.queue_s.inc(queue_s)
        self.model_s.inc(model_s)


def _replica_grpc_on_loopback() -> None:
    """Ray Serve 2.60 binds each replica's inter-deployment gRPC server to ``[::]:0``, every
    interface, whatever the node's address (``serve/_private/replica.py``). On a local cluster
    kept on loopback (:data:`LOOPBACK_ENV` = 0) bind it to 127.0.0.1 instead, where the proxy
    reaches it; on a cluster of several nodes it stays as Ray has it. Imported by the replica
    before it starts that server (the deployment class is defined here)."""
    if os.environ.get(LOOPBACK_ENV) != "0":
        return
    from ray.serve._private import replica

    bind = replica.add_port_to_grpc_server

    def on_loopback(server: Any, address: str) -> Any:
        return bind(server, address.replace("[::]", "127.0.0.1", 1))

    replica.add_port_to_grpc_server = on_loopback


_replica_grpc_on_loopback()


@serve.deployment
class Classifier:
    """One replica: the model, and the batcher when batching is on."""

    def __init__(self, model: dict[str, Any], max_batch_size: int, batch_wait_timeout_s: float):
        self.runner = ModelRunner(ServerSettings(**model), recorder=RayRecorder())
        self.batching = max_batch_size > 1
        if self.batching:
            batcher = cast(Any, self.batched)  # @serve.batch's setters, untyped
            batcher.set_max_batch_size(max_batch_size)
            batcher.set_batch_wait_timeout_s(batch_wait_timeout_s)

    async def __call__(self, request: Request) -> Response:
        path = request.url.path
        if path == HEALTH_PATH and request.method == "GET":
            return Response(orjson.dumps({"status": "ok"}), media_type="application/json")
        if path != PREDICT_PATH:
            return to_response(Reply(404, error_body(f"no such path {path}")))
        if request.method != "POST":
            return to_response(Reply(405, error_body("POST the images"), {"Allow": "POST"}))
        return to_response(await self.predict(request))

    async def predict(self, request: Request) -> Reply:
        limit = self.runner.settings.max_body_bytes
        body = await read_limited(request, limit)
        if body is None:
            return Reply(413, error_body(f"body exceeds {limit} bytes"))
        try:
            images = await asyncio.to_thread(self.runner.decode, body,
                                             request.headers.get("content-type"))  # fmt: skip
        except PayloadError as err:
            return Reply(err.status, error_body(err.message))
        item = (images, time.monotonic())
        if self.batching:
            scores = await self.batched(item)
        else:
            scores = (await asyncio.to_thread(self.run, [item]))[0]
        return self.runner.reply(scores)

    @serve.batch(max_batch_size=2, batch_wait_timeout_s=0.0)
    async def batched(self, items: list[Item]) -> list[np.ndarray]:
        """Concurrent requests as one model call (its size and wait set in __init__)."""
        return await asyncio.to_thread(self.run, items)

    def run(self, items: list[Item]) -> list[np.ndarray]:
        return self.runner.run([images for images, _ in items], [t for _, t in items])
