"""The Ray Serve knobs of a target, as its deploy process reads them (``SERVECAP_RAY_*``): one
model for the kind (which writes them) and the deploy process (which reads them)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

APP_NAME = "servecap"
"""The Serve application's name (one per target)."""


class RayServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SERVECAP_RAY_", extra="ignore")

    address: str = "auto"
    """The Ray cluster's GCS address (host:port)."""
    host: str = "127.0.0.1"
    port: int = 8000
    """Serve's HTTP proxy."""
    num_replicas: int = 1
    replica_cpus: float = 1.0
    max_ongoing_requests: int = 64
    max_batch_size: int = 1
    """@serve.batch: the most requests one model call takes; 1 = no batching."""
    batch_wait_timeout_s: float = 0.01
    timeout_s: float = 30.0
    """Serve's HTTP request timeout."""
    shutdown_serve: bool = True
    """Shut Serve down after the run (a cluster servecap started); else only delete the app."""


LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Set to 0, Ray takes the node's address to be 127.0.0.1 (as it does on a laptop): its GCS,
raylet and workers listen and connect on loopback only. Without it ``ray start`` replaces a
``--node-ip-address`` of 127.0.0.1 by the host's network address and binds every interface."""
