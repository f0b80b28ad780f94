"""The ``ray-serve`` kind: Ray Serve (pinned in pyproject.toml) serving the SavedModel.

::

    ray start --head --block (a local cluster; or ray_address: an existing one)
    python -m targets.ray_serve.deploy -> Serve HTTP proxy (config.host:config.port)
      -> Classifier replicas x num_replicas (@serve.batch: max_batch_size, batch_wait_timeout_s)

Clients speak servecap's predict API at ``/v1/predict``; ready when ``/healthz`` answers
through the proxy (a replica has loaded the model). Metrics: Ray's Prometheus export
(``metrics_port``), servecap's counters with a ``ray_`` prefix.

**The local cluster.** Without ``ray_address`` the kind starts one (``ray start --head``)
with its GCS on ``ray_port``, its metrics on ``metrics_port`` and its client server on
``client_port`` (port+1..3 by default), no dashboard, usage stats off, files under a private
folder; it stops with the target (the process launcher's group stop, ``ray start --block``
taking its processes down). Ray 2.60 binds its own gRPC servers (GCS, raylet, workers) to every
interface whatever ``--node-ip-address`` says, and turns 127.0.0.1 into the host's network
address; with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (:data:`LOOPBACK_ENV`) it keeps the node on
127.0.0.1, and every GCS, raylet and worker socket listens and connects on loopback only
(checked with ``ss``). The cluster also runs with Ray's token authentication on, a fresh token
per launch (:meth:`RayServeKind.launch_env`): no Ray control port answers a caller without it.
Serve's HTTP proxy binds the target's host (loopback).

**An existing cluster** (``ray_address``, multi-node): the application is deployed there
(replicas on any node; the repository and model at the same paths on each node, and the
cluster's token in the target's ``env`` when it requires one), its proxy must listen on this
host's ``port``, and after the run servecap deletes its application (and Serve, when
``shutdown_serve``) but leaves the cluster running.
"""

from __future__ import annotations

import math
import secrets
from typing import ClassVar, Literal

from pydantic import Field

from targets.common.framework import FrameworkConfig, framework_server_env, missing_module
from targets.common.launch import PYTHON
from targets.common.metrics import source as metrics_source
from targets.common.tmp import private_dir
from targets.config import TargetConfig
from targets.kind import MetricsSource, ModelKind
from targets.launch_types import HOST, Placement, ProcessSpec
from targets.protocols.base import Endpoint
from targets.protocols.servecap import HEALTH_PATH
from targets.ray_serve.settings import LOOPBACK_ENV, RayServeSettings

METRICS_PREFIX = "ray_"
AUTH_ENV = {"mode": "RAY_AUTH_MODE", "token": "RAY_AUTH_TOKEN"}


class RayServeConfig(FrameworkConfig):
    kind: Literal["ray-serve"] = "ray-serve"
    num_replicas: int = Field(default=1, ge=1, le=64, description="Serve replicas (actors)")
    replica_cpus: float = Field(
        default=1.0, ge=0, le=64, description="CPUs Ray reserves for each replica"
    )
    max_ongoing_requests: int = Field(
        default=64, ge=1, le=100_000, description="requests a replica takes at once"
    )
    batch_wait_timeout_s: float = Field(
        default=0.01, ge=0, le=10, description="@serve.batch: the longest a batch waits to fill"
    )
    ray_address: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_.\-\[\]:]+:[0-9]+$",
        description="an existing Ray cluster's GCS (host:port): deploy there instead of "
        "starting a local cluster",
    )  # fmt: skip
    ray_port: int | None = Field(
        default=None, ge=1024, le=65535, description="local cluster's GCS port; default port+1"
    )
    metrics_port: int | None = Field(
        default=None, ge=1024, le=65535,
        description="Ray's Prometheus export port (local cluster: default port+2; with "
        "ray_address: the cluster's, or no metrics)",
    )  # fmt: skip
    client_port: int | None = Field(
        default=None, ge=1024, le=65535, description="local cluster's client server; port+3"
    )
    shutdown_serve: bool = Field(
        default=True, description="with ray_address: shut Serve down after the run"
    )

    @property
    def gcs_port(self) -> int:
        return self.ray_port or self.port + 1

    @property
    def ray_metrics_port(self) -> int | None:
        if self.ray_address is not None:
            return self.metrics_port
        return self.metrics_port or self.port + 2

    @property
    def ray_client_port(self) -> int:
        return self.client_port or self.port + 3

    @property
    def cluster_cpus(self) -> int:
        """CPUs the local cluster offers: every replica's, at least one."""
        return max(1, math.ceil(self.num_replicas * self.replica_cpus))


