"""The Django views: ``GET /healthz``, ``GET /v1/info``, ``POST /v1/predict``.

Same endpoints, schema, statuses and error bodies as the FastAPI and Flask targets; every
error, including 404, 405 and 413, is a JSON ``{"error": ...}`` answer, never an HTML page.
The work is done by a backend installed once per worker process (:func:`install`): an
:class:`targets.common.service.InferenceService` (embedded mode) or a
:class:`targets.common.forward.ForwardService` (forward mode).

Every answer carries ``Server-Timing: app;dur=<ms>``, the time spent in the view (read the
body, decode, infer or forward, encode); forwarded predictions also carry ``decode`` and
``upstream`` entries before it (see :mod:`targets.common.forward`). Durations are in
milliseconds, as the Server-Timing header specifies.
"""

from __future__ import annotations

import time
from typing import Protocol

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from targets.common.payload import error_body
from targets.common.service import Reply
from targets.common.settings import ServerSettings


class Backend(Protocol):
    """What the views need: InferenceService and ForwardService both provide it."""

    settings: ServerSettings

    def predict(self, body: bytes, content_type: str | None) -> Reply: ...

    def body_too_large(self) -> Reply: ...

    def health(self) -> Reply: ...

    def info(self) -> Reply: ...

    def metrics(self) -> Reply: ...


_backend: Backend | None = None


def install(backend: Backend) -> None:
    """Set the backend this process's views use (once per worker, at start)."""
    global _backend
    _backend = backend


def get_backend() -> Backend:
    if _backend is None:
        raise RuntimeError("no backend installed; start Django through wsgi.create_app()")
    return _backend


def _respond(reply: Reply, start: float) -> HttpResponse:
    response = HttpResponse(reply.body, status=reply.status, content_type=reply.content_type)
    for name, value in reply.headers.items():
        response[name] = value
    timing = f"app;dur={(time.perf_counter() - start) * 1000:.2f}"
    earlier = reply.headers.get("Server-Timing")
    response["Server-Timing"] = f"{earlier}, {timing}" if earlier else timing
    return response


def _error(
    status: int, message: str, start: float, headers: dict[str, str] | None = None
) -> HttpResponse:
    return _respond(Reply(status, error_body(message), headers or {}), start)


def _method_not_allowed(request: HttpRequest, allowed: str, start: float) -> HttpResponse:
    return _error(
        405, f"method {request.method} not allowed; use {allowed}", start, {"Allow": allowed}
    )


def healthz(request: HttpRequest) -> HttpResponse:
    start = time.perf_counter()
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed(request, "GET, HEAD", start)
    return _respond(get_backend().health(), start)


def metrics(request: HttpRequest) -> HttpResponse:
    start = time.perf_counter()
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed(request, "GET, HEAD", start)
    return _respond(get_backend().metrics(), start)


def info(request: HttpRequest) -> HttpResponse:
    start = time.perf_counter()
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed(request, "GET, HEAD", start)
    return _respond(get_backend().info(), start)


@csrf_exempt
def predict(request: HttpRequest) -> HttpResponse:
    start = time.perf_counter()
    if request.method != "POST":
        return _method_not_allowed(request, "POST", start)
    backend = get_backend()
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and int(declared) > backend.settings.max_body_bytes:
        return _respond(backend.body_too_large(), start)  # refuse before reading the body
    try:
        body = request.body
    except RequestDataTooBig:
        return _respond(backend.body_too_large(), start)
    return _respond(backend.predict(body, request.META.get("CONTENT_TYPE")), start)


# Error handlers (urls.handler400/403/404/500): JSON instead of Django's HTML pages.


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(400, "bad request", time.perf_counter())


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(403, "forbidden", time.perf_counter())


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(404, f"no such path: {request.path}", time.perf_counter())


def server_error(request: HttpRequest) -> HttpResponse:
    return _error(500, "internal server error", time.perf_counter())
