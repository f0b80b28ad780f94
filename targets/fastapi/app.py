"""FastAPI adapter around :class:`targets.common.service.InferenceService`.

Run with uvicorn's factory mode (the model is loaded before the port opens, so ``/healthz``
answers only once the model is ready)::

    uvicorn targets.fastapi.app:create_app --factory --host 127.0.0.1 --port 8101
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio.to_thread
from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from targets.common.asgi import read_limited, to_response
from targets.common.service import InferenceService, load_service
from targets.protocols.servecap import HEALTH_PATH, INFO_PATH, PREDICT_PATH


def create_app(service: InferenceService | None = None) -> FastAPI:
    """Build the app; loads the model from ``SERVECAP_*`` settings unless a service is given."""
    svc = service or load_service()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Inference runs in anyio's thread pool (40 threads): with batching, let at least
        # two batches' worth of requests wait in it at once.
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, 2 * svc.settings.batch_max)
        yield

    app = FastAPI(title="servecap FastAPI target", docs_url=None, redoc_url=None, lifespan=lifespan)

    @app.get(HEALTH_PATH)
    async def healthz() -> Response:
        return to_response(svc.health())

    @app.get(INFO_PATH)
    async def info() -> Response:
        return to_response(svc.info())

    @app.get("/metrics")
    async def metrics() -> Response:
        return to_response(svc.metrics())

    @app.post(PREDICT_PATH)
    async def predict(request: Request) -> Response:
        body = await read_limited(request, svc.settings.max_body_bytes)
        if body is None:
            return to_response(svc.body_too_large())
        # Admission happens here, on the event loop, so a rejection never waits for a thread.
        if not svc.limiter.try_acquire():
            return to_response(svc.busy())
        try:
            # Inference blocks: run it in the thread pool so the event loop keeps answering.
            reply = await run_in_threadpool(svc.handle, body, request.headers.get("content-type"))
        finally:
            svc.limiter.release()
        return to_response(reply)

    return app
