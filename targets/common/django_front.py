"""How the Django front starts, for every kind that has one: gunicorn + Django, nginx in front.

Embedded (the paper's architecture a)::

    nginx (host:port) -> gunicorn gthread (127.0.0.1:app_port) -> Django, model in each worker

The chains (``django-to-flask``, ``django-to-fastapi``, ``django-to-tfserving``) put a model
server on ``127.0.0.1:model_port`` first and start the same Django in forward mode
(:func:`front_plan` with an upstream). Start order is back to front, each process ready
before the next: model server, Django (its ``/healthz`` checks the model server in forward
mode), nginx (ready once ``/healthz`` answers through it).

Sizes, kept simple: Django runs ``config.workers`` gunicorn workers of
:func:`targets.common.gunicorn.effective_threads` threads each; a chain's model server runs
``config.workers`` workers too (same threads rule for Flask); nginx runs one worker
(:mod:`targets.common.nginx`).

max_works (per worker process, see :mod:`targets.common.gunicorn`) applies in every tier that runs
Python: Django refuses over its limit before decoding anything, and a chain's model server
applies the same limit to itself; its 503 reaches the client as 503 with its Retry-After.
"""

from __future__ import annotations

from pydantic import Field

from targets.common.apps import DJANGO_APP
from targets.common.forward import ForwardSettings
from targets.common.gunicorn import effective_threads, gunicorn_spec
from targets.common.launch import server_env
from targets.common.nginx import nginx_spec
from targets.common.settings import settings_env
from targets.config import InferenceServerConfig, loopback_url
from targets.launch_types import HOST, Placement, ProcessSpec


class DjangoConfig(InferenceServerConfig):
    """Django behind nginx: the app server has a port of its own."""

    internal_port: int | None = Field(
        default=None, ge=1024, le=65535, description="Django's port behind nginx; default port+1"
    )

    @property
    def app_port(self) -> int:
        return self.internal_port or self.port + 1

    def django_ports(self) -> dict[str, tuple[str, int]]:
        return {"port": (self.host, self.port), "internal_port": ("127.0.0.1", self.app_port)}


def django_spec(
    name: str, config: DjangoConfig, placement: Placement = HOST,
    upstream_url: str | None = None, upstream_protocol: str = "servecap",
) -> ProcessSpec:  # fmt: skip
    """Django under gunicorn on 127.0.0.1:app_port; forward mode when ``upstream_url`` is set."""
    forward: dict[str, str] = {}
    if upstream_url:
        forward = settings_env(ForwardSettings, {
            "upstream_url": upstream_url,
            "upstream_protocol": upstream_protocol,
            "upstream_pool_size": effective_threads(config),
        })  # fmt: skip
    return gunicorn_spec(f"{name}-django", "django-forward" if upstream_url else "django",
                         DJANGO_APP, server_env(config, forward), config, "127.0.0.1",
                         config.app_port, placement)  # fmt: skip


def front_plan(
    name: str, config: DjangoConfig, placement: Placement = HOST,
    upstream_url: str | None = None, upstream_protocol: str = "servecap",
) -> list[ProcessSpec]:  # fmt: skip
    """Django (embedded, or forwarding to ``upstream_url``) then nginx in front of it."""
    django = django_spec(name, config, placement, upstream_url, upstream_protocol)
    nginx = nginx_spec(name, config.host, config.port, config.app_port, config.max_body_bytes,
                       placement)  # fmt: skip
    return [django, nginx]


def upstream_url(port: int) -> str:
    """A chain's model server, as Django reaches it."""
    return loopback_url("127.0.0.1", port)
