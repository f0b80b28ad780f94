"""Forward mode of the Django tier: validate the client's request, call a model server over HTTP.

This is the pre-processing tier of the paper's architectures b, c and d (client -> nginx ->
gunicorn -> Django -> JSON over HTTP POST -> model server). :class:`ForwardService` answers
exactly like :class:`targets.common.service.InferenceService` (same schema, same errors, same
max_works semantics), but instead of running the model it:

1. checks the body size and admits the request (max_works, per worker process);
2. decodes and validates the body in any encoding (:func:`targets.common.payload.decode_request`),
   so malformed requests are refused here and never reach the model server;
3. sends the images as JSON to the model server over a keep-alive connection pool
   (:class:`Upstream`, one per worker process, shared by its threads):

   * ``servecap`` (the Flask or FastAPI target): ``POST /v1/predict`` with
     ``{"images": [...]}``; its answer is passed on unchanged;
   * ``tfserving-rest``: ``POST /v1/models/<model>:predict`` with
     ``{"signature_name": "serving_default", "instances": [...]}``; its ``predictions`` are
     turned into the servecap answer ``{"classes": [...], "probabilities": [...]}``.

   Pixels go upstream as JSON integers when they are whole numbers (always so for base64 and
   JPEG requests), as floats otherwise.

Upstream answers map to client answers as follows:

=====================================  ==============================================
model server                           client gets
=====================================  ==============================================
200                                    200, the servecap answer
503                                    503 with its ``Retry-After`` (ours if it sent
                                       none): a rejection, not an error
400..499                               the same status with its ``{"error": ...}``
504, or no answer within the timeout   504 ``{"error": ...}``
unreachable, reset, other status       502 ``{"error": ...}``
=====================================  ==============================================

A connection the model server dropped while idle in the pool is retried once on a fresh one
(prediction has no side effects); timeouts are never retried.

Timing: each forwarded answer carries ``Server-Timing: decode;dur=<ms>, upstream;dur=<ms>``
(validation + decode, then the whole model-server call: encode, send, wait, read, convert).

Settings (environment, read by :class:`ForwardSettings`): ``SERVECAP_UPSTREAM_URL`` (e.g.
``http://127.0.0.1:8103``; unset = embedded mode), ``SERVECAP_UPSTREAM_PROTOCOL`` (``servecap`` or
``tfserving-rest``), ``SERVECAP_UPSTREAM_TIMEOUT_S``, ``SERVECAP_UPSTREAM_CONNECT_TIMEOUT_S``,
``SERVECAP_UPSTREAM_POOL_SIZE`` (kept connections per worker: set it to the worker's threads),
``SERVECAP_UPSTREAM_MODEL`` (TF Serving model name).
"""

from __future__ import annotations

import os
import time
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
import orjson
import urllib3
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from urllib3.exceptions import HTTPError, NewConnectionError, ProtocolError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from targets.common.payload import JSON, PayloadError, encode_response, error_body
from targets.common.service import AdmittingService, Reply
from targets.common.settings import ServerSettings
from targets.protocols import Endpoint, get_protocol, tfserving

UpstreamProtocol = Literal["servecap", "tfserving-rest"]


class ForwardSettings(BaseSettings):
    """Where and how the Django tier forwards; ``upstream_url`` unset means embedded mode."""

    model_config = SettingsConfigDict(env_prefix="SERVECAP_", extra="ignore")

    upstream_url: str | None = Field(default=None, description="model server base URL")
    upstream_protocol: UpstreamProtocol = "servecap"
    upstream_timeout_s: float = Field(default=30.0, gt=0, description="read timeout")
    upstream_connect_timeout_s: float = Field(default=2.0, gt=0)
    upstream_pool_size: int = Field(default=8, ge=1, description="kept connections per worker")
    upstream_model: str = Field(default=tfserving.MODEL_NAME, description="TF Serving model name")


