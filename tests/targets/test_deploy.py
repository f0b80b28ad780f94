"""Tests for targets.deploy: Kubernetes manifests checked against the Kubernetes schemas
(kubernetes-validate, strict), and compose overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from targets.deploy import (
    DeployError,
    Sizing,
    compose_override,
    deployment_notes,
    kubernetes_manifests,
    kubernetes_secret,
)
from targets.docker.entrypoint import CONFIG_ENV, decode_config
from targets.registry import target_config

K8S_VERSION = "1.33.0"
SIZING = Sizing(replicas=3, cpu_cores=0.85, mem_mb=612.4, headroom=0.3, capacity_rps=120.0,
                peak_rps=250.0, mem_peak_mb=700.0)  # fmt: skip
CONFIGS: dict[str, dict[str, Any]] = {
    "fastapi": {"kind": "fastapi", "port": 8101},
    "django-to-fastapi": {"kind": "django-to-fastapi", "port": 8201},
    "jobqueue": {"kind": "jobqueue", "port": 8401},
    "triton": {"kind": "triton", "port": 8501},
    "tfserving": {"kind": "tfserving", "port": 8601, "all_interfaces": True},
    "container": {"kind": "container", "image": "team/classifier:1.4", "port": 8300,
                  "command": ["serve", "--port", "{port}"], "health_path": "/ready",
                  "protocol": "image-upload"},
}  # fmt: skip


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs}


def by_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(doc["spec"]["template"]["spec"]["containers"])


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_manifests_are_valid_kubernetes_objects(kind: str, tiny_model: Path) -> None:
    fields = dict(CONFIGS[kind])
    if kind != "container":
        fields["model_path"] = str(tiny_model)
    config = target_config(**fields, env={"API_KEY": "k"})
    docs = kubernetes_manifests("my-target", config, SIZING)
    if kind != "jobqueue":
        assert [d["kind"] for d in docs] == [
            "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"
        ]  # fmt: skip
    secret = kubernetes_secret("my-target", config)
    assert secret is not None
    for doc in [*docs, secret]:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises when invalid
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):  # the HPA needs every request
            assert all("requests" in c["resources"] for c in containers(doc)), kind


def test_resources_probe_and_autoscaling_follow_the_plan(tiny_model: Path) -> None:
    config = target_config(kind="django-to-fastapi", port=8201, model_path=str(tiny_model))
    docs = by_kind(kubernetes_manifests("api", config, SIZING))
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    assert docs["Deployment"]["spec"]["replicas"] == 3
    names = [c["name"] for c in pod["containers"]]
    assert names == ["fastapi", "django-forward", "nginx"]  # one pod: loopback between them
    # Requests: the replica was measured as a whole (0.85 cores, 612.4 MB), so each of its 3
    # containers requests a third (0.284 cores -> 290m, 204.1 MB -> 205Mi): they add up to the
    # measurement, which the HPA's utilisation needs (undefined if one container has none).
    # Limits: each up to the whole replica's, 0.85 / 0.7 = 1.214 cores, and memory from the
    # peak sample, 700 / 0.7 = 1,000 MB.
    for container in pod["containers"]:
        assert container["resources"] == {
            "requests": {"cpu": "290m", "memory": "205Mi"},
            "limits": {"cpu": "1220m", "memory": "1000Mi"},
        }
    model = pod["containers"][0]
    assert model["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8201}
    assert model["image"].startswith("servecap/fastapi:") and model["image"].endswith("-model")
    assert model["args"] == ["serve", "fastapi"]
    assert model["securityContext"]["runAsNonRoot"] and model["securityContext"][
        "readOnlyRootFilesystem"
    ]  # fmt: skip
    assert docs["Service"]["spec"]["ports"] == [{"name": "http", "port": 8201,
                                                 "targetPort": 8201}]  # fmt: skip
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 3)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert docs["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1


def test_the_job_queue_is_deployed_as_a_job_queue(tiny_model: Path) -> None:
    """Redis once, behind its own Service (a job polled through any web pod is found); web and
    workers scaled apart: workers from the capacity per worker."""
    config = target_config(kind="jobqueue", port=8401, model_path=str(tiny_model),
                           queue_workers=2)  # fmt: skip
    docs = by_name(kubernetes_manifests("jq", config, SIZING))
    redis = docs[("StatefulSet", "jq-redis")]
    assert redis["spec"]["replicas"] == 1 and [c["name"] for c in containers(redis)] == ["redis"]
    claim = redis["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]
    assert claim == {"storage": "512Mi"}  # the append-only file: twice the 256 MB cap
    assert docs[("Service", "jq-redis")]["spec"]["ports"][0]["port"] == 8403
    policy = docs[("NetworkPolicy", "jq-redis")]["spec"]["ingress"][0]
    assert policy["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/instance": "jq"}
    web, worker = docs[("Deployment", "jq")], docs[("Deployment", "jq-worker")]
    assert [c["name"] for c in containers(web)] == ["jobqueue-web"]
    assert [c["name"] for c in containers(worker)] == ["jobqueue-worker"]
    # 120 jobs/s per measured replica of 2 workers: 60 per worker, 42 at 70%; 250 / 42 -> 6
    assert worker["spec"]["replicas"] == 6 and web["spec"]["replicas"] == 3
    assert docs[("HorizontalPodAutoscaler", "jq-worker")]["spec"]["maxReplicas"] == 6
    assert ("HorizontalPodAutoscaler", "jq-redis") not in docs  # state is never scaled
    assert docs[("Service", "jq")]["spec"]["ports"][0]["port"] == 8401
    # every pod finds Redis at its Service (the config each container computes its process from)
    for workload in (web, worker, redis):
        (env,) = [e for e in containers(workload)[0]["env"] if e["name"] == CONFIG_ENV]
        assert decode_config({CONFIG_ENV: env["value"]})["redis_host"] == "jq-redis"
    notes = "\n".join(deployment_notes("jq", config, SIZING))
    assert "ceil(250.0 / (60.0 x 70%)) = 6 pod(s)" in notes and "jq-redis (redis): 1 pod" in notes


def test_env_and_launch_secrets_live_in_a_secret_never_in_a_manifest(tiny_model: Path) -> None:
    config = target_config(kind="jobqueue", port=8401, model_path=str(tiny_model),
                           env={"API_KEY": "s3cret-value"})  # fmt: skip
    docs = kubernetes_manifests("jq", config, SIZING)
    for doc in docs:
        for container in containers(doc) if "template" in doc.get("spec", {}) else []:
            assert container["envFrom"] == [{"secretRef": {"name": "jq-secrets"}}]
            (encoded,) = [e["value"] for e in container["env"] if e["name"] == CONFIG_ENV]
            assert decode_config({CONFIG_ENV: encoded})["env"] == {}
    assert "s3cret-value" not in str(docs) and "SERVECAP_REDIS_PASSWORD" not in str(docs)
    secret = kubernetes_secret("jq", config)
    assert secret is not None and secret["stringData"]["API_KEY"] == "s3cret-value"
    assert len(secret["stringData"]["SERVECAP_REDIS_PASSWORD"]) >= 32  # made afresh
    with pytest.raises(DeployError, match="cannot be Secret keys"):
        kubernetes_secret("jq", config.model_copy(update={"env": {"A B": "x"}}))


def test_external_servers_are_not_deployed_and_the_override_sizes_the_model_server(
    tiny_model: Path,
) -> None:
    external = target_config(kind="external", url="http://127.0.0.1:8000", protocol="servecap")
    with pytest.raises(DeployError, match="servecap does not start it"):
        kubernetes_manifests("ext", external, SIZING)
    config = target_config(kind="fastapi", port=8101, model_path=str(tiny_model))
    assert compose_override("api", config, SIZING) == {
        "services": {"fastapi": {"scale": 3, "cpus": "1.21", "mem_limit": "1000m"}}
    }
    short = target_config(kind="fastapi", port=8101, model_path=str(tiny_model), cpus=0.33,
                          cpu_period_ms=10)  # fmt: skip
    service = compose_override("api", short, SIZING)["services"]["fastapi"]
    assert (service["cpus"], service["cpu_period"], service["cpu_quota"]) == (
        "0",
        "10000us",
        "12143us",
    )  # 0.85 / 0.7 CPU over the period it was measured with
    triton = target_config(kind="triton", port=8501, model_path=str(tiny_model))
    with pytest.raises(DeployError, match="cannot run replicas on one host"):
        compose_override("tri", triton, SIZING)


def test_plan_writes_one_file_per_target_without_yaml_anchors(
    tiny_model: Path, tmp_path: Path
) -> None:
    import yaml

    from analysis.contract import SCENARIO_FILE
    from analysis.sizing import plan_targets
    from loadtests.artefacts import write_artefacts

    results = tmp_path / "results"
    results.mkdir()
    config = {"kind": "fastapi", "port": 8101, "model_path": str(tiny_model),
              "env": {"API_KEY": "s3cret"}}  # fmt: skip
    (results / SCENARIO_FILE).write_text(yaml.safe_dump({"targets": {"api": config}}))
    stage = {"index": 0, "users": 4, "duration_s": 10, "requests": 1000, "measured_requests": 1000,
             "rps": 100.0,
             "goodput_rps": 100.0, "p50_ms": 5.0, "p95_ms": 9.0, "p99_ms": 12.0,
             "error_rate": 0.0, "reject_rate": 0.0, "cpu_pct": 80.0, "mem_mb": 300.0,
             "mem_max_mb": 320.0}  # fmt: skip
    summary = {"runs": [{"target": "api", "kind": "fastapi", "status": "ok", "stages": [stage]}]}
    plans = plan_targets(summary, 100.0, 150.0, allow_closed_loop=True)
    written = write_artefacts(results, plans, tmp_path / "k8s", tmp_path / "plan.yml",
                              echo=lambda _: None)  # fmt: skip
    assert [p.name for p in written] == ["api.yaml", "api.secret.yaml", "plan.yml"]
    assert oct(written[1].stat().st_mode & 0o777) == "0o600"  # the env's values: owner only
    assert "s3cret" in written[1].read_text() and "s3cret" not in written[0].read_text()
    text = written[0].read_text()
    assert text.startswith("# api (fastapi): 3 pod(s), the plan's replicas")
    assert "&id" not in text and "*id" not in text
    docs = list(yaml.safe_load_all(text))
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert docs[0]["spec"]["replicas"] == plans[0].plan.replicas  # type: ignore[union-attr]