class RayServeKind(ModelKind):
    name = "ray-serve"
    config_model: ClassVar[type[TargetConfig]] = RayServeConfig
    description = "Ray Serve deployment (@serve.batch: max_batch_size, batch_wait_timeout_s)"

    def endpoint(self, config: TargetConfig) -> Endpoint:
        return Endpoint(protocol="servecap", base_url=config.base_url)

    def problems(self, name: str, config: TargetConfig) -> list[str]:
        missing = missing_module(name, "ray.serve", "Ray Serve")
        return [missing] if missing else super().problems(name, config)

    def launch_env(self, config: TargetConfig) -> dict[str, str]:
        assert isinstance(config, RayServeConfig)
        if config.ray_address is not None:
            return {}  # the cluster's own authentication: the target's env carries its token
        return {AUTH_ENV["mode"]: "token", AUTH_ENV["token"]: secrets.token_hex(32)}

    def process_plan(
        self, name: str, config: TargetConfig, placement: Placement = HOST
    ) -> list[ProcessSpec]:
        assert isinstance(config, RayServeConfig)
        local = config.ray_address is None
        knobs = {"address": config.ray_address or f"127.0.0.1:{config.gcs_port}",
                 "host": config.host, "port": config.port, "num_replicas": config.num_replicas,
                 "replica_cpus": config.replica_cpus,
                 "max_ongoing_requests": config.max_ongoing_requests,
                 "max_batch_size": config.max_batch_size,
                 "batch_wait_timeout_s": config.batch_wait_timeout_s,
                 "timeout_s": config.timeout_s,
                 "shutdown_serve": local or config.shutdown_serve}  # fmt: skip
        env = {
            **framework_server_env(config, RayServeSettings, knobs),
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        if local:  # every Ray server and connection on 127.0.0.1 (see the module docstring)
            env[LOOPBACK_ENV] = "0"
        deploy = ProcessSpec(name=name, role="ray-serve", env=env,
                             argv=(PYTHON, "-m", "targets.ray_serve.deploy"),
                             ready_url=f"{config.base_url}{HEALTH_PATH}")  # fmt: skip
        return [self._head(name, config, env), deploy] if local else [deploy]

    @staticmethod
    def _head(name: str, config: RayServeConfig, env: dict[str, str]) -> ProcessSpec:
        """The local cluster: ``ray start --head --block`` (stops its processes when stopped)."""
        folder = private_dir("ray", name)
        argv = (
            PYTHON, "-m", "ray.scripts.scripts", "start", "--head", "--block",
            "--node-ip-address", "127.0.0.1", "--port", str(config.gcs_port),
            "--ray-client-server-port", str(config.ray_client_port),
            "--metrics-export-port", str(config.ray_metrics_port),
            "--include-dashboard", "false", "--dashboard-host", "127.0.0.1",
            "--dashboard-agent-listen-port", "0", "--disable-usage-stats",
            "--num-cpus", str(config.cluster_cpus), "--num-gpus", "0",
            "--temp-dir", str(folder),
        )  # fmt: skip
        # Metrics reach Ray's export every second, not every 10 s (stage windows are seconds).
        head_env = {**env, "RAY_metrics_report_interval_ms": "1000"}
        return ProcessSpec(name=f"{name}-ray", role="ray-head", argv=argv, env=head_env,
                           ready_port=config.gcs_port, fresh_dirs=(folder,))  # fmt: skip

    def ports(self, config: TargetConfig) -> dict[str, tuple[str, int]]:
        assert isinstance(config, RayServeConfig)
        ports = {"port": (config.host, config.port)}
        if config.ray_address is None:
            ports |= {"ray_port": ("127.0.0.1", config.gcs_port),
                      "metrics_port": ("127.0.0.1", config.ray_metrics_port or 0),
                      "client_port": ("127.0.0.1", config.ray_client_port)}  # fmt: skip
        return ports

    def metrics(self, config: TargetConfig) -> MetricsSource | None:
        assert isinstance(config, RayServeConfig)
        if config.ray_metrics_port is None:
            return None
        url = f"http://127.0.0.1:{config.ray_metrics_port}/metrics"
        return metrics_source(url, prefix=METRICS_PREFIX)


KIND = RayServeKind()
