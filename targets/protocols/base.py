"""The protocol interface: how a client turns images into requests and answers into classes.

A protocol is one wire format (servecap's predict API, TF Serving's REST or gRPC API, the
job queue's submit-and-poll...), defined once and used by every client servecap has: the
Locust users (by :attr:`Protocol.transport`), the warm-up, ``servecap verify`` and the
Django forwarder. A kind names the protocol its targets speak in the :class:`Endpoint` it
gives for a config; :mod:`targets.protocols` maps names to protocols.

Images are uint8 ``[n, height, width, channels]`` arrays; a request is a body and its HTTP
headers (:data:`Headers`: the content type, and what else the format needs); answers are read
back as probabilities ``[n, classes]`` (:meth:`Protocol.probabilities`), or as class ids.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

Transport = Literal["http", "grpc", "jobs"]
Headers = Mapping[str, str]
"""A request's HTTP headers, ``Content-Type`` included (empty for gRPC)."""
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
    input_name: str = "images"
    """The model's input tensor, for tensor protocols (KServe v2, TF Serving gRPC)."""
    output_name: str = "probabilities"
    """The output read back (scores per class)."""


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
        self,
        images: np.ndarray,
        encoding: str = "json",
        files: list[bytes] | None = None,
        endpoint: Endpoint | None = None,
    ) -> tuple[bytes, Headers]:
        """A request body for ``images`` and its headers. ``files`` are the images' original
        files, sent as they are by encodings that upload files; ``endpoint`` gives tensor and
        model names to protocols that need them."""
        raise NotImplementedError

    def probabilities(self, answer: bytes, endpoint: Endpoint | None = None) -> np.ndarray:
        """The ``[n, classes]`` scores of an answer (the endpoint's output, for protocols that
        name outputs); ValueError when it is not a prediction."""
        raise NotImplementedError

    def check(self, answer: bytes, endpoint: Endpoint | None = None) -> None:
        """Raise ValueError when a successful answer is not a prediction (under load)."""
        self.probabilities(answer, endpoint)

    def classes(self, answer: bytes, endpoint: Endpoint | None = None) -> list[int]:
        return [int(c) for c in self.probabilities(answer, endpoint).argmax(axis=1)]

    def check_encoding(self, encoding: str) -> None:
        if encoding not in self.encodings:
            raise ValueError(
                f"protocol {self.name} sends {', '.join(self.encodings)}, not {encoding!r}; "
                f"set load.encoding to {self.encodings[0]}"
            )

    def infer(
        self, endpoint: Endpoint, body: bytes, headers: Headers, timeout_s: float = 30.0
    ) -> bytes:
        """Send one request and return the answer (warm-up, verify); ProtocolError if the
        answer is not a successful one."""
        status, answer = http_post(
            endpoint.base_url + self.predict_path(endpoint), body, headers, timeout_s
        )
        if status != 200:
            raise ProtocolError(f"HTTP {status}: {answer[:300].decode('utf-8', 'replace')}", status)
        return answer


def http_post(url: str, body: bytes, headers: Headers, timeout_s: float) -> tuple[int, bytes]:
    """(status, body) of a POST; HTTP errors are answers too. URLError/OSError when none."""
    req = urllib.request.Request(url, body, dict(headers), method="POST")
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
