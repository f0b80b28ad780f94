"""Deployable artefacts for a sized target: Kubernetes manifests and a compose override.

``servecap plan --kubernetes DIR --compose FILE`` turns a plan (replicas, and per replica the
CPU and memory measured at capacity) into what an SRE would otherwise type by hand. Facts
come from where they are defined: images, commands and container conventions from
docker-compose.yml (:mod:`targets.docker.compose`, as the Docker launcher reads them), ports,
readiness and how the kind is deployed (its tiers, :meth:`targets.kind.Kind.tiers`) from the
target's kind.

Kubernetes, per tier of the target (most kinds have one; the job queue three):

* **Deployment** (a **StatefulSet** for a tier with data of its own: the job queue's Redis,
  whose append-only file gets a volume claim): one pod holds every service of the tier
  (nginx, Django, the model server...), so they reach each other on the pod's loopback
  exactly as on the host network; other tiers are reached through their Services. Replicas:
  the plan's for a tier that one measured replica held once; ``ceil(peak / (capacity / k x
  (1 - headroom)))`` for a tier a measured replica held k of (the job queue's workers); one
  for a tier holding state (never scaled). The arithmetic: :func:`deployment_notes`.
* **Requests and limits on every container** (the HPA's CPU utilisation is undefined for a
  pod with a container without requests): the run measured a replica as a whole (all its
  processes), not each container, so each container requests its share, ``measured /
  containers of a measured replica``; the requests of a replica's containers add up to what
  it used at its capacity under the SLO, so utilisation means what the plan means. Limits:
  each container may use what the whole replica may, ``measured / (1 - headroom)`` (memory:
  from the highest RSS sample when higher), so a wrong guess of the split never throttles a
  container below what its replica was seen to need. Readiness probe from the kind. The
  model comes in the image (``servecap images build --model``, pushed to your registry).
* **Secret** ``<target>-secrets`` (its own file, mode 0600: keep it out of version control,
  or create the Secret from your secret store): the target's ``env`` and the per-launch
  secrets the kind makes (the job queue's Redis password, made afresh here), given to every
  container with ``envFrom``; never written in a manifest or in the encoded config.
* **Service** (ClusterIP) on each tier's ports; a **NetworkPolicy** lets only the target's
  own pods reach a tier that holds state.
* **HorizontalPodAutoscaler** on CPU for each scaled tier: target utilisation 100 x (1 -
  headroom) % of the request, i.e. scale out when a replica reaches the load the plan gives
  it; min 1 (2 when the plan has 2 or more), max the planned replicas.
* **PodDisruptionBudget** for each scaled tier: at most one replica down at a time.

Compose: an override of docker-compose.yml with ``scale`` (replicas), ``cpus`` and
``mem_limit`` of the model-serving service: ``docker compose -f docker-compose.yml -f FILE
--profile <kind> up``, or ``servecap run --compose-override FILE --launcher docker``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from targets.config import ModelConfig, TargetConfig
from targets.docker import compose
from targets.docker.images import IMAGE_REPO
from targets.kind import Kind, Tier, deployed_name
from targets.launchers.docker.environment import (
    ContainerOptions,
    cfs_quota_us,
    compose_env,
    container_env,
)
from targets.launchers.docker.environment import inside as container_view
from targets.registry import get_kind

PART_OF = "servecap"
TMP_SIZE = "2Gi"
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
"""What Kubernetes takes as a Secret's key (and an env var name from envFrom)."""


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
    return f"{max(10, math.ceil(cores * 1000 / 10 - 1e-9) * 10)}m"


def mebibytes(mb: float) -> str:
    return f"{max(16, math.ceil(mb - 1e-9))}Mi"  # float noise never adds a MiB


def containers_per_replica(tiers: tuple[Tier, ...]) -> int:
    """Containers one measured replica of the target ran (a stateful tier counts once)."""
    return sum(max(1, t.per_replica) * len(t.services) for t in tiers)


