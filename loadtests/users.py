"""Locust users: one per way of talking to a target and per load mode.

Transports (how a request travels; the target's protocol, :mod:`targets.protocols`, says
what it looks like and how an answer is checked):

* HTTP (servecap predict API, TF Serving REST...): :class:`HttpPredict`;
* gRPC: :class:`GrpcPredictUser`; the job queue: :mod:`loadtests.jobusers`.

Load modes (when requests are sent):

* ramp: :class:`PredictUser` / :class:`GrpcPredictUser` (or the job user), closed loop:
  send, wait for the answer, pause ``wait_time``, repeat;
* rate and find-max: :class:`OpenLoop` (:class:`ArrivalUser`, :class:`GrpcArrivalUser`),
  requests leave on a schedule whatever the answers do, each carrying its scheduled send
  time (see :mod:`loadtests.recorder`);
* sequential: :class:`SequentialRuns` (:class:`SequentialUser`,
  :class:`GrpcSequentialUser`), the paper's N requests one after another, repeated.

Request bodies are pre-encoded (:mod:`loadtests.bodies`) and cycled from a random offset.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import gevent
from gevent.pool import Group
from locust import FastHttpUser, User, constant, task
from locust.exception import StopUser

from analysis.contract import FINDMAX_FILE, SEQUENTIAL_FILE, TIMELINE_FILE, write_json
from analysis.defaults import DEFAULT_MAX_ERROR_RATE
from loadtests import clock, shapes, wiretime
from loadtests.findmax import FindMaxSearch, judged_window
from loadtests.pacing import Pacer
from loadtests.spec import FindMax, Sequential, Stage
from targets.common.loopback import GRPC_OPTIONS, MAX_REDIRECTS, redirect_error
from targets.protocols import Endpoint, Protocol, get_protocol
from targets.protocols.servecap import PREDICT_PATH


class _BodyCycle:
    bodies: ClassVar[list[bytes]] = []

    def _cycle(self) -> Iterator[bytes]:
        offset = random.randrange(len(self.bodies))
        return itertools.islice(itertools.cycle(self.bodies), offset, None)


class _Protocol:
    """The target's protocol and endpoint (set on the scenario's user class by the
    locustfile)."""

    protocol_name: ClassVar[str] = "servecap"
    endpoint: ClassVar[Endpoint | None] = None

    @property
    def protocol(self) -> Protocol:
        return get_protocol(self.protocol_name)


class HttpPredict(_Protocol, _BodyCycle, FastHttpUser):
    """One predict request over HTTP; 503 is a rejection, other non-200 an error.

    :meth:`check_answer` validates a 200 body with the protocol's check. Requests are timed
    on the wire (:mod:`loadtests.wiretime`) as well as by Locust; the recorder keeps both.
    With ``connections = "per-request"`` every request has a connection of its own (asked
    ``Connection: close``, closed after the answer), as a population of clients would: a few
    keep-alive connections reused LIFO send most requests to one SO_REUSEPORT replica.
    """

    abstract = True
    headers: ClassVar[dict[str, str]] = {"Content-Type": "application/json"}
    connections: ClassVar[str] = "keep-alive"
    predict_path: ClassVar[str] = PREDICT_PATH
    wait_time = constant(0)
    max_redirects = MAX_REDIRECTS  # a redirect is an error (targets.common.loopback)

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        agent = self.client.client  # FastHttpSession's user agent, holding one pool per user
        keep_alive = self.connections != "per-request"
        agent.clientpool = wiretime.WireTimedClientPool(keep_alive, **agent.clientpool.client_args)

    def check_answer(self, body: bytes) -> None:
        """Raise ValueError when a 200 answer is not a prediction."""
        self.protocol.check(body, self.endpoint)

    def on_start(self) -> None:
        self._bodies = self._cycle()
        close = {"Connection": "close"} if self.connections == "per-request" else {}
        self._headers = {**self.headers, **close}

    def send_predict(self, context: dict[str, Any] | None = None) -> dict[str, float]:
        """Send one request; returns its wire stamps (``sent_ts``, ``wire_ms``) or {}."""
        wiretime.begin()
        with self.client.post(
            self.predict_path,
            data=next(self._bodies),  # type: ignore[arg-type]  # bytes are sent as-is
            headers=self._headers,
            name="predict",
            context=context or {},
            catch_response=True,
        ) as resp:
            stamps = wiretime.read()
            resp.request_meta["context"].update(stamps)  # for the recorder
            if resp.status_code == 503:
                resp.failure("rejected (503)")
            elif resp.status_code == 0:  # no answer: timeout, refused, reset...
                resp.failure(f"no response: {getattr(resp, 'error', None)!r}")
            elif 300 <= resp.status_code < 400:
                resp.failure(answer_error(resp))
            elif resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
            else:
                try:
                    self.check_answer(resp.content or b"")
                except ValueError as err:
                    resp.failure(str(err))
        return stamps


class PredictUser(HttpPredict):
    """ramp mode over HTTP."""

    abstract = True

    @task
    def predict(self) -> None:
        self.send_predict()


class OpenLoop:
    """Open loop (rate, find-max): send on a schedule, never waiting for answers.

    Mixed into a transport's user (HTTP or gRPC), whose ``send_predict(context)`` sends one
    request. ``arrival_users`` of these share the rate (one per generator process). A send
    that would exceed ``max_in_flight`` outstanding requests is recorded as an error ("not
    sent"), so an overloaded target shows up as errors and latency, never as a quietly lower
    rate.
    """

    mode: ClassVar[str] = "rate"
    stages: ClassVar[tuple[Stage, ...]] = ()
    arrival: ClassVar[str] = "constant"
    arrival_users: ClassVar[int] = 1
    max_in_flight: ClassVar[int] = 1000
    find_max: ClassVar[FindMax | None] = None
    slo_p99_ms: ClassVar[float] = 0.0
    max_error_rate: ClassVar[float] = DEFAULT_MAX_ERROR_RATE
    out_dir: ClassVar[Path | None] = None
    observed: ClassVar[list[tuple[float, float, str, float]]] = []
    """(ts, latency_ms, outcome, lag_ms) of finished requests, fed by the recorder
    (find-max)."""
    late_ms: ClassVar[float] = 10.0

    environment: Any
    predict_path: ClassVar[str]
    request_type: ClassVar[str] = "POST"

    if TYPE_CHECKING:  # provided by the transport's user it is mixed into

        def send_predict(self, context: dict[str, Any] | None = None) -> dict[str, float]: ...

    def on_start(self) -> None:
        super().on_start()  # type: ignore[misc]
        self._group = Group()
        self._pacer = Pacer(gevent.sleep)
        self._in_flight: dict[int, float] = {}
        self._seq = itertools.count()

    def on_stop(self) -> None:
        self._group.kill(block=False)

    def run_open_loop(self) -> None:
        if self.mode == "find-max":
            self._find_max()
        else:
            t0 = _planned_start(self.out_dir) or clock.now()
            self._schedule(t0, lambda t: _per_user(shapes.rate_at(self.stages, t), self))
        # The plan is over: let every request sent get its answer (so it is recorded), then
        # stop this user instead of idling into Locust's stop timeout.
        self._drain(timeout_s=float(getattr(self, "timeout_s", 30.0)))
        raise StopUser()

    def _schedule(
        self, t0: float, rate_fn: Callable[[float], float | None], until_ts: float | None = None
    ) -> None:
        """Fire requests at the rate ``rate_fn(seconds since t0)`` until it returns None."""
        rng = random.Random()
        next_ts = t0
        while until_ts is None or next_ts < until_ts:
            rate = rate_fn(next_ts - t0)
            if rate is None:
                return
            if rate <= 0:
                next_ts += 0.05
                continue
            self._pacer.wait_until(next_ts)
            self._fire(next_ts)
            next_ts += rng.expovariate(rate) if self.arrival == "poisson" else 1.0 / rate

    def _fire(self, scheduled_ts: float) -> None:
        if len(self._in_flight) >= self.max_in_flight:
            self.environment.events.request.fire(
                request_type=self.request_type, name="predict", response_time=0.0,
                response_length=0, response=None, context={"scheduled_ts": scheduled_ts},
                start_time=clock.now(),
                exception=RuntimeError(f"not sent: {self.max_in_flight} requests in flight"),
                url=self.predict_path,
            )  # fmt: skip
            return
        self._group.spawn(self._send, scheduled_ts)

    def _send(self, scheduled_ts: float) -> None:
        key = next(self._seq)
        self._in_flight[key] = scheduled_ts
        try:
            stamps = self.send_predict({"scheduled_ts": scheduled_ts})
            if "sent_ts" in stamps:
                self._pacer.sent(scheduled_ts, stamps["sent_ts"])
        finally:
            del self._in_flight[key]

    def _find_max(self) -> None:
        assert self.find_max is not None and self.out_dir is not None
        plan = self.find_max
        search = FindMaxSearch(plan, self.slo_p99_ms, self.max_error_rate, self.late_ms)
        timeline = shapes.Timeline(self.out_dir)
        while not search.done:
            point = search.current
            row = timeline.start(rps=point.rps, users=0)  # open loop, as rate stages
            start = clock.now()
            sent: tuple[float, float] | None = None  # judged once the next window is sent
            while True:
                opened = clock.now()
                self._schedule(opened, lambda _t: point.rps, opened + plan.window_s)  # noqa: B023
                now = clock.now()
                if sent is not None:
                    window = judged_window(sent, now, self.observed, self._in_flight.values(),
                                           self.slo_p99_ms, self.late_ms)  # fmt: skip
                    if search.add_window(window, now - start):
                        break
                sent = (opened, now)
            timeline.end(row, passed=point.passed, reason=point.reason,
                         steady_from_ts=point.steady_from_ts,
                         steady_to_ts=point.steady_to_ts)  # fmt: skip
            # Independent probes: this rate's backlog drains (and is recorded in its stage).
            timeout_s = float(getattr(self, "timeout_s", 30.0))
            point.drain_s, point.drained = self._drain(timeout_s)
            timeline.annotate(row, drain_s=point.drain_s, drained=point.drained)
            write_json(self.out_dir / FINDMAX_FILE, search.result())
            gevent.sleep(plan.drain_idle_s)
            self.observed.clear()
        shapes.DONE.set()

    def _drain(self, timeout_s: float) -> tuple[float, bool]:
        """Wait until nothing sent is in flight (at most ``timeout_s``): (seconds, drained)."""
        start = clock.now()
        deadline = start + timeout_s
        while self._in_flight and clock.now() < deadline:
            gevent.sleep(0.01)
        return clock.now() - start, not self._in_flight


class SequentialRuns:
    """The paper's method: N requests one after another, each N repeated, timed in total.
    Mixed into a transport's user, as :class:`OpenLoop` is."""

    plan: ClassVar[Sequential] = Sequential()
    out_dir: ClassVar[Path | None] = None

    if TYPE_CHECKING:  # provided by the transport's user it is mixed into

        def send_predict(self, context: dict[str, Any] | None = None) -> dict[str, float]: ...

    def run_sequential(self) -> None:
        assert self.out_dir is not None
        timeline = shapes.Timeline(self.out_dir)
        runs: list[dict[str, Any]] = []
        for n in self.plan.requests:
            for rep in range(self.plan.repeat):
                row = timeline.start(requests=n, repeat=rep)
                start = time.perf_counter()
                for _ in range(n):
                    self.send_predict()
                total_s = time.perf_counter() - start
                timeline.end(row, total_s=total_s)
                runs.append({"requests": n, "repeat": rep, "total_s": total_s})
                write_json(self.out_dir / SEQUENTIAL_FILE, runs)
        shapes.DONE.set()
        raise StopUser()


class ArrivalUser(OpenLoop, HttpPredict):
    """rate and find-max modes over HTTP."""

    abstract = True
    concurrency = 1000  # connections in FastHttpSession's pool

    @task
    def drive(self) -> None:
        self.run_open_loop()


class SequentialUser(SequentialRuns, HttpPredict):
    """sequential mode over HTTP."""

    abstract = True

    @task
    def drive(self) -> None:
        self.run_sequential()


def answer_error(resp: Any) -> str:
    """The error of a 3xx answer (never followed) or another non-success status."""
    status = int(resp.status_code)
    if 300 <= status < 400:
        location = resp.headers.get("location") if resp.headers else None
        return redirect_error(str(resp.request_meta["url"]), status, location)
    return f"HTTP {status}"


def _planned_start(out_dir: Path | None) -> float | None:
    """The first stage's start from timeline.json (shared by every generator process)."""
    if out_dir is None:
        return None
    try:
        return float(json.loads((out_dir / TIMELINE_FILE).read_text())[0]["start_ts"])
    except (OSError, ValueError, KeyError, IndexError):
        return None


def _per_user(rate: float | None, user: OpenLoop) -> float | None:
    return None if rate is None else rate / max(1, user.arrival_users)


class GrpcPredict(_Protocol, _BodyCycle, User):
    """One unary gRPC predict call, reported through Locust's request event;
    RESOURCE_EXHAUSTED is a rejection (503), other failures errors. Timed by the client (the
    channel's own time on the wire is not visible).

    Through gRPC's gevent integration; checked against threads of ``tritonclient.grpc`` on
    the Triton target (``benchmarks/fidelity.py``, 7 alternating pairs): at 8 users the same
    throughput (ratio 1.04), at 1 user about 2 ms more per call (p50 11.4 vs 9.5 ms). Running
    the blocking call in a native thread pool instead was measured too and not kept: the
    hand-off between that thread and the gevent hub (about 1 ms a call, outside the timed
    call) cost about 7% of a closed loop's throughput."""

    abstract = True
    grpc_target: ClassVar[str] = "127.0.0.1:8500"
    timeout_s: ClassVar[float] = 30.0
    wait_time = constant(0)

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        import grpc
        import grpc.experimental.gevent as grpc_gevent

        grpc_gevent.init_gevent()  # grpc's own threads must cooperate with Locust's gevent
        self._channel = grpc.insecure_channel(self.grpc_target, options=GRPC_OPTIONS)
        self._predict = self._channel.unary_unary(self.protocol.grpc_method)  # bytes in and out

    def on_start(self) -> None:
        self._bodies = self._cycle()

    def on_stop(self) -> None:
        self._channel.close()

    request_type: ClassVar[str] = "grpc"

    def send_predict(self, context: dict[str, Any] | None = None) -> dict[str, float]:
        """Send one request; returns its send time (``sent_ts``) for the open-loop pacer."""
        import grpc

        body = next(self._bodies)
        start_time = clock.now()
        start = time.perf_counter()
        exception: Exception | None = None
        size = 0
        status = 200
        try:
            answer = self._predict(body, timeout=self.timeout_s)
            size = len(answer)
            self.protocol.check(answer, self.endpoint)
        except grpc.RpcError as err:
            exception = err
            code = err.code() if hasattr(err, "code") else None
            status = 503 if code == grpc.StatusCode.RESOURCE_EXHAUSTED else 0
        except ValueError as err:
            exception = err
            status = 0
        self.environment.events.request.fire(
            request_type="grpc",
            name="predict",
            response_time=(time.perf_counter() - start) * 1000,
            response_length=size,
            response=_GrpcStatus(status),
            exception=exception,
            context=context or {},
            start_time=start_time,
            url=self.grpc_target,
        )
        return {"sent_ts": start_time}


class GrpcPredictUser(GrpcPredict):
    """ramp mode over gRPC."""

    abstract = True

    @task
    def predict(self) -> None:
        self.send_predict()


class GrpcArrivalUser(OpenLoop, GrpcPredict):
    """rate and find-max modes over gRPC."""

    abstract = True

    @task
    def drive(self) -> None:
        self.run_open_loop()


class GrpcSequentialUser(SequentialRuns, GrpcPredict):
    """sequential mode over gRPC."""

    abstract = True

    @task
    def drive(self) -> None:
        self.run_sequential()


class _GrpcStatus:
    """Carries an HTTP-like status for the recorder (200 ok, 503 resource exhausted, 0 error)."""

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
