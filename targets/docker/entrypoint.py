"""What a target container runs first: ``python -m targets.docker.entrypoint COMMAND ...``.

``serve ROLE``
    Run the process of ``ROLE`` (the docker-compose.yml service: ``fastapi``, ``nginx``,
    ``redis``...) exactly as the process launcher would: the target's config comes from
    ``SERVECAP_TARGET_CONFIG_B64`` (written by the Docker launcher; base64 of its JSON, model
    path already the container's), the kind's process plan is computed here
    (:meth:`targets.kind.Kind.process_plan` with the container placement) and the process of
    that role is exec'd with its environment. So a container's command and a process's come
    from one definition. Without the variable (a manual ``docker-compose up``) the default
    config of the kind in ``SERVECAP_KIND`` is used. Before the exec, the process's readiness
    check is written to :data:`READY_FILE` for ``healthcheck.py ready``.
``exec [--reuse-port] -- ARGV...``
    Expand ``${VAR}`` in ARGV from the environment (exec-form commands get no shell). With
    ``--reuse-port``, first create the server socket on ``$SERVECAP_LISTEN_HOST:
    $SERVECAP_LISTEN_PORT`` with ``SO_REUSEPORT``, *bound but not listening*, and hand it to
    the server as fd 3 (``uvicorn --fd 3``). That is how ``replicas > 1`` containers share one
    port on the host network (uvicorn cannot set SO_REUSEPORT itself): the kernel spreads
    *connections* over the replicas' listening sockets, and since uvicorn calls ``listen()``
    only once its app (model) is loaded, a replica joins the group only when it is ready.
    The process launcher uses it too, for uvicorn with several workers.

Either way the server keeps the PID that ``docker-init`` forwards signals to: nothing of this
module stays alive.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LISTEN_FD = 3
LISTEN_HOST_ENV = "SERVECAP_LISTEN_HOST"
LISTEN_PORT_ENV = "SERVECAP_LISTEN_PORT"
CONFIG_ENV = "SERVECAP_TARGET_CONFIG_B64"
NAME_ENV = "SERVECAP_TARGET"
KIND_ENV = "SERVECAP_KIND"
CONTAINER_MODEL_BASE = "/models/cifar10_cnn"
"""Where the model is mounted (or copied, model-in-image) in every container."""
READY_FILE = Path("/tmp/servecap-ready")


def encode_config(config: dict[str, Any]) -> str:
    """The value of :data:`CONFIG_ENV` for a target config (its JSON, base64: safe in any
    env-file parser)."""
    return base64.b64encode(json.dumps(config, separators=(",", ":")).encode()).decode("ascii")


def decode_config(env: dict[str, str]) -> dict[str, Any]:
    if CONFIG_ENV in env:
        data: dict[str, Any] = json.loads(base64.b64decode(env[CONFIG_ENV]))
        return data
    if KIND_ENV in env:
        return {"kind": env[KIND_ENV], "model_path": CONTAINER_MODEL_BASE}
    raise SystemExit(f"entrypoint: set {CONFIG_ENV} (the Docker launcher does) or {KIND_ENV}")


def ready_line(url: str | None, port: int | None) -> str:
    """What ``healthcheck.py ready`` checks: ``http PORT PATH``, ``tcp PORT`` or ``none``."""
    if url is not None:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return f"http {parts.port} {path or '/'}"
    if port is not None:
        return f"tcp {port}"
    return "none"


def serve(role: str, env: dict[str, str]) -> None:
    from targets.launch_types import CONTAINER, prepare_dirs
    from targets.registry import get_kind, target_config

    config = target_config(**decode_config(env))
    plan = get_kind(config.kind).process_plan(env.get(NAME_ENV, "target"), config, CONTAINER)
    spec = next((s for s in plan if s.role == role), None)
    if spec is None:
        roles = ", ".join(sorted({s.role for s in plan}))
        raise SystemExit(f"entrypoint: kind {config.kind} has no process '{role}' ({roles})")
    prepare_dirs(spec)
    READY_FILE.write_text(ready_line(spec.ready_url, spec.ready_port) + "\n", encoding="ascii")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(spec.argv[0], list(spec.argv), {**env, **spec.env})


def expand(argv: list[str]) -> list[str]:
    """``${VAR}`` / ``$VAR`` expanded; an unset variable is an error, not an empty string."""
    out = []
    for arg in argv:
        value = os.path.expandvars(arg)
        if "$" in arg and "$" in value:
            raise SystemExit(f"entrypoint: unset variable in argument {arg!r}")
        out.append(value)
    return out


def bind_reuse_port(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port with SO_REUSEPORT, deliberately not listening yet."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # uvicorn wraps fd 3 as an AF_UNIX socket object (socket.fromfd(fd, AF_UNIX, ...)), so
    # asyncio never sets TCP_NODELAY on the connections it accepts (it does so for AF_INET
    # only); Nagle + delayed ACKs then add ~40 ms to every answer. Linux copies TCP_NODELAY
    # from the listening socket to accepted ones, so set it here.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m targets.docker.entrypoint")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve", help="exec the process of ROLE from the kind's plan")
    serve_cmd.add_argument("role")
    run = sub.add_parser("exec", help="expand ${VAR}s, optionally pre-bind fd 3, exec ARGV")
    bind_help = f"bind $SERVECAP_LISTEN_HOST:$SERVECAP_LISTEN_PORT as fd {LISTEN_FD}"
    run.add_argument("--reuse-port", action="store_true", help=bind_help)
    run.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    if args.command == "serve":
        serve(args.role, dict(os.environ))
        return 1  # not reached
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not command:
        parser.error("exec needs a command after --")
    command = expand(command)
    if args.reuse_port:
        host = os.environ.get(LISTEN_HOST_ENV, "127.0.0.1")
        sock = bind_reuse_port(host, int(os.environ[LISTEN_PORT_ENV]))
        if sock.fileno() == LISTEN_FD:
            os.set_inheritable(sock.detach(), True)  # already fd 3: keep it open across exec
        else:
            os.dup2(sock.fileno(), LISTEN_FD)  # dup2'd descriptors are inheritable
            sock.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(command[0], command)


if __name__ == "__main__":
    sys.exit(main())
