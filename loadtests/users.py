"""Locust users: one per way of talking to a target, all sending CIFAR-10 test images.

* :class:`PredictUser`: the servecap predict API every Python target speaks;
* :class:`TFServingRestUser`: TF Serving's REST predict API;
* :class:`TFServingGrpcUser`: TF Serving's gRPC ``PredictionService/Predict``.

All are closed-loop (send, wait for the answer, pause ``wait_time``, repeat). Request bodies
are pre-encoded (:mod:`loadtests.bodies`) and cycled from a random offset per user.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from typing import Any, ClassVar

from locust import FastHttpUser, User, constant, task

from targets.tfserving import protocol as tfs


class _BodyCycle:
    bodies: ClassVar[list[bytes]] = []

    def _cycle(self) -> Iterator[bytes]:
        offset = random.randrange(len(self.bodies))
        return itertools.islice(itertools.cycle(self.bodies), offset, None)


class PredictUser(_BodyCycle, FastHttpUser):
    """POST the servecap predict API; 503 counts as a rejection, other non-200 as errors."""

    abstract = True  # made concrete by the locustfile once configured
    content_type: ClassVar[str] = "application/json"
    predict_path: ClassVar[str] = "/v1/predict"
    wait_time = constant(0)

    def on_start(self) -> None:
        self._bodies = self._cycle()

    @task
    def predict(self) -> None:
        body = next(self._bodies)
        with self.client.post(
            self.predict_path,
            data=body,  # type: ignore[arg-type]  # bytes are sent as-is at runtime
            headers={"Content-Type": self.content_type},
            name="predict",
            catch_response=True,
        ) as resp:
            if resp.status_code == 200:
                resp.success()
            elif resp.status_code == 503:
                resp.failure("rejected (503)")
            else:
                resp.failure(f"HTTP {resp.status_code}")


class TFServingRestUser(PredictUser):
    """TF Serving REST: same loop, its own path and answer format (checked, not just 200)."""

    abstract = True
    predict_path = tfs.rest_predict_path()

    @task
    def predict(self) -> None:
        body = next(self._bodies)
        with self.client.post(
            self.predict_path,
            data=body,  # type: ignore[arg-type]
            headers={"Content-Type": "application/json"},
            name="predict",
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
                return
            try:
                tfs.rest_probabilities(resp.content or b"")
            except ValueError as err:
                resp.failure(str(err))


class TFServingGrpcUser(_BodyCycle, User):
    """TF Serving gRPC Predict, with latency reported through Locust's request event."""

    abstract = True
    grpc_target: ClassVar[str] = "127.0.0.1:8500"
    timeout_s: ClassVar[float] = 30.0
    wait_time = constant(0)

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        import grpc
        import grpc.experimental.gevent as grpc_gevent

        grpc_gevent.init_gevent()  # grpc's own threads must cooperate with Locust's gevent
        self._channel = grpc.insecure_channel(self.grpc_target)
        self._predict = self._channel.unary_unary(tfs.GRPC_METHOD)  # bytes in, bytes out

    def on_start(self) -> None:
        self._bodies = self._cycle()

    def on_stop(self) -> None:
        self._channel.close()

    @task
    def predict(self) -> None:
        import grpc

        body = next(self._bodies)
        start_time = time.time()
        start = time.perf_counter()
        exception: Exception | None = None
        size = 0
        status = 200
        try:
            answer = self._predict(body, timeout=self.timeout_s)
            size = len(answer)
            tfs.grpc_probabilities(answer)
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
            context={},
            start_time=start_time,
            url=self.grpc_target,
        )


class _GrpcStatus:
    """Carries an HTTP-like status for the recorder (200 ok, 503 resource exhausted, 0 error)."""

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