class Upstream:
    """A keep-alive HTTP connection pool to one model server; thread-safe, one per process."""

    def __init__(
        self,
        url: str,
        protocol_name: UpstreamProtocol = "servecap",
        timeout_s: float = 30.0,
        connect_timeout_s: float = 2.0,
        pool_size: int = 8,
        model: str = tfserving.MODEL_NAME,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise ValueError(f"upstream URL must look like http://HOST:PORT, got {url!r}")
        if protocol_name not in ("servecap", "tfserving-rest"):
            raise ValueError(
                f"unknown upstream protocol {protocol_name!r}; use servecap or tfserving-rest"
            )
        self.url = url.rstrip("/")
        self.protocol_name: UpstreamProtocol = protocol_name
        self.model = model
        self.protocol = get_protocol(protocol_name)
        self.endpoint = Endpoint(protocol=protocol_name, base_url=self.url, model_name=model)
        prefix = parts.path.rstrip("/")
        self.predict_path = prefix + self.protocol.predict_path(self.endpoint)
        self.health_path = prefix + (self.protocol.health_path(self.endpoint) or "/")
        self._pool = urllib3.HTTPConnectionPool(
            parts.hostname,
            parts.port,
            maxsize=pool_size,
            block=False,  # more threads than kept connections: extra ones are opened, then closed
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=timeout_s),
            retries=False,
        )

    @classmethod
    def from_settings(cls, settings: ForwardSettings) -> Upstream:
        if not settings.upstream_url:
            raise ValueError("SERVECAP_UPSTREAM_URL is not set")
        return cls(
            settings.upstream_url,
            settings.upstream_protocol,
            settings.upstream_timeout_s,
            settings.upstream_connect_timeout_s,
            settings.upstream_pool_size,
            settings.upstream_model,
        )

    # ------------------------------------------------------------------ requests

    def encode(self, images: np.ndarray) -> bytes:
        """The model server's request body (its protocol's JSON encoding) for float32 images
        [n,h,w,c] in 0..255: whole numbers go as uint8 pixels, others as they are."""
        rounded = np.rint(images)
        pixels = rounded.astype(np.uint8) if np.array_equal(rounded, images) else images
        body, _ = self.protocol.encode(pixels, "json", endpoint=self.endpoint)
        return body

    def predict(self, images: np.ndarray) -> Reply:
        """Forward one validated batch; never raises (errors become 5xx replies)."""
        try:
            resp = self._send("POST", self.predict_path, self.encode(images))
        except _Failure as failure:
            return failure.reply
        return self._answer(resp)

    def health(self) -> tuple[Reply, Any]:
        """The model server's health: (error reply or 200 with no body, its JSON document)."""
        try:
            resp = self._send("GET", self.health_path, None)
        except _Failure as failure:
            return failure.reply, None
        if resp.status != 200:
            return Reply(502, error_body(f"model server health answered {resp.status}")), None
        try:
            doc = orjson.loads(resp.data)
        except orjson.JSONDecodeError:
            return Reply(502, error_body("model server health answer is not JSON")), None
        if self.protocol_name == "tfserving-rest" and not tfserving.rest_is_available(resp.data):
            return Reply(503, error_body("model server has no AVAILABLE model version")), doc
        return Reply(200, b""), doc

    def close(self) -> None:
        self._pool.close()

    def _send(self, method: str, path: str, body: bytes | None) -> urllib3.BaseHTTPResponse:
        headers = {"content-type": JSON, "accept": JSON} if body is not None else {}
        where = f"model server at {self.url}"
        for attempt in (1, 2):
            try:
                return self._pool.urlopen(
                    method, path, body=body, headers=headers, retries=False, preload_content=True
                )
            except NewConnectionError as err:  # a subclass of the timeout error: test it first
                raise _Failure(502, f"{where} unreachable: {_reason(err)}") from err
            except Urllib3Timeout as err:
                raise _Failure(504, f"{where} timed out: {_reason(err)}") from err
            except ProtocolError as err:
                if attempt == 1:  # most likely a kept connection the server closed: once more
                    continue
                raise _Failure(502, f"{where} dropped the connection: {err}") from err
            except HTTPError as err:
                raise _Failure(502, f"{where} failed: {_reason(err)}") from err
        raise AssertionError("unreachable")  # pragma: no cover

    def _answer(self, resp: urllib3.BaseHTTPResponse) -> Reply:
        status, data = resp.status, resp.data
        if status == 200:
            if self.protocol_name == "servecap":
                return Reply(200, data)
            try:
                return Reply(200, encode_response(self.protocol.probabilities(data, self.endpoint)))
            except (ValueError, orjson.JSONDecodeError) as err:
                return Reply(502, error_body(f"model server answer is not a prediction: {err}"))
        if status == 503:
            retry = resp.headers.get("retry-after")
            body = data if _is_error_doc(data) else error_body("model server busy, try again later")
            return Reply(503, body, {"Retry-After": retry} if retry else {})
        if 400 <= status < 500:
            body = data if _is_error_doc(data) else error_body(f"model server answered {status}")
            return Reply(status, body)
        snippet = data[:200].decode("utf-8", "replace")
        return Reply(504 if status == 504 else 502, error_body(f"model server {status}: {snippet}"))


