"""The ``django-to-flask`` kind: nginx -> Django (forwarding) -> Flask model server.

::

    gunicorn Flask (127.0.0.1:model_port, config.workers workers)
    gunicorn Django, forward mode (127.0.0.1:app_port, config.workers workers)
    nginx (host:port)
"""

from __future__ import annotations

from typing import ClassVar, Literal

from targets.common.apps import FLASK_APP
from targets.common.chain import ChainConfig, ChainKind
from targets.common.gunicorn import gunicorn_spec
from targets.common.launch import server_env
from targets.config import TargetConfig
from targets.kind import Containers, PaperArchitecture
from targets.launch_types import Placement, ProcessSpec


class DjangoToFlaskConfig(ChainConfig):
    kind: Literal["django-to-flask"] = "django-to-flask"


class DjangoToFlaskKind(ChainKind):
    name = "django-to-flask"
    config_model: ClassVar[type[TargetConfig]] = DjangoToFlaskConfig
    description = "nginx -> gunicorn -> Django (forwarding) -> Flask model server"
    paper = PaperArchitecture("Flask API", same_path=True)
    containers = Containers(("flask", "django-forward", "nginx"))
    part_roles: ClassVar[dict[str, str]] = {"web": "django-forward"}

    def model_plan(self, name: str, config: ChainConfig, placement: Placement) -> list[ProcessSpec]:
        return [gunicorn_spec(f"{name}-flask", "flask", FLASK_APP, server_env(config), config,
                              "127.0.0.1", config.model_port, placement)]  # fmt: skip


KIND = DjangoToFlaskKind()
