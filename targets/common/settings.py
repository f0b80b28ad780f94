"""Runtime settings every Python target reads from ``SERVECAP_*`` environment variables.

The launchers (process or Docker) set these from the target's entry in scenarios.yaml;
docker-compose.yml passes the same variables. Invalid values stop the server at start
with a message naming the variable.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SERVECAP_", extra="ignore")

    model_path: Path = Field(
        default=Path("artifacts/models/cifar10_cnn"),
        description="SavedModel base (TF Serving layout) or a version directory",
    )
    model_url: str | None = Field(
        default=None,
        description="model-load pattern: fetch a .tar.gz SavedModel from here at start",
    )
    model_cache: Path = Field(
        default=Path("/tmp/servecap-models"), description="where fetched models are unpacked"
    )
    max_works: int = Field(
        default=0, ge=0, description="inferences in flight per worker process; 0 = unlimited"
    )
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_batch: int = Field(default=256, ge=1)
    retry_after_s: int = Field(default=1, ge=0, description="Retry-After sent with 503")