class _Failure(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.reply = Reply(status, error_body(message))


def _reason(err: Exception) -> str:
    reason = getattr(err, "reason", None)
    return str(reason or err)


def _is_error_doc(data: bytes) -> bool:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and isinstance(doc.get("error"), str)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


class ForwardService(AdmittingService):
    """The Django tier's work in forward mode: size check, admission, decode, forward."""

    def __init__(self, upstream: Upstream, settings: ServerSettings) -> None:
        super().__init__(settings)
        self.upstream = upstream

    def handle(self, body: bytes, content_type: str | None) -> Reply:
        start = time.perf_counter()
        try:
            images = self.decode(body, content_type)
        except PayloadError as err:
            return Reply(err.status, error_body(err.message))
        decoded = time.perf_counter()
        reply = self.upstream.predict(images)
        done = time.perf_counter()
        headers = dict(reply.headers)
        if reply.status == 503 and "Retry-After" not in headers:
            headers["Retry-After"] = str(self.settings.retry_after_s)
        headers["Server-Timing"] = f"decode;dur={_ms(decoded - start)}, " + (
            f"upstream;dur={_ms(done - decoded)}"
        )
        return Reply(reply.status, reply.body, headers, reply.content_type)

    def health(self) -> Reply:
        """200 only while the model server is healthy too (the chain works end to end)."""
        reply, doc = self.upstream.health()
        if reply.status != 200:
            return reply
        return Reply(
            200,
            orjson.dumps(
                {
                    "status": "ok",
                    "mode": "forward",
                    "model_version": _model_version(doc),
                    "upstream": {"url": self.upstream.url, "protocol": self.upstream.protocol_name},
                }
            ),
        )

    def info(self) -> Reply:
        return Reply(
            200,
            orjson.dumps(
                {
                    "mode": "forward",
                    "upstream_url": self.upstream.url,
                    "upstream_protocol": self.upstream.protocol_name,
                    "max_works": self.settings.max_works,
                    "in_flight": self.limiter.in_flight,
                    "pid": os.getpid(),
                }
            ),
        )


def _model_version(doc: Any) -> int | None:
    """The model version in a servecap /healthz or TF Serving model-status answer."""
    if not isinstance(doc, dict):
        return None
    if isinstance(doc.get("model_version"), int):
        return int(doc["model_version"])
    for status in doc.get("model_version_status") or []:
        if isinstance(status, dict) and status.get("state") == "AVAILABLE":
            try:
                return int(status.get("version"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return None
    return None
