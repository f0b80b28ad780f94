"""The ``bentoml`` kind: BentoML 1.4 (its own environment, targets/bentoml/setup.sh) serving the
SavedModel as a new-style ``@bentoml.service`` (targets/bentoml/service.py).

::

    bentoml serve (config.host:config.port, workers processes)
      -> POST /v1/predict {"images": [n, h, w, c]} -> Classifier.predict
         (adaptive batching when max_batch_size > 1: max_batch_size requests, max_latency_ms)

Clients speak ``json-tensor``; ready when ``/readyz`` answers. Metrics at ``/metrics``:
servecap's counters (images, model calls, requests; model time per request without batching).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from targets.bentoml.settings import PREDICT_PATH, READY_PATH, BentoMLSettings
from targets.common.framework import FrameworkConfig, framework_server_env, require_environment
from targets.common.metrics import source as metrics_source
from targets.common.tmp import private_dir
from targets.config import TargetConfig
from targets.kind import MetricsSource, ModelKind
from targets.launch_types import HOST, Placement, ProcessSpec
from targets.protocols.base import Endpoint
from targets.registry import REPO_ROOT

ENV = "bentoml"
"""Its environment, inside the project venv (targets/bentoml/setup.sh)."""
SERVICE = "targets.bentoml.service:Classifier"


class BentoMLConfig(FrameworkConfig):
    kind: Literal["bentoml"] = "bentoml"
    workers: int = Field(default=1, ge=1, le=64, description="service worker processes")
    max_latency_ms: int = Field(
        default=60_000, ge=1, le=600_000,
        description="adaptive batching: BentoML's latency bound; a request that waited this "
        "long while the model was busy is shed with a 503 (BentoML's default: 60 s)",
    )  # fmt: skip


class BentoMLKind(ModelKind):
    name = "bentoml"
    config_model: ClassVar[type[TargetConfig]] = BentoMLConfig
    description = "BentoML service (adaptive batching: max_batch_size, max_latency_ms; workers)"
    health_path = READY_PATH

    def endpoint(self, config: TargetConfig) -> Endpoint:
        return Endpoint(protocol="json-tensor", base_url=config.base_url,
                        predict_path=PREDICT_PATH)  # fmt: skip

    def process_plan(
        self, name: str, config: TargetConfig, placement: Placement = HOST
    ) -> list[ProcessSpec]:
        assert isinstance(config, BentoMLConfig)
        knobs = {"workers": config.workers, "max_batch_size": config.max_batch_size,
                 "max_latency_ms": config.max_latency_ms,
                 "timeout_s": config.timeout_s}  # fmt: skip
        home = private_dir("bentoml", name)
        env = {**framework_server_env(config, BentoMLSettings, knobs), "BENTOML_HOME": str(home),
               "BENTOML_DO_NOT_TRACK": "true"}  # fmt: skip
        python = require_environment(name, ENV)
        argv = (str(python), "-m", "bentoml", "serve", SERVICE,
                "--host", config.host, "--port", str(config.port),
                "--working-dir", str(REPO_ROOT))  # fmt: skip
        return [ProcessSpec(name=name, role="bentoml", argv=argv, env=env, fresh_dirs=(home,),
                            ready_url=f"{config.base_url}{READY_PATH}")]  # fmt: skip

    def metrics(self, config: TargetConfig) -> MetricsSource:
        assert isinstance(config, BentoMLConfig)
        source = metrics_source(f"{config.base_url}/metrics")
        # No queue time; with batching, no model time per request (a batched call does not
        # say how many requests it holds).
        model_time = source.model_time if config.max_batch_size == 1 else None
        return MetricsSource(url=source.url, requests=source.requests,
                             inferences=source.inferences, executions=source.executions,
                             model_time=model_time, in_flight=None)  # fmt: skip


KIND = BentoMLKind()
