"""The locustfile ``servecap run`` starts Locust with (headless, one per run and target).

Reads the run configuration from ``SERVECAP_LOAD_CONFIG``, picks the user class for the
target's client, builds the request bodies, records every request
(:mod:`loadtests.recorder`) and drives the scenario's stages
(:class:`loadtests.shapes.StagesShape`).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from locust import User, between, constant, events

from loadtests.bodies import build_bodies
from loadtests.recorder import RequestRecorder
from loadtests.runconfig import load_run_config
from loadtests.shapes import StagesShape

USER_CLASSES = {
    "predict": "loadtests.users:PredictUser",
    "tfserving-rest": "loadtests.users:TFServingRestUser",
    "tfserving-grpc": "loadtests.users:TFServingGrpcUser",
    "jobqueue": "loadtests.jobusers:JobUser",
}

_config = load_run_config()
_plan = _config.plan
_recorder: RequestRecorder | None = None


def _user_base(client: str) -> type[User]:
    module, _, name = USER_CLASSES[client].partition(":")
    cls: type[User] = getattr(importlib.import_module(module), name)
    return cls


ScenarioUser: type[User] = type(
    "ScenarioUser",
    (_user_base(_config.client),),
    {
        "abstract": False,
        "host": _config.base_url,
        "predict_path": _config.predict_path,
        "grpc_target": _config.grpc_target or "",
        "wait_time": (
            between(0.5 * _plan.think_time_s, 1.5 * _plan.think_time_s)
            if _plan.think_time_s
            else constant(0)
        ),
        "network_timeout": _plan.request_timeout_s,
        "connection_timeout": _plan.request_timeout_s,
        "timeout_s": _plan.request_timeout_s,
    },
)


class ScenarioShape(StagesShape):
    abstract = False
    stages = _plan.stages
    out_dir = Path(_config.out_dir)


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    global _recorder
    bodies, content_type = build_bodies(_config)
    ScenarioUser.bodies = bodies  # type: ignore[attr-defined]
    ScenarioUser.content_type = content_type  # type: ignore[attr-defined]
    runner = environment.runner
    if runner is not None and type(runner).__name__ == "MasterRunner":
        return  # the master sends no requests; its workers record
    _recorder = RequestRecorder(Path(_config.out_dir))
    if runner is not None:
        _recorder.user_count = lambda: runner.user_count
    environment.events.request.add_listener(_recorder.on_request)


@events.quitting.add_listener
def _on_quit(**_: Any) -> None:
    if _recorder is not None:
        _recorder.close()
