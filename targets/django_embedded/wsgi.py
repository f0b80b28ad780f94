"""The WSGI entry point gunicorn loads in each worker: ``wsgi:create_app()``.

Run without ``--preload``: gunicorn then calls :func:`create_app` in every worker process after
the fork, so each worker loads its own model (TensorFlow is not fork-safe) or opens its own
upstream connection pool, and the master process never imports TensorFlow.
"""

from __future__ import annotations

from django.core.handlers.wsgi import WSGIHandler

from targets.common.forward import ForwardService, ForwardSettings, Upstream
from targets.common.settings import ServerSettings
from targets.django_embedded import views
from targets.django_embedded.conf import configure


def make_backend(server: ServerSettings) -> views.Backend:
    """Forward mode when ``SERVECAP_UPSTREAM_URL`` is set, else the model embedded."""
    forward = ForwardSettings()
    if forward.upstream_url:
        return ForwardService(Upstream.from_settings(forward), server)
    from targets.common.service import load_service

    return load_service(server)


def create_app(backend: views.Backend | None = None) -> WSGIHandler:
    """Configure Django, install the backend (loads the model in embedded mode), return the app."""
    server = backend.settings if backend is not None else ServerSettings()
    configure(server)
    views.install(backend if backend is not None else make_backend(server))
    return WSGIHandler()
