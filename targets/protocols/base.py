"""The protocol interface: how a client turns images into requests and answers into classes.

A protocol is one wire format (servecap's predict API, TF Serving's REST or gRPC API, the
job queue's submit-and-poll...), defined once and used by every client servecap has: the
Locust users (by :attr:`Protocol.transport`), the warm-up, ``servecap verify`` and the
Django forwarder. A kind names the protocol its targets speak in the :class:`Endpoint` it
gives for a config; :mod:`targets.protocols` maps names to protocols.

Images are uint8 ``[n, height, width, channels]`` arrays; answers are read back as
probabilities ``[n, classes]`` (:meth:`Protocol.probabilities`), or as class ids.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

Transport = Literal["http", "grpc", "jobs"]
LOAD_MODES = frozenset({"ramp", "rate", "sequential", "find-max"})


class ProtocolError(RuntimeError):
    """A request was not answered with a prediction; ``status`` is the HTTP-like status
    (0: no answer at all, 503: refused for load)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Endpoint(BaseModel):
    """Where and how a client reaches a running target (always a loopback address here)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: str
    base_url: str
    """``http://127.0.0.1:PORT``: the HTTP endpoint (also for gRPC kinds: health, metrics)."""
    grpc_target: str | None = None
    """``127.0.0.1:PORT`` of the gRPC endpoint, for gRPC protocols."""
    model_name: str | None = None
    """The served model's name, for protocols that address models by name."""


class Protocol:
    """One wire format. Subclasses set the class attributes and implement the codec."""

    name: ClassVar[str] = ""
    transport: ClassVar[Transport] = "http"
    modes: ClassVar[frozenset[str]] = LOAD_MODES
    """Load modes its Locust user supports."""
    encodings: ClassVar[tuple[str, ...]] = ("json",)
    """``load.encoding`` values it can send (the first is what it sends for any other)."""
    primary_request: ClassVar[str | None] = None
    """The request name the headline figures describe, when a run records several."""
    grpc_method: ClassVar[str] = ""

    def predict_path(self, endpoint: Endpoint) -> str:
        """The HTTP path requests are POSTed to."""
        raise NotImplementedError

    def encode(
        self, images: np.ndarray, encoding: str = "json", files: list[bytes] | None = None
    ) -> tuple[bytes, str]:
        """A request body for ``images`` and its content type. ``files`` are the images'
        original files, sent as they are by encodings that upload files."""
        raise NotImplementedError

    def probabilities(self, answer: bytes) -> np.ndarray:
        """The ``[n, classes]`` scores of an answer; ValueError when it is not a prediction."""
        raise NotImplementedError

    def check(self, answer: bytes) -> None:
        """Raise ValueError when a successful answer is not a prediction (under load)."""
        self.probabilities(answer)

    def classes(self, answer: bytes) -> list[int]:
        return [int(c) for c in self.probabilities(answer).argmax(axis=1)]

    def check_encoding(self, encoding: str) -> None:
        if encoding not in self.encodings:
            raise ValueError(
                f"protocol {self.name} sends {', '.join(self.encodings)}, not {encoding!r}; "
                f"set load.encoding to {self.encodings[0]}"
            )

    def infer(
        self, endpoint: Endpoint, body: bytes, content_type: str, timeout_s: float = 30.0
    ) -> bytes:
        """Send one request and return the answer (warm-up, verify); ProtocolError if the
        answer is not a successful one."""
        status, answer = http_post(
            endpoint.base_url + self.predict_path(endpoint), body, content_type, timeout_s
        )
        if status != 200:
            raise ProtocolError(f"HTTP {status}: {answer[:300].decode('utf-8', 'replace')}", status)
        return answer


def http_post(url: str, body: bytes, content_type: str, timeout_s: float) -> tuple[int, bytes]:
    """(status, body) of a POST; HTTP errors are answers too. URLError/OSError when none."""
    req = urllib.request.Request(url, body, {"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()


def http_get(url: str, timeout_s: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()


def grpc_unary(endpoint: Endpoint, method: str, body: bytes, timeout_s: float) -> bytes:
    """One unary gRPC call of serialized bytes (the codec stays with the protocol)."""
    import grpc

    if not endpoint.grpc_target:
        raise ProtocolError(f"{endpoint.base_url}: no gRPC endpoint")
    with grpc.insecure_channel(endpoint.grpc_target) as channel:
        try:
            answer: bytes = channel.unary_unary(method)(body, timeout=timeout_s)
        except grpc.RpcError as err:
            exhausted = err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            raise ProtocolError(f"gRPC {err}", 503 if exhausted else 0) from None
    return answer
