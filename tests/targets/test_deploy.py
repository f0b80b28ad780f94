"""Tests for targets.deploy: Kubernetes manifests checked against the Kubernetes schemas
(kubernetes-validate, strict), and compose overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from targets.deploy import DeployError, Sizing, compose_override, kubernetes_manifests
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


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_manifests_are_valid_kubernetes_objects(kind: str, tiny_model: Path) -> None:
    fields = dict(CONFIGS[kind])
    if kind != "container":
        fields["model_path"] = str(tiny_model)
    docs = kubernetes_manifests("my-target", target_config(**fields), SIZING)
    assert [d["kind"] for d in docs] == [
        "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"
    ]  # fmt: skip
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises when invalid


def test_resources_probe_and_autoscaling_follow_the_plan(tiny_model: Path) -> None:
    config = target_config(kind="django-to-fastapi", port=8201, model_path=str(tiny_model))
    docs = by_kind(kubernetes_manifests("api", config, SIZING))
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    assert docs["Deployment"]["spec"]["replicas"] == 3
    names = [c["name"] for c in pod["containers"]]
    assert names == ["fastapi", "django-forward", "nginx"]  # one pod: loopback between them
    model = pod["containers"][0]
    # requests: measured per replica; limits: / (1 - headroom): 0.85 / 0.7 = 1.214 cores, and
    # memory from the peak sample, 700 / 0.7 = 1,000 MB
    assert model["resources"]["requests"] == {"cpu": "850m", "memory": "613Mi"}
    assert model["resources"]["limits"] == {"cpu": "1220m", "memory": "1000Mi"}
    assert model["readinessProbe"]["httpGet"]["path"] == "/healthz"
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


def test_secrets_are_referenced_never_written(tiny_model: Path) -> None:
    config = target_config(kind="jobqueue", port=8401, model_path=str(tiny_model))
    text = str(kubernetes_manifests("jq", config, SIZING))
    assert "secretKeyRef" in text and "SERVECAP_REDIS_PASSWORD" in text
    docs = kubernetes_manifests("jq", config, SIZING)
    for container in docs[0]["spec"]["template"]["spec"]["containers"]:
        for var in container.get("env", []):
            if var["name"] == "SERVECAP_REDIS_PASSWORD":
                assert "value" not in var


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
    config = {"kind": "fastapi", "port": 8101, "model_path": str(tiny_model)}
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
    assert [p.name for p in written] == ["api.yaml", "plan.yml"]
    text = written[0].read_text()
    assert "&id" not in text and "*id" not in text
    docs = list(yaml.safe_load_all(text))
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert docs[0]["spec"]["replicas"] == plans[0].plan.replicas  # type: ignore[union-attr]
