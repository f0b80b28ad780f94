"""Django settings, in code: no database, no admin, no sessions, no CSRF middleware.

Django reads its settings once per process; :func:`configure` sets them from the
``SERVECAP_*`` server settings (nothing else is configurable, on purpose: every Django target
runs the same minimal stack, so measurements compare serving architectures, not Django setups).
"""

from __future__ import annotations

import secrets
from typing import Any

from targets.common.settings import ServerSettings

ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
"""Host names Django answers to: it is only ever reached through loopback (nginx passes the
client's Host header on)."""


def django_settings(server: ServerSettings) -> dict[str, Any]:
    """The settings of the servecap Django project for ``server``'s limits."""
    return {
        "DEBUG": False,
        # Nothing is signed (no sessions, no CSRF, no messages): a fresh key per process is fine.
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": list(ALLOWED_HOSTS),
        "ROOT_URLCONF": "targets.django_embedded.urls",
        "INSTALLED_APPS": [],
        # No CsrfViewMiddleware (a JSON API for non-browser clients), no sessions, no
        # CommonMiddleware: the request path is Django's URL resolver and the view, nothing more.
        "MIDDLEWARE": [],
        "DATABASES": {},
        "TEMPLATES": [],
        # Bodies over the limit raise RequestDataTooBig when read; the view answers 413 JSON.
        "DATA_UPLOAD_MAX_MEMORY_SIZE": server.max_body_bytes,
        "USE_I18N": False,
        "USE_TZ": True,
        "LOGGING": {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"stderr": {"class": "logging.StreamHandler"}},
            # Unhandled exceptions (500s) go to the server log; 4xx warnings do not.
            "loggers": {
                "django.request": {"handlers": ["stderr"], "level": "ERROR", "propagate": False}
            },
        },
    }


def configure(server: ServerSettings) -> None:
    """Configure and set up Django for this process (no-op when already configured)."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(**django_settings(server))
    django.setup(set_prefix=False)
