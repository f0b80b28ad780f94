"""How the FastAPI target starts as local processes: uvicorn with N workers.

With several workers uvicorn hands each one the listening socket in a form asyncio does not
take for TCP, so TCP_NODELAY is never set on accepted connections and Nagle + delayed ACKs add
about 40 ms to every answer. The socket is therefore pre-bound with TCP_NODELAY (which Linux
copies to accepted connections) by the same entry point the containers use, and passed to
uvicorn as fd 3.
"""

from __future__ import annotations

from targets.config import TargetConfig, loopback_url
from targets.launchers.base import ProcessSpec
from targets.registry import PYTHON, server_env

UVICORN_FLAGS = ("--no-access-log", "--log-level", "warning")


def uvicorn_spec(
    name: str, config: TargetConfig, host: str, port: int, flags: tuple[str, ...] = ()
) -> ProcessSpec:
    """uvicorn serving the FastAPI app on host:port with ``config.workers`` workers."""
    app = ("-m", "uvicorn", "targets.fastapi.app:create_app", "--factory")
    env = server_env(config)
    if config.workers == 1:
        argv: tuple[str, ...] = (PYTHON, *app, "--host", host, "--port", str(port),
                                 *flags, *UVICORN_FLAGS)  # fmt: skip
    else:
        env |= {"SERVECAP_LISTEN_HOST": host, "SERVECAP_LISTEN_PORT": str(port)}
        argv = (PYTHON, "-m", "targets.docker.entrypoint", "exec", "--reuse-port", "--", PYTHON,
                *app, "--fd", "3", "--workers", str(config.workers), *flags,
                *UVICORN_FLAGS)  # fmt: skip
    return ProcessSpec(
        name=name, argv=argv, env=env, ready_url=f"{loopback_url(host, port)}/healthz"
    )


def process_plan(name: str, config: TargetConfig) -> list[ProcessSpec]:
    return [uvicorn_spec(name, config, config.host, config.port)]
