"""TF Serving has no process plan: its binary only ships in the official container image."""

from __future__ import annotations

from targets.config import TargetConfig
from targets.launchers.base import LaunchError, ProcessSpec


def process_plan(name: str, config: TargetConfig) -> list[ProcessSpec]:
    raise LaunchError(
        f"target '{name}' ({config.kind}) needs TensorFlow Serving, which runs only as a "
        "container from the official image: use `--launcher docker` on a host that can pull "
        "tensorflow/serving (no TF Serving binary can be installed as a local process)"
    )