def _resources(sizing: Sizing, containers: int) -> dict[str, Any]:
    """One container's requests (its share of the measured replica) and limits (the whole
    replica's)."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    stretch = 1.0 / (1.0 - sizing.headroom)
    if sizing.cpu_cores is not None and sizing.cpu_cores > 0:
        requests["cpu"] = millicores(sizing.cpu_cores / containers)
        limits["cpu"] = millicores(sizing.cpu_cores * stretch)
    if sizing.mem_mb is not None and sizing.mem_mb > 0:
        requests["memory"] = mebibytes(sizing.mem_mb / containers)
    if sizing.mem_limit_mb is not None:
        limits["memory"] = mebibytes(sizing.mem_limit_mb)
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def tier_replicas(tier: Tier, sizing: Sizing) -> int:
    """The plan's replicas (a tier held once per measured replica); one (state); else from the
    capacity per instance: ``ceil(peak / (capacity / k x (1 - headroom)))``."""
    if tier.per_replica == 0:
        return 1
    if tier.per_replica == 1:
        return sizing.replicas
    usable = sizing.capacity_rps / tier.per_replica * (1.0 - sizing.headroom)
    return max(1, math.ceil(sizing.peak_rps / usable - 1e-9))


def deployment_notes(name: str, config: TargetConfig, sizing: Sizing) -> list[str]:
    """How the manifests size each tier, with the arithmetic, for the plan's text."""
    tiers = _deployable(name, config).tiers(config)
    n = containers_per_replica(tiers)
    keep = f"{1 - sizing.headroom:.0%}"
    lines = []
    for tier in tiers:
        what = f"{deployed_name(name, tier.name)} ({', '.join(tier.services)})"
        replicas = tier_replicas(tier, sizing)
        if tier.per_replica == 0:
            lines.append(f"{what}: 1 pod, holds the target's state, not scaled.")
        elif tier.per_replica == 1:
            lines.append(f"{what}: {replicas} pod(s), the plan's replicas: a measured replica "
                         f"held one and served {sizing.capacity_rps:,.1f}/s.")  # fmt: skip
        else:
            lines.append(
                f"{what}: a measured replica held {tier.per_replica}, so one serves "
                f"{sizing.capacity_rps:,.1f} / {tier.per_replica} = "
                f"{sizing.capacity_rps / tier.per_replica:,.1f}/s; ceil({sizing.peak_rps:,.1f} / "
                f"({sizing.capacity_rps / tier.per_replica:,.1f} x {keep})) = {replicas} pod(s)."
            )
    if sizing.cpu_cores or sizing.mem_mb:
        cpu, mem = sizing.cpu_cores or 0.0, sizing.mem_mb or 0.0
        lines.append(
            f"Requests per container: a measured replica used {cpu:.2f} cores and {mem:,.0f} MB "
            f"over its {n} container(s) (measured together, not one by one), so each requests "
            f"{cpu / n:.2f} cores and {mem / n:,.0f} MB; limits: each up to the whole "
            f"replica's {cpu / (1 - sizing.headroom):.2f} cores and "
            f"{sizing.mem_limit_mb or 0:,.0f} MB."
        )
    return lines


def _deployable(name: str, config: TargetConfig) -> Kind:
    """The target's kind; DeployError when servecap cannot deploy it."""
    kind = get_kind(config.kind)
    if kind.containers is None or kind.launcher is not None:
        why = "servecap does not start it" if kind.launcher else "it has no container services"
        raise DeployError(f"target '{name}' ({config.kind}): nothing to deploy, {why}")
    return kind


def _services(name: str, config: TargetConfig, image_repo: str) -> dict[str, dict[str, Any]]:
    """The kind's services as docker-compose.yml defines them, with model-in-image tags."""
    kind = _deployable(name, config)
    assert kind.containers is not None
    model_in_image = isinstance(config, ModelConfig)
    options = ContainerOptions(image_tag=config.image_tag or "latest", image_repo=image_repo,
                               model_in_image=model_in_image)  # fmt: skip
    env = compose_env(name, config, options, "planned", Path("/dev/null"))
    specs = compose.services(env, config.compose_service or config.kind)
    overrides = kind.compose_overrides(config)
    return {s: {**specs[s], **overrides.get(s, {})} for s in kind.containers.services}


