"""How servecap's WSGI servers start (Flask, Django, a chain's Flask model server): gunicorn,
gthread workers, no ``--preload``.

::

    gunicorn -k gthread -w WORKERS --threads THREADS -b HOST:PORT 'targets.flask.app:create_app()'

* No ``--preload``: TensorFlow is not fork-safe, so each worker imports TensorFlow and loads its
  own model after the fork (``create_app()`` runs in the worker). Readiness is ``/healthz``
  answering 200: at least one worker has loaded its model.
* Worker class ``gthread`` always, even with one thread: it keeps client connections alive
  (gunicorn's ``sync`` worker closes every connection, which would make nginx and the load
  generator pay a TCP handshake per request) and it is what makes max_works meaningful.
* max_works semantics with gunicorn: the limit counts inferences in flight **per worker
  process** (as everywhere in servecap). A gthread worker runs at most ``threads`` requests at
  once and queues the rest, so with ``threads <= max_works`` the limit could never trigger:
  requests over it would wait instead of being refused. When max_works is set the worker
  therefore gets ``threads = max(config.threads, max_works + 1)`` (:func:`effective_threads`):
  max_works threads infer, at least one more answers the excess at once with 503 +
  Retry-After. A target with W workers admits at most ``W x max_works`` inferences at once;
  gunicorn's accept is not balanced, so one worker may refuse while another has room.
* Keep-alive 75 s (above nginx's 60 s upstream keep-alive, so nginx never reuses a connection
  gunicorn is closing); worker timeout 120 s (model loading on a busy small machine); graceful
  stop 5 s (within the launcher's 10 s grace); no access log; no control socket (gunicorn's
  default socket path is one per user, and chains run two gunicorns at once).
"""

from __future__ import annotations

from collections.abc import Mapping

from targets.common.launch import PYTHON, with_metrics
from targets.config import InferenceServerConfig, PythonServerConfig, loopback_url
from targets.launch_types import HOST, Placement, ProcessSpec
from targets.protocols.servecap import HEALTH_PATH

KEEPALIVE_S = 75
WORKER_TIMEOUT_S = 120
GRACEFUL_TIMEOUT_S = 5


def effective_threads(config: PythonServerConfig) -> int:
    """Threads per gunicorn worker: config.threads, raised above max_works when that is set,
    and to batch_max with dynamic batching (a batch needs as many requests in one worker)."""
    threads = config.threads
    if config.max_works:
        threads = max(threads, config.max_works + 1)
    if isinstance(config, InferenceServerConfig) and config.batch_max:
        threads = max(threads, config.batch_max)
    return threads


def gunicorn_argv(
    app: str, host: str, port: int, config: PythonServerConfig, placement: Placement = HOST
) -> tuple[str, ...]:
    """The gunicorn command line serving WSGI ``app`` (``module:callable()``) on host:port;
    in containers with ``--reuse-port``, so replicas share the port."""
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return (
        PYTHON, "-m", "gunicorn",
        "--worker-class", "gthread",
        "--workers", str(config.workers),
        "--threads", str(effective_threads(config)),
        "--bind", bind,
        "--keep-alive", str(KEEPALIVE_S),
        "--timeout", str(WORKER_TIMEOUT_S),
        "--graceful-timeout", str(GRACEFUL_TIMEOUT_S),
        "--log-level", "warning",
        "--no-control-socket",
        *(("--reuse-port",) if placement.share_port else ()),
        app,
    )  # fmt: skip


def gunicorn_spec(
    name: str, role: str, app: str, env: Mapping[str, str], config: PythonServerConfig,
    host: str, port: int, placement: Placement = HOST,
) -> ProcessSpec:  # fmt: skip
    """A gunicorn-served WSGI app on host:port, ready once its /healthz answers; its worker
    processes' metrics summed (:func:`targets.common.launch.with_metrics`)."""
    environment, fresh = with_metrics(name, env, placement)
    return ProcessSpec(
        name=name,
        role=role,
        argv=gunicorn_argv(app, host, port, config, placement),
        env=environment,
        ready_url=f"{loopback_url(host, port)}{HEALTH_PATH}",
        fresh_dirs=fresh,
    )
