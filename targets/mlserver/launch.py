"""How the ``mlserver`` kind starts: write MLServer's folder, then serve it as ``mlserver start``.

``VENV/mlserver/bin/python -m targets.mlserver.launch --prefix DIR --model DIR ...`` writes
settings.json and model-settings.json (:mod:`targets.mlserver.repository`), moves into the
folder and runs what ``mlserver start DIR`` runs (uvloop, MLServer's logger, its settings
loader, ``MLServer.start``), with two differences made through MLServer's own classes:

* the model repository API (``/v2/repository/models/<name>/load|unload`` over HTTP, and the
  ``ModelRepositoryService`` over gRPC) answers 403: servecap serves one fixed model, and
  MLServer has no switch for this unauthenticated control surface (Triton's is
  ``--model-control-mode=none``). The index stays readable;
* the REST app is wrapped in :class:`targets.common.body_limit.BodyLimit`: MLServer reads any
  body whole and inflates gzip bodies without a bound; here bodies over ``--max-body-bytes``
  get 413 and compressed ones 415;
* a body FastAPI cannot validate gets its 422 without the body echoed back: MLServer's FastAPI
  (0.115) fails with a 500 when it echoes a body that is not UTF-8;
* a tensor without a batch dimension gets 400 before the adaptive batcher sees it (the batcher
  fails on it with a 500 for every request of its batch). A malformed request merged with
  valid ones still fails the whole batch with its 400: that is MLServer's batcher.

Runs in MLServer's environment (targets/mlserver/setup.sh); the process launcher's group and
signals reach MLServer, which stops its parallel workers itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from mlserver import MLModel, MLServer
from mlserver.cli.serve import load_settings
from mlserver.errors import InferenceError, MLServerError
from mlserver.handlers import ModelRepositoryHandlers
from mlserver.logging import configure_logger
from mlserver.registry import MultiModelRegistry
from mlserver.settings import Settings
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import install_uvloop_event_loop

from targets.common.body_limit import BodyLimit
from targets.mlserver.repository import ServerOptions, write

FORBIDDEN = 403


class FixedModelRepository(ModelRepositoryHandlers):
    """The repository API without load and unload."""

    async def load(self, name: str) -> bool:
        raise MLServerError("servecap serves a fixed model: loading is disabled", FORBIDDEN)

    async def unload(self, name: str) -> bool:
        raise MLServerError("servecap serves a fixed model: unloading is disabled", FORBIDDEN)


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 for a request body it cannot validate, naming where, not echoing it."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in errors]
    return JSONResponse({"error": "invalid inference request", "detail": detail}, 422)


def check_batch_axis(payload: InferenceRequest) -> None:
    """InferenceError (400) unless every input has a batch dimension of at least 1."""
    for tensor in payload.inputs:
        shape = list(tensor.shape)
        if not shape or min(shape) < 1:
            raise InferenceError(
                f"input '{tensor.name}' has shape {shape}: send [n, ...] with every size >= 1"
            )


async def checked_requests(model: MLModel) -> MLModel:
    """Model-load hook, after MLServer's own (adaptive batching): requests are checked by
    :func:`check_batch_axis` before they reach the batcher."""
    predict = model.predict

    async def checked(payload: InferenceRequest) -> InferenceResponse:
        check_batch_axis(payload)
        return await predict(payload)

    model.predict = checked
    return model


class ServecapMLServer(MLServer):
    """MLServer with :class:`FixedModelRepository`, bounded request bodies and requests
    checked before its batcher."""

    def __init__(self, settings: Settings, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes
        super().__init__(settings)

    def _create_model_registry(self) -> MultiModelRegistry:
        registry = super()._create_model_registry()
        registry._on_model_load.append(checked_requests)  # after load_batching
        return registry

    def _create_servers(self) -> None:
        self._model_repository_handlers = FixedModelRepository(
            repository=self._model_repository, model_registry=self._model_registry
        )
        super()._create_servers()
        app = self._rest_server._app
        app.add_exception_handler(RequestValidationError, invalid_request)
        app.add_middleware(BodyLimit, max_body_bytes=self.max_body_bytes)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m targets.mlserver.launch")
    parser.add_argument("--prefix", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True, help="SavedModel version folder")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--parallel-workers", type=int, default=1)
    parser.add_argument("--max-batch-size", type=int, default=0)
    parser.add_argument("--max-batch-time-s", type=float, default=0.0)
    parser.add_argument("--max-body-bytes", type=int, required=True)
    return parser.parse_args(argv)


async def serve(folder: Path, max_body_bytes: int) -> None:
    settings, models = await load_settings(str(folder))
    await ServecapMLServer(settings, max_body_bytes).start(models)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    options = ServerOptions(
        model_name=args.model_name, model_dir=args.model.resolve(), host=args.host,
        http_port=args.port, grpc_port=args.grpc_port, metrics_port=args.metrics_port,
        parallel_workers=args.parallel_workers, max_batch_size=args.max_batch_size,
        max_batch_time_s=args.max_batch_time_s,
    )  # fmt: skip
    folder = write(args.prefix, options)
    os.chdir(folder)
    configure_logger()
    install_uvloop_event_loop()
    asyncio.run(serve(folder, args.max_body_bytes))


if __name__ == "__main__":
    main()
