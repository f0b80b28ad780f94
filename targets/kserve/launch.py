"""How the ``kserve`` kind starts: KServe's model server with the model, the KServe way.

``VENV/kserve/bin/python -m targets.kserve.launch --model_dir DIR --model_name NAME
--http_port P --grpc_port G --workers N --host H --max_body_bytes B`` is a KServe custom model
server: its parser extends ``kserve.model_server.parser`` (so every ``ModelServer`` flag works),
it loads :class:`targets.kserve.model.SavedModelPredictor` and calls ``ModelServer.start``,
with three differences made through KServe's own classes:

* **Loopback binds.** KServe 0.21 binds HTTP to 0.0.0.0 and gRPC to ``[::]``, with no option.
  :class:`ServecapModelServer` sets the REST server's host before it starts (KServe builds it
  in ``start``, then calls ``setup_event_loop``) and runs :class:`HostGRPCServer`, KServe's gRPC
  server on ``host``, in place of its own.
* **No model control.** The v2 repository extension (``/v2/repository/models/<name>/load|unload``
  and their gRPC methods) answers 403 / PERMISSION_DENIED: servecap serves a fixed model.
* **Bounded bodies.** Bodies over ``--max_body_bytes`` get 413 and compressed ones 415
  (:class:`targets.common.body_limit.BodyLimit`); KServe reads any body whole.
* **4xx for undecodable requests.** KServe's decoding of a v2 request lets ``ValueError`` and
  the like through (a binary-extension header length that is not a number, raw bytes that do
  not fill the declared shape, BYTES tensors cut short): 500s. :class:`CheckingDataPlane`
  turns them into KServe's ``InvalidInput``, a 400.

Runs in KServe's environment (targets/kserve/setup.sh); SIGTERM/SIGINT stop it (KServe's own
handlers), its worker processes with it.
"""

from __future__ import annotations

import argparse
from concurrent import futures
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from grpc import aio
from grpc_interceptor.exceptions import PermissionDenied
from kserve import InferRequest, ModelServer, model_server
from kserve.errors import InvalidInput
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from targets.common.body_limit import BodyLimit
from targets.kserve.model import SavedModelPredictor

FIXED = "servecap serves a fixed model: loading and unloading are disabled"


class FixedModelRepository(ModelRepositoryExtension):
    """The v2 repository extension without load and unload."""

    async def load(self, model_name: str) -> None:
        raise PermissionDenied(FIXED)

    async def unload(self, model_name: str) -> None:
        raise PermissionDenied(FIXED)


class CheckingDataPlane(DataPlane):
    """KServe's data plane, answering 400 to a v2 request it cannot decode."""

    def decode_inference_request(self, body: Any, headers: Any, model_name: str) -> InferRequest:
        try:
            return super().decode_inference_request(body, headers, model_name)
        except InvalidInput:
            raise
        except Exception as err:  # decoding reads only the request: whatever fails, it is that
            raise InvalidInput(f"cannot decode the inference request: {err!r}") from None


async def forbidden(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=403)


class HostGRPCServer(GRPCServer):
    """KServe's gRPC server (its servicer, interceptors and options) listening on ``host``."""

    def __init__(self, host: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._host = host

    async def start(self, max_workers: int) -> None:
        servicer = InferenceServicer(self._data_plane, self._model_repository_extension)
        options = [(f"grpc.max_{way}_message_length",
                    self._kwargs.get(f"grpc_max_{way}_message_length"))
                   for way in ("send", "receive")]  # fmt: skip
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(LoggingInterceptor(), ExceptionToStatusInterceptor()),
            options=options,
        )
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        self._server.add_insecure_port(f"{self._host}:{self._port}")
        await self._server.start()
        await self._server.wait_for_termination()


class ServecapModelServer(ModelServer):
    """KServe's ModelServer on ``host``, with a fixed model, bounded request bodies and 400s
    for requests it cannot decode."""

    def __init__(self, host: str, max_body_bytes: int, **kwargs: Any) -> None:
        self.host = host
        self.grpc_on_host = bool(kwargs.pop("enable_grpc", True))
        super().__init__(enable_grpc=False, **kwargs)  # KServe's own gRPC server binds [::]
        self.model_repository_extension = FixedModelRepository(self.registered_models)
        self.dataplane = CheckingDataPlane(model_registry=self.registered_models)
        model_server.app.add_exception_handler(PermissionDenied, forbidden)
        model_server.app.add_middleware(BodyLimit, max_body_bytes=max_body_bytes)

    def setup_event_loop(self) -> None:
        """Called by ``start`` once its servers are made and before they run."""
        rest = self._rest_server or getattr(self._rest_multiprocess_server, "_rest_server", None)
        if rest is not None:
            rest.config.host = self.host
        if self.grpc_on_host:
            self._grpc_server = HostGRPCServer(
                self.host, self.grpc_port, self.dataplane, self.model_repository_extension,
                kwargs=vars(model_server.args), grace_period=self.grace_period,
            )  # fmt: skip
            self.servers.append(self._grpc_server.start(self.max_threads))
        super().setup_event_loop()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m targets.kserve.launch", parents=[model_server.parser]
    )
    parser.add_argument("--model_dir", type=Path, required=True, help="SavedModel version folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--max_body_bytes", type=int, required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    model = SavedModelPredictor(args.model_name, args.model_dir.resolve())
    model.load()
    server = ServecapModelServer(
        host=args.host, max_body_bytes=args.max_body_bytes, http_port=args.http_port,
        grpc_port=args.grpc_port, workers=args.workers, enable_grpc=args.enable_grpc,
        enable_docs_url=False,
    )  # fmt: skip
    server.start([model])


if __name__ == "__main__":
    main()
