"""How the Django targets start as local processes: gunicorn + Django, nginx in front.

Embedded (the paper's architecture a)::

    nginx (host:port) -> gunicorn gthread (127.0.0.1:app_port) -> Django, model in each worker

The chains (``django-to-flask``, ``django-to-fastapi``) put a model server on
``127.0.0.1:model_port`` first and start the same Django in forward mode
(:func:`front_plan` with an upstream URL). Start order is back to front, each process ready
before the next: model server, Django (its ``/healthz`` checks the model server in forward
mode), nginx (ready once ``/healthz`` answers through it).

Sizes, kept simple: Django runs ``config.workers`` gunicorn workers of
:func:`targets.flask.launch.effective_threads` threads each; a chain's model server runs
``config.workers`` workers too (same threads rule for Flask); nginx runs one worker
(:mod:`targets.common.nginx`).

max_works (per worker process, see :mod:`targets.flask.launch`) applies in every tier that runs
Python: Django refuses over its limit before decoding anything, and a chain's model server
applies the same limit to itself; its 503 reaches the client as 503 with its Retry-After.
"""

from __future__ import annotations

from targets.common.nginx import nginx_spec
from targets.config import TargetConfig, loopback_url
from targets.flask.launch import effective_threads, gunicorn_argv
from targets.launchers.base import LaunchError, ProcessSpec, port_is_free
from targets.registry import server_env

DJANGO_APP = "targets.django_embedded.wsgi:create_app()"


def require_free_ports(name: str, config: TargetConfig, ports: dict[str, int]) -> None:
    """Refuse to start when an internal port is taken (only the public port is checked by the
    launcher; a busy internal port could otherwise pass another server's health check)."""
    for field, port in ports.items():
        if not port_is_free("127.0.0.1", port):
            raise LaunchError(
                f"target '{name}': port {port} ({field}) on 127.0.0.1 is already in use; stop "
                f"that process or set targets.{name}.{field}"
            )


def django_spec(
    name: str, config: TargetConfig, upstream_url: str | None = None, upstream_kind: str = ""
) -> ProcessSpec:
    """Django under gunicorn on 127.0.0.1:app_port; forward mode when ``upstream_url`` is set."""
    forward: dict[str, str] = {}
    if upstream_url:
        forward = {
            "SERVECAP_UPSTREAM_URL": upstream_url,
            "SERVECAP_UPSTREAM_KIND": upstream_kind or "servecap",
            "SERVECAP_UPSTREAM_POOL_SIZE": str(effective_threads(config)),
        }
    return ProcessSpec(
        name=f"{name}-django",
        argv=gunicorn_argv(DJANGO_APP, "127.0.0.1", config.app_port, config),
        env={**forward, **server_env(config)},  # config.env may override the forward settings
        ready_url=f"{loopback_url('127.0.0.1', config.app_port)}/healthz",
    )


def front_plan(
    name: str, config: TargetConfig, upstream_url: str | None = None, upstream_kind: str = ""
) -> list[ProcessSpec]:
    """Django (embedded, or forwarding to ``upstream_url``) then nginx in front of it."""
    return [django_spec(name, config, upstream_url, upstream_kind), nginx_spec(name, config)]


def process_plan(name: str, config: TargetConfig) -> list[ProcessSpec]:
    require_free_ports(name, config, {"internal_port": config.app_port})
    return front_plan(name, config)
