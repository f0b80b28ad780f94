"""``django-to-tfserving`` has no process plan: TF Serving ships only as a container image.

The Django tier's forwarding to TF Serving's REST API is :mod:`targets.common.forward`
(``SERVECAP_UPSTREAM_KIND=tfserving-rest``), tested against a fake TF Serving endpoint.
"""

from __future__ import annotations

from targets.config import TargetConfig
from targets.launchers.base import LaunchError, ProcessSpec


def process_plan(name: str, config: TargetConfig) -> list[ProcessSpec]:
    raise LaunchError(
        f"target '{name}' ({config.kind}) forwards to TensorFlow Serving, which runs only as a "
        "container from the official image: use `--launcher docker` on a host that can pull "
        "tensorflow/serving (no TF Serving binary can be installed as a local process)"
    )
