"""Container health probe without curl: ``python -S healthcheck.py ready`` (or
``python -S healthcheck.py KIND PORT [PATH] [--own]``).

Run inside the container: by Docker every ``SERVECAP_HEALTH_INTERVAL`` (the ``healthcheck``
entries of docker-compose.yml; 5 s when started by hand), and by servecap's launcher until the
target is ready (a run sets Docker's interval to 24 h: a check takes its share of the
container's CPU quota). It is deliberately small: standard library only, ``python -S`` (no
site-packages scan), one connection to 127.0.0.1 with a short timeout; about 15 ms of CPU per
probe. Arguments may name environment variables (``$SERVECAP_PORT``); they are expanded here
because exec-form healthchecks get no shell.

    ready              the check ``entrypoint serve`` wrote for its process (READY_FILE:
                       ``http PORT PATH``, ``tcp PORT`` or ``none``), with --own for http
    http PORT [PATH]   GET PATH (default /healthz) answers 200
    redis PORT         PING answers +PONG
    tcp PORT           the port accepts a connection
    --own              also require that a process of *this* container listens on PORT

``--own`` matters for replicas: on the host network, replicas share their port through
SO_REUSEPORT, so a probe of 127.0.0.1:PORT may be answered by another replica. The check reads
the container's own socket inodes (/proc/<pid>/fd, this container's PID namespace) and looks
them up among the LISTEN sockets of /proc/net/tcp{,6}.

Exit status 0 = healthy, 1 = not (Docker's convention), 2 = usage.
"""

from __future__ import annotations

import os
import socket
import sys

TIMEOUT_S = 2.0
TCP_LISTEN = "0A"
READY_FILE = "/tmp/servecap-ready"
"""Written by ``targets.docker.entrypoint serve`` (its READY_FILE; stdlib only here)."""


def own_listener(port: int, proc: str = "/proc") -> bool:
    """True when a process visible in ``proc`` owns a socket listening on ``port``."""
    inodes: set[str] = set()
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        fd_dir = f"{proc}/{pid}/fd"
        try:
            for fd in os.listdir(fd_dir):
                link = os.readlink(f"{fd_dir}/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    for table in (f"{proc}/net/tcp", f"{proc}/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != TCP_LISTEN:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                return True
    return False


def probe(kind: str, port: int, path: str = "/healthz") -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
            if kind == "tcp":
                return True
            if kind == "redis":
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
            if kind == "http":
                request = f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode("ascii")
                sock.sendall(request)
                status_line = sock.recv(64).split(b"\r\n", 1)[0].split()
                return len(status_line) >= 2 and status_line[1] == b"200"
    except OSError:
        return False
    raise ValueError(f"unknown probe kind {kind!r} (http, redis, tcp)")


def ready(path: str = READY_FILE) -> bool:
    """The readiness check the entrypoint wrote for the process it started."""
    try:
        with open(path, encoding="ascii") as f:
            fields = f.read().split()
    except OSError:
        return False
    if fields[:1] == ["none"]:
        return True
    if len(fields) < 2 or not fields[1].isdigit():
        return False
    port = int(fields[1])
    if fields[0] == "http" and not own_listener(port):
        return False
    return probe(fields[0], port, *fields[2:3])


def main(argv: list[str]) -> int:
    if argv[:1] == ["ready"]:
        return 0 if ready() else 1
    own = "--own" in argv
    args = [os.path.expandvars(a) for a in argv if a != "--own"]
    if len(args) < 2 or args[0] not in ("http", "redis", "tcp") or not args[1].isdigit():
        print(__doc__, file=sys.stderr)
        return 2
    port = int(args[1])
    if own and not own_listener(port):
        return 1
    return 0 if probe(args[0], port, *args[2:3]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
