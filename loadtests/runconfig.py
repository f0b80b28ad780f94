"""What one Locust process needs to know, handed over as a JSON file.

The orchestrator writes it (``load_config.json`` in the run folder) and points
``SERVECAP_LOAD_CONFIG`` at it; the locustfile reads it in every Locust process.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from analysis.defaults import DEFAULT_MAX_ERROR_RATE
from loadtests.spec import LoadPlan
from targets.protocols import Endpoint, Protocol, get_protocol

ENV_VAR = "SERVECAP_LOAD_CONFIG"


class LoadRunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str
    endpoint: Endpoint
    """Where the target listens and which protocol it speaks (from its kind)."""
    slo_p99_ms: float | None = None
    """find-max searches against this."""
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    plan: LoadPlan
    data_dir: str | None
    out_dir: str
    seed: int = 0

    @property
    def base_url(self) -> str:
        return self.endpoint.base_url

    @property
    def protocol(self) -> Protocol:
        return get_protocol(self.endpoint.protocol)

    @property
    def predict_path(self) -> str:
        if self.protocol.transport == "grpc":
            return ""
        return self.protocol.predict_path(self.endpoint)

    @property
    def primary_request(self) -> str | None:
        """The request type the headline figures describe (None: all requests are one type)."""
        return self.protocol.primary_request

    def write(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2), encoding="utf-8")


def load_run_config(path: str | None = None) -> LoadRunConfig:
    path = path or os.environ.get(ENV_VAR)
    if not path:
        raise RuntimeError(
            f"{ENV_VAR} is not set: this locustfile is started by `servecap run`, which writes "
            "the load configuration; run the scenario through servecap"
        )
    return LoadRunConfig.model_validate_json(Path(path).read_text(encoding="utf-8"))
