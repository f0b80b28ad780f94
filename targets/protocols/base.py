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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict

from targets.common.loopback import GRPC_OPTIONS, http_post
from targets.inputs import CIFAR_INPUT, CNN_INPUT_NAME, CNN_OUTPUT_NAME, InputSpec

Transport = Literal["http", "grpc", "jobs"]
Headers = Mapping[str, str]
"""A request's HTTP headers, ``Content-Type`` included (empty for gRPC)."""
LoadMode = Literal["ramp", "rate", "sequential", "find-max"]
"""ramp: closed-loop users by stage; rate: open-loop arrivals by stage; sequential: the paper's
N requests one after another, repeated; find-max: search the highest rate meeting the SLO.
``mode: trace`` in a scenario is a rate plan whose stages come from a file."""
LOAD_MODES: frozenset[str] = frozenset(get_args(LoadMode))


class ProtocolError(RuntimeError):
    """A request was not answered with a prediction; ``status`` is the HTTP-like status
    (0: no answer at all, 503: refused for load)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Discovery:
    """What a running server says about its model through its metadata API (None: not said)."""

    input_name: str | None = None
    shape: tuple[int, int, int] | None = None
    dtype: str | None = None
    """``float32`` or ``uint8``."""
    range: tuple[float, float] | None = None
    output_name: str | None = None
    classes: int | None = None

    def input(self) -> InputSpec | None:
        """The input it declares (None when it declares no image shape)."""
        if self.shape is None:
            return None
        dtype = self.dtype if self.dtype in ("float32", "uint8") else "float32"
        value_range = self.range if self.range is not None and dtype == "float32" else (0, 255)
        return InputSpec(shape=self.shape, dtype=dtype, range=value_range)  # type: ignore[arg-type]


def image_shape(dims: list[int]) -> tuple[int, int, int] | None:
    """``[batch?, h, w, c]`` as (h, w, c) when it is an image input, else None."""
    dims = [int(d) for d in dims]
    if len(dims) == 4:
        dims = dims[1:]
    if len(dims) != 3 or min(dims) < 1 or dims[2] not in (1, 3):
        return None
    return dims[0], dims[1], dims[2]


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
    input_name: str = CNN_INPUT_NAME
    """The model's input tensor, for tensor protocols (KServe v2, TF Serving gRPC)."""
    output_name: str = CNN_OUTPUT_NAME
    """The output read back (scores per class, or class ids: ``output_kind``)."""
    output_kind: Literal["probabilities", "logits", "class_id"] = "probabilities"
    """What the output holds: scores (probabilities or logits: the class is the top one), or
    the class id itself."""
    predict_path: str | None = None
    """The path requests go to, for protocols whose servers choose it (image-upload)."""
    upload_field: str | None = None
    """image-upload: send the file as this multipart form field (None: the body itself)."""
    input: InputSpec = CIFAR_INPUT
    """The model's input: images are sized to it, tensors typed and scaled by it."""
    max_images: int | None = None
    """The most images this target takes in one request, from its config (Triton's
    max_batch_size); None: what the protocol allows (:meth:`Protocol.images_limit`)."""


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
    uploads_files: ClassVar[bool] = False
    """Whether requests carry image files (the dataset's files, resized when needed) rather
    than pixels."""
    max_images_per_request: ClassVar[int | None] = None
    """The most images one request can carry (None: any batch)."""

    def predict_path(self, endpoint: Endpoint) -> str:
        """The HTTP path requests are POSTed to."""
        raise NotImplementedError

    def images_limit(self, endpoint: Endpoint) -> int | None:
        """The most images one request to ``endpoint`` may carry (None: any number): the
        protocol's limit and the target's, whichever is lower."""
        limits = [n for n in (self.max_images_per_request, endpoint.max_images) if n is not None]
        return min(limits) if limits else None

    def health_path(self, endpoint: Endpoint) -> str | None:
        """The HTTP path that answers 200 when the server is ready (None: none is known; a
        TCP connection to the endpoint is the test)."""
        return None

    def discover(self, endpoint: Endpoint, timeout_s: float = 5.0) -> Discovery:
        """What the running server says about its model (its metadata API); an empty
        Discovery when the protocol has no such API or the server does not answer it."""
        return Discovery()

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
        """The class of each image: the top score, or the id itself (``output_kind``)."""
        output = np.asarray(self.probabilities(answer, endpoint))
        if endpoint is not None and endpoint.output_kind == "class_id":
            return [int(c) for c in output.reshape(-1)]
        return [int(c) for c in output.argmax(axis=1)]

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


def grpc_unary(endpoint: Endpoint, method: str, body: bytes, timeout_s: float) -> bytes:
    """One unary gRPC call of serialized bytes (the codec stays with the protocol)."""
    import grpc

    if not endpoint.grpc_target:
        raise ProtocolError(f"{endpoint.base_url}: no gRPC endpoint")
    with grpc.insecure_channel(endpoint.grpc_target, options=GRPC_OPTIONS) as channel:
        try:
            answer: bytes = channel.unary_unary(method)(body, timeout=timeout_s)
        except grpc.RpcError as err:
            exhausted = err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            raise ProtocolError(f"gRPC {err}", 503 if exhausted else 0) from None
    return answer
