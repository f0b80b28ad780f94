"""Locust users that send CIFAR-10 test images to a target's predict endpoint."""

from __future__ import annotations

import itertools
import random
from typing import ClassVar

from locust import FastHttpUser, constant, task



class PredictUser(FastHttpUser):
    """Closed loop: send a request, wait for the answer, pause ``think_time_s``, repeat."""

    abstract = True  # made concrete by the locustfile once configured
    bodies: ClassVar[list[bytes]] = []
    content_type: ClassVar[str] = "application/json"
    predict_path: ClassVar[str] = "/v1/predict"
    wait_time = constant(0)

    def on_start(self) -> None:
        offset = random.randrange(len(self.bodies))
        self._bodies = itertools.islice(itertools.cycle(self.bodies), offset, None)

    @task
    def predict(self) -> None:
        body = next(self._bodies)
        with self.client.post(
            self.predict_path,
            data=body,
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
