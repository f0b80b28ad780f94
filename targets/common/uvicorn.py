"""How servecap's ASGI servers start (FastAPI, the job queue's web, a chain's FastAPI model
server): uvicorn serving an app factory, on a pre-bound socket.

With several workers uvicorn hands each one the listening socket in a form asyncio does not
take for TCP, so TCP_NODELAY is never set on accepted connections and Nagle + delayed ACKs add
about 40 ms to every answer. The socket is therefore pre-bound with TCP_NODELAY (which Linux
copies to accepted connections) by ``targets.docker.entrypoint exec --reuse-port`` and passed
to uvicorn as fd 3. In containers it is always pre-bound that way, with SO_REUSEPORT, so
replicas share the port on the host network; a single process binds the port itself.
"""

from __future__ import annotations

from collections.abc import Mapping

from targets.common.launch import PYTHON, with_metrics
from targets.config import loopback_url
from targets.docker.entrypoint import LISTEN_HOST_ENV, LISTEN_PORT_ENV
from targets.launch_types import HOST, Placement, ProcessSpec
from targets.protocols.servecap import HEALTH_PATH

UVICORN_FLAGS = ("--no-access-log", "--log-level", "warning")
KEEPALIVE_S = 5
"""uvicorn's own default keep-alive, for a server clients reach directly."""


def uvicorn_spec(
    name: str,
    role: str,
    app: str,
    env: Mapping[str, str],
    host: str,
    port: int,
    workers: int,
    placement: Placement = HOST,
    keepalive_s: int = KEEPALIVE_S,
    health_path: str = HEALTH_PATH,
) -> ProcessSpec:
    """uvicorn serving the ASGI app factory ``app`` (``module:function``) on host:port, its
    worker processes' metrics summed (:func:`targets.common.launch.with_metrics`)."""
    serve = ("-m", "uvicorn", app, "--factory", "--workers", str(workers),
             "--timeout-keep-alive", str(keepalive_s), *UVICORN_FLAGS)  # fmt: skip
    environment, fresh = with_metrics(name, env, placement)
    if workers == 1 and not placement.share_port:
        argv: tuple[str, ...] = (PYTHON, *serve, "--host", host, "--port", str(port))
    else:
        environment |= {LISTEN_HOST_ENV: host, LISTEN_PORT_ENV: str(port)}
        argv = (PYTHON, "-m", "targets.docker.entrypoint", "exec", "--reuse-port", "--", PYTHON,
                *serve, "--fd", "3")  # fmt: skip
    return ProcessSpec(
        name=name,
        role=role,
        argv=argv,
        env=environment,
        ready_url=f"{loopback_url(host, port)}{health_path}",
        fresh_dirs=fresh,
    )
