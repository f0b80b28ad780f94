"""The ``django-to-fastapi`` kind: nginx -> Django (forwarding) -> FastAPI model server.

::

    uvicorn FastAPI (127.0.0.1:model_port, config.workers workers)
    gunicorn Django, forward mode (127.0.0.1:app_port, config.workers workers)
    nginx (host:port)

uvicorn runs as the standalone ``fastapi`` target does, plus a 75 s keep-alive (its default is
5 s) so Django's pooled connections stay open between bursts. max_works applies in each tier,
per worker process (an upstream 503 reaches the client as 503 with Retry-After).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from targets.common.apps import FASTAPI_APP
from targets.common.chain import ChainConfig, ChainKind
from targets.common.gunicorn import KEEPALIVE_S
from targets.common.launch import server_env
from targets.common.uvicorn import uvicorn_spec
from targets.config import TargetConfig
from targets.kind import Containers, PaperArchitecture
from targets.launch_types import Placement, ProcessSpec


class DjangoToFastAPIConfig(ChainConfig):
    kind: Literal["django-to-fastapi"] = "django-to-fastapi"


class DjangoToFastAPIKind(ChainKind):
    name = "django-to-fastapi"
    config_model: ClassVar[type[TargetConfig]] = DjangoToFastAPIConfig
    description = "nginx -> gunicorn -> Django (forwarding) -> FastAPI model server"
    paper = PaperArchitecture("FastAPI", same_path=True)
    containers = Containers(("fastapi", "django-forward", "nginx"))
    part_roles: ClassVar[dict[str, str]] = {"web": "django-forward"}

    def model_plan(self, name: str, config: ChainConfig, placement: Placement) -> list[ProcessSpec]:
        return [uvicorn_spec(f"{name}-fastapi", "fastapi", FASTAPI_APP, server_env(config),
                             "127.0.0.1", config.model_port, config.workers, placement,
                             keepalive_s=KEEPALIVE_S)]  # fmt: skip


KIND = DjangoToFastAPIKind()
