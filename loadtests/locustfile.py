"""The locustfile ``servecap run`` starts Locust with (headless, one per run and target).

Reads the run configuration from ``SERVECAP_LOAD_CONFIG``, composes the user class for the
target's client and the plan's mode, picks the matching shape, builds the request bodies and
records every request (:mod:`loadtests.recorder`).

Distributed runs: local worker processes (``workers: N``) write their own record parts into
the run folder. Remote workers (``remote_workers``, started by ``servecap worker``) send their
records to the master as Locust messages, and the master writes them into the same folder.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import Any

import gevent
from locust import LoadTestShape, User, between, constant, events

from loadtests import clock
from loadtests.bodies import build_bodies
from loadtests.generator import FORWARD_ENV_VAR
from loadtests.recorder import RequestRecorder, append_rows, valid_row
from loadtests.runconfig import LoadRunConfig, load_run_config
from loadtests.shapes import RateShape, StagesShape, UntilDoneShape

USERS = {
    ("http", "ramp"): "loadtests.users:PredictUser",
    ("http", "rate"): "loadtests.users:ArrivalUser",
    ("http", "find-max"): "loadtests.users:ArrivalUser",
    ("http", "sequential"): "loadtests.users:SequentialUser",
    ("grpc", "ramp"): "loadtests.users:GrpcPredictUser",
    ("grpc", "rate"): "loadtests.users:GrpcArrivalUser",
    ("grpc", "find-max"): "loadtests.users:GrpcArrivalUser",
    ("grpc", "sequential"): "loadtests.users:GrpcSequentialUser",
    ("jobs", "ramp"): "loadtests.jobusers:JobUser",
    ("jobs", "rate"): "loadtests.jobusers:JobArrivalUser",
    ("jobs", "find-max"): "loadtests.jobusers:JobArrivalUser",
}
"""The user for a transport (the protocol says which; :mod:`targets.protocols`) and a load
mode; the orchestrator refuses combinations a protocol does not support."""


def _load(path: str) -> type:
    module, _, name = path.partition(":")
    cls: type = getattr(importlib.import_module(module), name)
    return cls


def user_bases(config: LoadRunConfig) -> tuple[type, ...]:
    """The classes the scenario's user derives from, for this protocol and mode."""
    return (_load(USERS[(config.protocol.transport, config.plan.mode)]),)


def shape_class(config: LoadRunConfig, out_dir: Path) -> type[LoadTestShape]:
    plan = config.plan
    grace_s = remote_grace_s(config)
    if plan.mode == "ramp":
        return type("ScenarioShape", (StagesShape,), {"abstract": False, "stages": plan.stages,
                    "out_dir": out_dir, "end_grace_s": grace_s})  # fmt: skip
    if plan.mode == "rate":
        return type("ScenarioShape", (RateShape,), {"abstract": False, "stages": plan.stages,
                    "out_dir": out_dir, "arrival_users": plan.generator_processes,
                    "end_grace_s": grace_s})  # fmt: skip
    return type("ScenarioShape", (UntilDoneShape,),
                {"abstract": False, "max_duration_s": plan.duration_s})  # fmt: skip


def remote_grace_s(config: LoadRunConfig) -> float:
    """How long a master with remote workers waits after the plan for their last records:
    the answers still in flight (bounded by the request timeout, at most 10 s) plus two
    forwarding intervals. Requests slower than that at the very end are not recorded."""
    if not config.plan.remote_workers:
        return 0.0
    return min(config.plan.request_timeout_s, 10.0) + 2 * FORWARD_INTERVAL_S


FORWARD_INTERVAL_S = 1.0
"""A remote worker sends its records to the master at least this often."""

log = logging.getLogger("servecap.locustfile")
_config = load_run_config()
_plan = _config.plan
_out = Path(_config.out_dir)
_recorder: RequestRecorder | None = None

