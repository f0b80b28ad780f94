"""Deployable artefacts for a sized target: Kubernetes manifests and a compose override.

``servecap plan --kubernetes DIR --compose FILE`` turns a plan (replicas, and per replica the
CPU and memory measured at capacity) into what an SRE would otherwise type by hand. Facts
come from where they are defined: images, commands and container conventions from
docker-compose.yml (:mod:`targets.docker.compose`, as the Docker launcher reads them), ports
and readiness from the target's kind.

Kubernetes, per target (``<target>.yaml``, one document each):

* **Deployment**: ``replicas`` from the plan; one pod holds every service of the kind (nginx,
  Django, the model server...), so they reach each other on the pod's loopback exactly as on
  the host network; the model server listens on all of the pod's interfaces (the Service
  reaches it there). Requests: the CPU and memory one replica used at its capacity under the
  SLO (measured over all its processes: set on the model-serving container); limits: the
  requests / (1 - headroom), for memory from the highest RSS sample when it is higher.
  Readiness probe on the kind's health path. The model comes in the image (``servecap images
  build --model``, pushed to your registry).
  Per-launch secrets (the job queue's Redis password) come from a Secret you create.
* **Service** (ClusterIP) on the target's port (and gRPC port).
* **HorizontalPodAutoscaler** on CPU: target utilisation 100 x (1 - headroom) % of the
  request, i.e. scale out when a replica reaches the load the plan gives it; min 1 (2 when
  the plan has 2 or more), max the planned replicas.
* **PodDisruptionBudget**: at most one replica down at a time.

Compose: an override of docker-compose.yml with ``scale`` (replicas), ``cpus`` and
``mem_limit`` of the model-serving service: ``docker compose -f docker-compose.yml -f FILE
--profile <kind> up``, or ``servecap run --compose-override FILE --launcher docker``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from targets.config import ModelConfig, TargetConfig
from targets.docker import compose
from targets.docker.images import IMAGE_REPO
from targets.launchers.docker.environment import ContainerOptions, compose_env, container_env
from targets.launchers.docker.environment import inside as container_view
from targets.registry import get_kind

PART_OF = "servecap"
TMP_SIZE = "2Gi"


class DeployError(ValueError):
    """A target cannot be turned into manifests (the message says why)."""


@dataclass(frozen=True)
class Sizing:
    """What a plan says about one target."""

    replicas: int
    cpu_cores: float | None
    """Per replica, used at capacity (None: not measured)."""
    mem_mb: float | None
    headroom: float
    capacity_rps: float
    peak_rps: float
    mem_peak_mb: float | None = None
    """The highest RSS sample of a replica: the memory limit covers it."""

    @property
    def mem_limit_mb(self) -> float | None:
        """max(use at capacity, peak sample) / (1 - headroom)."""
        known = [m for m in (self.mem_mb, self.mem_peak_mb) if m]
        return max(known) / (1.0 - self.headroom) if known else None


def millicores(cores: float) -> str:
    return f"{max(10, math.ceil(cores * 1000 / 10) * 10)}m"


def mebibytes(mb: float) -> str:
    return f"{max(16, math.ceil(mb - 1e-9))}Mi"  # float noise never adds a MiB


def _resources(sizing: Sizing) -> dict[str, Any]:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    stretch = 1.0 / (1.0 - sizing.headroom)
    if sizing.cpu_cores is not None and sizing.cpu_cores > 0:
        requests["cpu"] = millicores(sizing.cpu_cores)
        limits["cpu"] = millicores(sizing.cpu_cores * stretch)
    if sizing.mem_mb is not None and sizing.mem_mb > 0:
        requests["memory"] = mebibytes(sizing.mem_mb)
    if sizing.mem_limit_mb is not None:
        limits["memory"] = mebibytes(sizing.mem_limit_mb)
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def _services(name: str, config: TargetConfig, image_repo: str) -> dict[str, dict[str, Any]]:
    """The kind's services as docker-compose.yml defines them, with model-in-image tags."""
    kind = get_kind(config.kind)
    if kind.containers is None or kind.launcher is not None:
        why = "servecap does not start it" if kind.launcher else "it has no container services"
        raise DeployError(f"target '{name}' ({config.kind}): nothing to deploy, {why}")
    model_in_image = isinstance(config, ModelConfig)
    options = ContainerOptions(image_tag=config.image_tag or "latest", image_repo=image_repo,
                               model_in_image=model_in_image)  # fmt: skip
    env = compose_env(name, config, options, "planned", Path("/dev/null"))
    specs = compose.services(env, config.compose_service or config.kind)
    overrides = kind.compose_overrides(config)
    return {s: {**specs[s], **overrides.get(s, {})} for s in kind.containers.services}


def _probe(config: TargetConfig) -> dict[str, Any]:
    from urllib.parse import urlsplit

    probes = get_kind(config.kind).readiness(config)
    first = probes[0] if probes else None
    if first is not None and first.url is not None:
        path = urlsplit(first.url).path or "/"
        action: dict[str, Any] = {"httpGet": {"path": path, "port": config.port}}
    else:
        action = {"tcpSocket": {"port": config.port}}
    return {**action, "periodSeconds": 5, "timeoutSeconds": 4, "failureThreshold": 3}


