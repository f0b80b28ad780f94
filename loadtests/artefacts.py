"""``servecap plan --kubernetes DIR --compose FILE``: a plan's deployable artefacts on disk.

The targets' configurations come from the results folder itself (``scenario.yaml``, written
by the run: what was measured is what is deployed); the manifests and overrides from
:mod:`targets.deploy`. Kubernetes manifests go to ``DIR/<target>.yaml`` (headed by how each
tier was sized), the target's Secret to ``DIR/<target>.secret.yaml`` (mode 0600: keep it out
of version control); the compose override to FILE, or, when several targets were planned, to
``<FILE stem>.<target><suffix>`` beside it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from analysis.contract import SCENARIO_FILE
from analysis.sizing import TargetPlan
from targets.config import TargetConfig, check_target_name
from targets.deploy import (
    DeployError,
    Sizing,
    compose_override,
    deployment_notes,
    kubernetes_manifests,
    kubernetes_secret,
)
from targets.registry import target_config

Echo = Callable[[str], None]


class _NoAliases(yaml.SafeDumper):
    """Repeated mappings (a Deployment's labels and selector) written out, not as &anchors."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def resolved_targets(results_dir: Path) -> dict[str, TargetConfig]:
    """The targets' configurations as the run used them."""
    path = results_dir / SCENARIO_FILE
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise DeployError(f"cannot read the run's target configurations in {path}: {err}") \
            from None  # fmt: skip
    configs = {}
    for name, cfg in doc.get("targets", {}).items():
        try:  # names become file and Kubernetes names: a folder edited by hand is checked too
            configs[check_target_name(name)] = target_config(**cfg)
        except ValueError as err:
            raise DeployError(f"{path}: {err}") from None
    return configs


def sizing_of(tp: TargetPlan) -> Sizing | None:
    p = tp.plan
    if p is None:
        return None
    return Sizing(replicas=p.replicas, cpu_cores=p.cpu_cores_per_replica,
                  mem_mb=p.mem_mb_per_replica, headroom=p.headroom,
                  capacity_rps=p.capacity_per_replica_rps, peak_rps=p.peak_rps,
                  mem_peak_mb=p.mem_peak_mb_per_replica)  # fmt: skip


def override_path(compose_file: Path, name: str, targets: int) -> Path:
    """FILE for one planned target; ``<stem>.<target><suffix>`` beside it for several."""
    if targets == 1:
        return compose_file
    return compose_file.with_name(f"{compose_file.stem}.{name}{compose_file.suffix}")


def deployment_text(results_dir: Path, plans: Sequence[TargetPlan]) -> list[str]:
    """How each planned target would be deployed (its tiers sized, with the arithmetic), for
    the plan's text; nothing for targets that are not deployed (an external server)."""
    try:
        configs = resolved_targets(results_dir)
    except DeployError:
        return []
    lines: list[str] = []
    for tp in plans:
        sizing = sizing_of(tp)
        config = configs.get(str(tp.target))
        if sizing is None or config is None:
            continue
        try:
            notes = deployment_notes(str(tp.target), config, sizing)
        except DeployError:
            continue
        lines += ["", f"{tp.target} deployed (servecap plan --kubernetes):"]
        lines += [f"  - {note}" for note in notes]
    return lines


def _write_private(path: Path, text: str) -> None:
    """``text`` in a file only its owner can read (0600), replacing any earlier one."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def _write_kubernetes(name: str, config: TargetConfig, sizing: Sizing, folder: Path) -> list[Path]:
    docs = kubernetes_manifests(name, config, sizing)
    secret = kubernetes_secret(name, config)
    folder.mkdir(parents=True, exist_ok=True)
    head = "".join(f"# {note}\n" for note in deployment_notes(name, config, sizing))
    path = folder / f"{name}.yaml"
    path.write_text(head + yaml.dump_all(docs, Dumper=_NoAliases, sort_keys=False),
                    encoding="utf-8")  # fmt: skip
    if secret is None:
        return [path]
    secret_path = folder / f"{name}.secret.yaml"
    _write_private(secret_path, "# secret values: keep this file out of version control\n"
                   + yaml.dump(secret, Dumper=_NoAliases, sort_keys=False))  # fmt: skip
    return [path, secret_path]


def write_artefacts(
    results_dir: Path, plans: Sequence[TargetPlan], kubernetes_dir: Path | None,
    compose_file: Path | None, echo: Echo = print,
) -> list[Path]:  # fmt: skip
    """Write the artefacts of every planned target; a target that cannot be deployed (an
    external server, no plan) is named with the reason. Returns the files written."""
    configs = resolved_targets(results_dir)
    sized = [(str(tp.target), sizing_of(tp)) for tp in plans]
    planned = [(n, s) for n, s in sized if s is not None and n in configs]
    written: list[Path] = []
    for name, sizing in sized:
        if sizing is None:
            echo(f"{name}: no plan, no artefacts")
    for name, sizing in planned:
        assert sizing is not None
        config = configs[name]
        try:
            if kubernetes_dir is not None:
                written += _write_kubernetes(name, config, sizing, kubernetes_dir)
            if compose_file is not None:
                path = override_path(compose_file, name, len(planned))
                doc = compose_override(name, config, sizing)
                head = f"# servecap plan: {name} ({config.kind}), {sizing.replicas} replica(s)\n"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(head + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
                written.append(path)
        except DeployError as err:
            echo(f"{name}: {err}")
    for path in written:
        echo(f"wrote {path}")
    return written
