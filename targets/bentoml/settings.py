"""The BentoML knobs of a target, as its service reads them (``SERVECAP_BENTOML_*``): one model
for the kind (which writes them) and the service (which reads them when it is imported)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

PREDICT_PATH = "/v1/predict"
READY_PATH = "/readyz"


class BentoMLSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SERVECAP_BENTOML_", extra="ignore")

    workers: int = 1
    """Worker processes of the service (``@bentoml.service(workers=...)``)."""
    max_batch_size: int = 1
    """Adaptive batching: the most rows one model call takes; 1 = the API is not batchable."""
    max_latency_ms: int = 60_000
    """Adaptive batching: a request that waited this long while the model was busy is shed."""
    timeout_s: float = 30.0