ScenarioUser: type[User] = type(
    "ScenarioUser",
    user_bases(_config),
    {
        "abstract": False,
        "host": _config.base_url,
        "protocol_name": _config.endpoint.protocol,
        "endpoint": _config.endpoint,
        "predict_path": _config.predict_path,
        "grpc_target": _config.endpoint.grpc_target or "",
        "wait_time": (
            between(0.5 * _plan.think_time_s, 1.5 * _plan.think_time_s)
            if _plan.think_time_s
            else constant(0)
        ),
        "network_timeout": _plan.request_timeout_s,
        "connection_timeout": _plan.request_timeout_s,
        "timeout_s": _plan.request_timeout_s,
        # open loop, sequential and find-max settings (ignored by the other users)
        "mode": _plan.mode,
        "stages": _plan.stages,
        "arrival": _plan.arrival,
        "arrival_users": _plan.generator_processes,
        "max_in_flight": _plan.max_in_flight,
        "concurrency": _plan.max_in_flight,
        "connections": _plan.connections,
        "find_max": _plan.find_max,
        "late_ms": _plan.late_ms,
        "slo_p99_ms": _config.slo_p99_ms or 0.0,
        "max_error_rate": _config.max_error_rate,
        "plan": _plan.sequential,
        "out_dir": _out,
        "observed": [],
    },
)
ScenarioShape = shape_class(_config, _out)


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    global _recorder
    bodies, headers = build_bodies(_config)
    ScenarioUser.bodies = bodies  # type: ignore[attr-defined]
    ScenarioUser.headers = dict(headers)  # type: ignore[attr-defined]
    runner = environment.runner
    if runner is not None and type(runner).__name__ == "MasterRunner":
        # The master sends no requests; local workers record into the run folder themselves,
        # remote ones send their rows here.
        runner.register_message(RECORDS_MESSAGE, _write_forwarded)
        return
    if os.environ.get(FORWARD_ENV_VAR) and runner is not None:

        def forward(rows: list[Any]) -> None:
            runner.send_message(RECORDS_MESSAGE, {"worker": runner.client_id, "rows": rows})

        recorder = _recorder = RequestRecorder(_out, FORWARD_INTERVAL_S, forward=forward)

        def flush_periodically() -> None:  # also when no request finishes (a drain, the end)
            while True:
                gevent.sleep(FORWARD_INTERVAL_S)
                recorder.flush()

        gevent.spawn(flush_periodically)
        environment.events.test_stop.add_listener(lambda **_: recorder.flush())
    else:
        _recorder = RequestRecorder(_out)
    if runner is not None:
        _recorder.user_count = lambda: runner.user_count
    if _plan.mode == "find-max":
        observed: list[tuple[float, float, str, float]] = ScenarioUser.observed  # type: ignore[attr-defined]
        _recorder.observers.append(lambda *seen: observed.append(seen))
        _recorder.observed_name = _config.primary_request  # a job, not its submit and polls
    environment.events.request.add_listener(_recorder.on_request)


RECORDS_MESSAGE = "servecap_records"


def _write_forwarded(environment: Any, msg: Any, **_: Any) -> None:
    """Keep a remote worker's rows: only from a worker that registered with this master (the
    sender's own id, not what the message claims), only rows that fit the contract."""
    sender = getattr(msg, "node_id", None)
    data = msg.data if isinstance(msg.data, dict) else {}
    rows = data.get("rows")
    if sender not in environment.runner.clients or not isinstance(rows, list):
        log.warning("dropped records from %r: not a registered worker, or no rows", sender)
        return
    now = clock.now()
    good = [row for row in rows if valid_row(row, now)]
    if len(good) < len(rows):
        log.warning("dropped %d malformed records from worker %s", len(rows) - len(good), sender)
    if good:
        append_rows(_out, f"remote-{sender}", good)


@events.quitting.add_listener
def _on_quit(**_: Any) -> None:
    if _recorder is not None:
        _recorder.close()
