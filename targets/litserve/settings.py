"""The LitServe knobs of a target, as its server reads them (``SERVECAP_LITSERVE_*``): one
model for the kind (which writes them) and the server (which reads them)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

HEALTH_PATH = "/health"
"""LitServe's own readiness path (200 once every inference worker is up)."""


class LitServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SERVECAP_LITSERVE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    """Inference worker processes (LitServe's workers_per_device, on one CPU device)."""
    max_batch_size: int = 1
    batch_timeout_s: float = 0.0
    timeout_s: float = 30.0
