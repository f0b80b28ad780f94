"""What a target container runs first: ``python -m targets.docker.entrypoint COMMAND ...``.

Two small jobs a shell entry point would do less safely, then ``exec`` (the server keeps the
PID that ``docker-init`` forwards signals to; nothing of this module stays alive):

``exec [--reuse-port] -- ARGV...``
    Expand ``${VAR}`` in ARGV from the environment (exec-form commands get no shell; compose
    has usually interpolated them already). With ``--reuse-port``, first create the server
    socket on ``$SERVECAP_LISTEN_HOST:$SERVECAP_LISTEN_PORT`` with ``SO_REUSEPORT``, *bound but
    not listening*, and hand it to the server as fd 3 (``uvicorn --fd 3``). That is how
    ``replicas > 1`` containers share one port on the host network (uvicorn cannot set
    SO_REUSEPORT itself): the kernel spreads *connections* over the replicas' listening
    sockets, and since uvicorn calls ``listen()`` only once its app (model) is loaded, a replica
    joins the group only when it is ready.
``nginx``
    Write the nginx configuration with :mod:`targets.common.nginx` (the very file the process
    launcher writes; prefix ``/tmp/servecap/nginx/target`` on the container's tmpfs) and exec
    nginx in the foreground as the container user. Settings: ``SERVECAP_HOST``,
    ``SERVECAP_PORT`` (listen), ``SERVECAP_APP_PORT`` (upstream), ``SERVECAP_MAX_BODY_BYTES``,
    ``SERVECAP_NGINX_WORKERS``.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

LISTEN_FD = 3
NGINX_PREFIX = Path("/tmp/servecap/nginx/target")
"""write_conf makes its parent folders world-traversable: keep them ours, under /tmp."""


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


def exec_nginx(env: dict[str, str]) -> None:
    from targets.common.nginx import nginx_argv, write_conf

    conf = write_conf(
        NGINX_PREFIX,
        env.get("SERVECAP_HOST", "127.0.0.1"),
        int(env["SERVECAP_PORT"]),
        int(env["SERVECAP_APP_PORT"]),
        int(env.get("SERVECAP_MAX_BODY_BYTES", str(16 * 1024 * 1024))),
        int(env.get("SERVECAP_NGINX_WORKERS", "1")),
    )
    argv = nginx_argv(NGINX_PREFIX, conf)
    os.execv(argv[0], list(argv))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m targets.docker.entrypoint")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("exec", help="expand ${VAR}s, optionally pre-bind fd 3, exec ARGV")
    bind_help = f"bind $SERVECAP_LISTEN_HOST:$SERVECAP_LISTEN_PORT as fd {LISTEN_FD}"
    run.add_argument("--reuse-port", action="store_true", help=bind_help)
    run.add_argument("argv", nargs=argparse.REMAINDER)
    sub.add_parser("nginx", help="write the nginx conf in /tmp and exec nginx")
    args = parser.parse_args(argv)

    if args.command == "nginx":
        exec_nginx(dict(os.environ))
        return 1  # not reached
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not command:
        parser.error("exec needs a command after --")
    command = expand(command)
    if args.reuse_port:
        host = os.environ.get("SERVECAP_LISTEN_HOST", "127.0.0.1")
        sock = bind_reuse_port(host, int(os.environ["SERVECAP_LISTEN_PORT"]))
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
