"""How ``django-to-flask`` starts: Flask model server, Django forwarding to it, nginx in front.

::

    gunicorn Flask (127.0.0.1:model_port, config.workers workers)
    gunicorn Django, forward mode (127.0.0.1:app_port, config.workers workers)
    nginx (host:port)

Both gunicorn tiers use :func:`targets.flask.launch.gunicorn_argv`; max_works applies in each
tier, per worker process (an upstream 503 reaches the client as 503 with Retry-After).
"""

from __future__ import annotations

from targets.config import TargetConfig, loopback_url
from targets.django_embedded.launch import front_plan, require_free_ports
from targets.flask.launch import flask_spec
from targets.launchers.base import ProcessSpec


def process_plan(name: str, config: TargetConfig) -> list[ProcessSpec]:
    require_free_ports(
        name, config, {"internal_port": config.app_port, "upstream_port": config.model_port}
    )
    model = flask_spec(f"{name}-flask", config, "127.0.0.1", config.model_port)
    upstream = loopback_url("127.0.0.1", config.model_port)
    return [model, *front_plan(name, config, upstream, "servecap")]