def _probe(tier: Tier) -> dict[str, Any] | None:
    if tier.probe is None:
        return None
    if tier.probe.url is not None:
        url = urlsplit(tier.probe.url)
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        action: dict[str, Any] = {"httpGet": {"path": path, "port": url.port}}
    elif tier.probe.tcp_port is not None:
        action = {"tcpSocket": {"port": tier.probe.tcp_port}}
    else:
        return None
    return {**action, "periodSeconds": 5, "timeoutSeconds": 4, "failureThreshold": 3}


@dataclass(frozen=True)
class _Pod:
    """What every container of a target shares."""

    name: str
    env: dict[str, str]
    secret: str | None
    sizing: Sizing
    containers: int


def _container(service: str, spec: dict[str, Any], tier: Tier, first: bool,
               pod: _Pod) -> dict[str, Any]:  # fmt: skip
    container: dict[str, Any] = {"name": service, "image": spec["image"]}
    if spec.get("entrypoint"):
        container["command"] = list(spec["entrypoint"])
    if spec.get("command"):
        container["args"] = [str(a) for a in spec["command"]]
    if pod.env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(pod.env.items())]
    if pod.secret:
        container["envFrom"] = [{"secretRef": {"name": pod.secret}}]
    security: dict[str, Any] = {"allowPrivilegeEscalation": False}
    user = str(spec.get("user") or "")
    if user:
        uid, _, gid = user.partition(":")
        security |= {"runAsNonRoot": True, "runAsUser": int(uid), "runAsGroup": int(gid or uid)}
    caps = {k: [str(c) for c in spec[f"cap_{k}"]] for k in ("drop", "add") if spec.get(f"cap_{k}")}
    if caps:  # as the compose service has them (kind container: all dropped)
        security["capabilities"] = caps
    mounts = []
    if spec.get("read_only"):
        security["readOnlyRootFilesystem"] = True
        mounts.append({"name": "tmp", "mountPath": "/tmp"})
    if tier.volume is not None:
        mounts.append({"name": "data", "mountPath": tier.volume[0]})
    if mounts:
        container["volumeMounts"] = mounts
    container["securityContext"] = security
    if first and tier.ports:
        container["ports"] = [{"name": n, "containerPort": p} for n, p in tier.ports]
    probe = _probe(tier) if first else None
    if probe is not None:
        container["readinessProbe"] = probe
    resources = _resources(pod.sizing, pod.containers)
    if resources:
        container["resources"] = resources
    return container


def _workload(tier: Tier, specs: dict[str, dict[str, Any]], pod: _Pod,
              labels: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    """The tier's Deployment, or StatefulSet when it keeps data of its own."""
    name = labels["app.kubernetes.io/name"]
    spec: dict[str, Any] = {
        "containers": [_container(s, specs[s], tier, i == 0, pod)
                       for i, s in enumerate(tier.services)],
        "automountServiceAccountToken": False,
    }  # fmt: skip
    volumes: list[dict[str, Any]] = []
    if any(s.get("read_only") for s in specs.values()):
        volumes.append({"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": TMP_SIZE}})
    claim_mib = tier.volume[1] if tier.volume is not None else None
    if tier.volume is not None and claim_mib is None:
        volumes.append({"name": "data", "emptyDir": {}})
    if volumes:
        spec["volumes"] = volumes
    groups = {str(s["user"]).split(":")[-1] for s in specs.values() if s.get("user")}
    if tier.volume is not None and len(groups) == 1:
        spec["securityContext"] = {"fsGroup": int(groups.pop())}  # the volume is the user's
    s = pod.sizing
    measured = (f"{s.cpu_cores or 0:.3f} cores, {s.mem_mb or 0:.0f} MB per replica of the target "
                f"at {s.capacity_rps:.1f}/s (its capacity under the SLO), for its "
                f"{pod.containers} container(s) together")  # fmt: skip
    selector = {"app.kubernetes.io/name": name}
    workload: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "Deployment" if claim_mib is None else "StatefulSet",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {"servecap.io/measured": measured,
                                     "servecap.io/planned-peak-rps": f"{s.peak_rps:.1f}"}},
        "spec": {"replicas": tier_replicas(tier, s), "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": labels}, "spec": spec}},
    }  # fmt: skip
    if claim_mib is not None:
        workload["spec"]["serviceName"] = name
        workload["spec"]["volumeClaimTemplates"] = [{
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": f"{claim_mib}Mi"}}},
        }]  # fmt: skip
    return workload


