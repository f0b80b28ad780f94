"""How ``django-to-fastapi`` starts: FastAPI model server, Django forwarding to it, nginx.

::

    uvicorn FastAPI (127.0.0.1:model_port, config.workers workers)
    gunicorn Django, forward mode (127.0.0.1:app_port, config.workers workers)
    nginx (host:port)

uvicorn runs as the standalone ``fastapi`` target does, plus a 75 s keep-alive (its default is
5 s) so Django's pooled connections stay open between bursts. max_works applies in each tier,
per worker process (an upstream 503 reaches the client as 503 with Retry-After).
"""

from __future__ import annotations

from targets.config import TargetConfig, loopback_url
from targets.django_embedded.launch import front_plan, require_free_ports
from targets.fastapi.launch import uvicorn_spec
from targets.flask.launch import KEEPALIVE_S
from targets.launchers.base import ProcessSpec


def fastapi_spec(name: str, config: TargetConfig, port: int) -> ProcessSpec:
    """The chain's model server: the FastAPI target's uvicorn on 127.0.0.1:port."""
    return uvicorn_spec(name, config, "127.0.0.1", port, ("--timeout-keep-alive", str(KEEPALIVE_S)))


def process_plan(name: str, config: TargetConfig) -> list[ProcessSpec]:
    require_free_ports(
        name, config, {"internal_port": config.app_port, "upstream_port": config.model_port}
    )
    model = fastapi_spec(f"{name}-fastapi", config, config.model_port)
    upstream = loopback_url("127.0.0.1", config.model_port)
    return [model, *front_plan(name, config, upstream, "servecap")]
