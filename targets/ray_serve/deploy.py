"""Deploys the ``ray-serve`` target's application on a Ray cluster and holds it until stopped.

``python -m targets.ray_serve.deploy`` (knobs from ``SERVECAP_RAY_*``, the model from
``SERVECAP_*``) connects to the cluster at ``address`` (the local one the kind started, or an
existing one), starts Serve's HTTP proxy on host:port, runs the application (replicas of
:class:`targets.ray_serve.app.Classifier`) and waits. On SIGTERM or SIGINT it deletes the
application, shuts Serve down when the cluster is servecap's own, and disconnects; the process
launcher then stops the local cluster (``ray start --block``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from typing import Any, cast

import ray
from ray import serve

from targets.common.settings import ServerSettings
from targets.ray_serve.settings import APP_NAME, LOOPBACK_ENV, RayServeSettings

WORKER_ENV = ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL", "PYTHONUNBUFFERED", LOOPBACK_ENV)
"""Variables the replicas get from this process (a cluster's workers do not inherit ours)."""


def main() -> None:
    knobs = RayServeSettings()
    model = ServerSettings().model_dump(mode="json")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    env = {name: os.environ[name] for name in WORKER_ENV if name in os.environ}
    ray.init(address=knobs.address, runtime_env={"env_vars": env}, logging_level=logging.WARNING,
             log_to_driver=False)  # fmt: skip
    try:
        serve.start(http_options={"host": knobs.host, "port": knobs.port,
                                  "request_timeout_s": knobs.timeout_s})  # fmt: skip
        from targets.ray_serve.app import Classifier

        deployment = cast(Any, Classifier).options(
            num_replicas=knobs.num_replicas, max_ongoing_requests=knobs.max_ongoing_requests,
            ray_actor_options={"num_cpus": knobs.replica_cpus},
        )  # fmt: skip
        app = deployment.bind(model, knobs.max_batch_size, knobs.batch_wait_timeout_s)
        if not stop.is_set():
            serve.run(app, name=APP_NAME, route_prefix="/")
            print(f"ray-serve: {APP_NAME} running on {knobs.host}:{knobs.port}", flush=True)
        stop.wait()
    finally:
        with contextlib.suppress(Exception):  # best effort: the cluster may be gone already
            serve.delete(APP_NAME)
            if knobs.shutdown_serve:
                serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