def _tier_docs(tier: Tier, services: dict[str, dict[str, Any]], pod: _Pod) -> list[dict[str, Any]]:
    """The workload of one tier, its Service, autoscaler, disruption budget, network policy."""
    name = deployed_name(pod.name, tier.name)
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": pod.name,
              "app.kubernetes.io/part-of": PART_OF,
              "app.kubernetes.io/component": tier.name or "server"}  # fmt: skip
    selector = {"app.kubernetes.io/name": name}
    meta = {"name": name, "labels": labels}
    docs = [_workload(tier, {s: services[s] for s in tier.services}, pod, labels)]
    if tier.ports:
        ports = [{"name": n, "port": p, "targetPort": p} for n, p in tier.ports]
        service = {"type": "ClusterIP", "selector": selector, "ports": ports}
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": service})
    if tier.per_replica == 0:  # state: only the target's own pods may reach it
        docs.append({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta,
            "spec": {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {
                         "app.kubernetes.io/instance": pod.name}}}],
                         "ports": [{"port": p} for _, p in tier.ports]}]},
        })  # fmt: skip
        return docs
    replicas = tier_replicas(tier, pod.sizing)
    target_pct = max(1, round(100 * (1 - pod.sizing.headroom)))
    docs.append({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": min(2, replicas), "maxReplicas": replicas,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization",
                                          "averageUtilization": target_pct}}}],
        },
    })  # fmt: skip
    docs.append({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta,
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
    })  # fmt: skip
    return docs


def secret_name(name: str) -> str:
    return f"{name}-secrets"


def kubernetes_secret(name: str, config: TargetConfig) -> dict[str, Any] | None:
    """The Secret every container of the target reads: its ``env`` and the kind's per-launch
    secrets (made afresh); None when there is nothing secret."""
    values = {**get_kind(config.kind).launch_env(config), **config.env}
    bad = sorted(k for k in values if not SECRET_KEY.match(k))
    if bad:
        raise DeployError(f"target '{name}': env keys {', '.join(bad)} cannot be Secret keys "
                          "(letters, digits, '-', '_', '.'); rename them")  # fmt: skip
    if not values:
        return None
    labels = {"app.kubernetes.io/instance": name, "app.kubernetes.io/part-of": PART_OF}
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": secret_name(name), "labels": labels},
            "type": "Opaque", "stringData": dict(sorted(values.items()))}  # fmt: skip


def kubernetes_manifests(
    name: str, config: TargetConfig, sizing: Sizing, image_repo: str = IMAGE_REPO
) -> list[dict[str, Any]]:
    """The workloads, Services, autoscalers, disruption budgets and network policies of one
    target's tiers (its Secret: :func:`kubernetes_secret`)."""
    kind = get_kind(config.kind)
    services = _services(name, config, image_repo)
    # the pod's interfaces (its Services reach it there); the other tiers at their Services
    config = kind.deployed(name, config.model_copy(update={"host": "0.0.0.0"}))
    public = config.model_copy(update={"env": {}})  # the env travels in the Secret only
    env = container_env(name, container_view(public)) if kind.images else {}
    secret = kubernetes_secret(name, config)
    tiers = kind.tiers(config)
    pod = _Pod(name, env, secret_name(name) if secret else None, sizing,
               containers_per_replica(tiers))  # fmt: skip
    return [doc for tier in tiers for doc in _tier_docs(tier, services, pod)]


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
        cpus = sizing.cpu_cores / (1 - sizing.headroom)
        if config.cpu_period_ms:  # measured over its own CFS period: deployed over the same
            period_us = round(config.cpu_period_ms * 1000)
            service.update({"cpus": "0", "cpu_period": f"{period_us}us",
                            "cpu_quota": f"{cfs_quota_us(cpus, period_us)}us"})  # fmt: skip
        else:
            service["cpus"] = f"{cpus:.2f}"
    if sizing.mem_limit_mb:
        service["mem_limit"] = f"{math.ceil(sizing.mem_limit_mb - 1e-9)}m"
    return {"services": {kind.containers.primary: service}}
