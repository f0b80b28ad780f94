"""Test stand-ins shared by the web-layer tests of the targets (named as fakes), and the
plumbing of the fake HTTP servers tests start in-process."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from tests.ports import free_port


def reply(
    handler: BaseHTTPRequestHandler, status: int, body: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> None:  # fmt: skip
    """Answer the handler's request: status, headers, Content-Length and body."""
    handler.send_response(status)
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` served by a threaded HTTP server on a free loopback port: its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def serving_grpc(add: Callable[[Any], None]) -> Iterator[int]:
    """A gRPC server on a free loopback port, its services added by ``add(server)``: its port."""
    from concurrent import futures

    import grpc

    port = free_port()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    add(server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        yield port
    finally:
        server.stop(0)


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
