"""How the FastAPI target starts as local processes: uvicorn with N workers."""

from __future__ import annotations

from targets.config import TargetConfig
from targets.launchers.base import ProcessSpec
from targets.registry import PYTHON, server_env


def process_plan(name: str, config: TargetConfig) -> list[ProcessSpec]:
    argv = (
        PYTHON, "-m", "uvicorn", "targets.fastapi.app:create_app", "--factory",
        "--host", config.host, "--port", str(config.port),
        "--workers", str(config.workers),
        "--no-access-log", "--log-level", "warning",
    )  # fmt: skip
    return [
        ProcessSpec(
            name=name, argv=argv, env=server_env(config), ready_url=f"{config.base_url}/healthz"
        )
    ]