def _container(
    service: str, spec: dict[str, Any], env: dict[str, str], secrets: list[str], name: str,
    primary: bool, sizing: Sizing, config: TargetConfig,
) -> dict[str, Any]:  # fmt: skip
    container: dict[str, Any] = {"name": service, "image": spec["image"]}
    if spec.get("entrypoint"):
        container["command"] = list(spec["entrypoint"])
    if spec.get("command"):
        container["args"] = [str(a) for a in spec["command"]]
    variables: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    variables += [{"name": key, "valueFrom": {"secretKeyRef": {"name": f"{name}-secrets",
                                                                "key": key}}}
                  for key in secrets]  # fmt: skip
    if variables:
        container["env"] = variables
    security: dict[str, Any] = {"allowPrivilegeEscalation": False}
    user = str(spec.get("user") or "")
    if user:
        uid, _, gid = user.partition(":")
        security |= {"runAsNonRoot": True, "runAsUser": int(uid), "runAsGroup": int(gid or uid)}
    if spec.get("read_only"):
        security["readOnlyRootFilesystem"] = True
        container["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
    container["securityContext"] = security
    if primary:
        ports = [{"name": "http", "containerPort": config.port}]
        ports += [{"name": "grpc", "containerPort": port}
                  for field, (_, port) in get_kind(config.kind).ports(config).items()
                  if "grpc" in field]  # fmt: skip
        container["ports"] = ports
        container["readinessProbe"] = _probe(config)
        resources = _resources(sizing)
        if resources:
            container["resources"] = resources
    return container


def kubernetes_manifests(
    name: str, config: TargetConfig, sizing: Sizing, image_repo: str = IMAGE_REPO
) -> list[dict[str, Any]]:
    """Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget of one target."""
    config = config.model_copy(update={"host": "0.0.0.0"})  # the pod's interfaces: the Service
    kind = get_kind(config.kind)
    services = _services(name, config, image_repo)
    assert kind.containers is not None
    primary = kind.containers.primary
    env = container_env(name, container_view(config)) if kind.images else dict(config.env)
    secrets = sorted(kind.launch_env(config))
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": PART_OF,
              "app.kubernetes.io/component": config.kind}  # fmt: skip
    selector = {"app.kubernetes.io/name": name}
    needs_tmp = any(spec.get("read_only") for spec in services.values())
    measured = (f"{sizing.cpu_cores or 0:.3f} cores, {sizing.mem_mb or 0:.0f} MB per replica at "
                f"{sizing.capacity_rps:.1f} requests/s (its capacity under the SLO), for all of "
                "its containers")  # fmt: skip
    pod: dict[str, Any] = {
        "containers": [
            _container(s, spec, env, secrets, name, s == primary, sizing, config)
            for s, spec in services.items()
        ],
        "automountServiceAccountToken": False,
    }
    if needs_tmp:
        pod["volumes"] = [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": TMP_SIZE}}]
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {"servecap.io/measured": measured,
                                     "servecap.io/planned-peak-rps": f"{sizing.peak_rps:.1f}"}},
        "spec": {"replicas": sizing.replicas, "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": labels}, "spec": pod}},
    }  # fmt: skip
    ports = [{"name": p["name"], "port": p["containerPort"], "targetPort": p["containerPort"]}
             for c in pod["containers"] for p in c.get("ports", [])]  # fmt: skip
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels},
        "spec": {"type": "ClusterIP", "selector": selector, "ports": ports},
    }  # fmt: skip
    target_pct = max(1, round(100 * (1 - sizing.headroom)))
    hpa = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": min(2, sizing.replicas), "maxReplicas": sizing.replicas,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization",
                                          "averageUtilization": target_pct}}}],
        },
    }  # fmt: skip
    pdb = {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "labels": labels},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
    }  # fmt: skip
    return [deployment, service, hpa, pdb]


def compose_override(name: str, config: TargetConfig, sizing: Sizing) -> dict[str, Any]:
    """An override of docker-compose.yml: the model-serving service's replicas and limits."""
    kind = get_kind(config.kind)
    _services(name, config, IMAGE_REPO)  # DeployError for what compose cannot start
    assert kind.containers is not None
    if sizing.replicas > 1 and not kind.containers.scalable:
        raise DeployError(
            f"target '{name}' ({config.kind}) cannot run replicas on one host's port; deploy "
            "its replicas on separate hosts (the Kubernetes manifests) instead"
        )
    service: dict[str, Any] = {"scale": sizing.replicas}
    if sizing.cpu_cores:
        service["cpus"] = f"{sizing.cpu_cores / (1 - sizing.headroom):.2f}"
    if sizing.mem_limit_mb:
        service["mem_limit"] = f"{math.ceil(sizing.mem_limit_mb - 1e-9)}m"
    return {"services": {kind.containers.primary: service}}
