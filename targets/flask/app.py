"""Flask adapter around :class:`targets.common.service.InferenceService`.

Same endpoints, schema, statuses and error bodies as the FastAPI target (``GET /healthz``,
``GET /v1/info``, ``POST /v1/predict``). Every error, including 404, 405 and 413, is answered as
JSON ``{"error": ...}``, never as an HTML page. Answers carry ``Server-Timing: app;dur=<ms>``
(time in the view), as the Django tier's do.

Served by gunicorn, never the Flask development server (see :mod:`targets.common.gunicorn`)::

    gunicorn -k gthread -w 2 --threads 4 -b 127.0.0.1:8101 'targets.flask.app:create_app()'

Without ``--preload``, each gunicorn worker calls :func:`create_app` after the fork and loads
its own model.
"""

from __future__ import annotations

import time

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from targets.common.payload import error_body
from targets.common.service import InferenceService, Reply, load_service
from targets.protocols.servecap import HEALTH_PATH, INFO_PATH, PREDICT_PATH


def _response(reply: Reply) -> Response:
    return Response(reply.body, reply.status, reply.headers, content_type=reply.content_type)


def create_app(service: InferenceService | None = None) -> Flask:
    """Build the app; loads the model from ``SERVECAP_*`` settings unless a service is given."""
    svc = service or load_service()
    app = Flask(__name__)
    # Werkzeug refuses longer bodies with 413 (declared or streamed), before Flask reads them.
    app.config["MAX_CONTENT_LENGTH"] = svc.settings.max_body_bytes

    @app.before_request
    def _start_clock() -> None:
        g.start = time.perf_counter()

    @app.after_request
    def _server_timing(response: Response) -> Response:
        start = g.get("start")
        if start is not None:
            elapsed_ms = (time.perf_counter() - start) * 1000
            response.headers["Server-Timing"] = f"app;dur={elapsed_ms:.2f}"
        return response

    @app.get(HEALTH_PATH)
    def healthz() -> Response:
        return _response(svc.health())

    @app.get(INFO_PATH)
    def info() -> Response:
        return _response(svc.info())

    @app.get("/metrics")
    def metrics() -> Response:
        return _response(svc.metrics())

    @app.post(PREDICT_PATH)
    def predict() -> Response:
        try:
            body = request.get_data(cache=False)
        except RequestEntityTooLarge:
            return _response(svc.body_too_large())
        # Size check, max_works admission, decode and inference: InferenceService.predict.
        return _response(svc.predict(body, request.content_type))

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_err: RequestEntityTooLarge) -> Response:
        return _response(svc.body_too_large())

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        status = err.code or 500
        allow = [value for name, value in err.get_headers() if name.lower() == "allow"]
        if status == 404:
            message = f"no such path: {request.path}"
        elif status == 405:
            message = f"method {request.method} not allowed; use {', '.join(allow)}"
        else:
            message = err.description or err.name
        return _response(Reply(status, error_body(message), {"Allow": allow[0]} if allow else {}))

    @app.errorhandler(Exception)
    def unexpected(err: Exception) -> Response:
        app.logger.exception("unhandled error")
        return _response(Reply(500, error_body("internal server error")))

    return app
