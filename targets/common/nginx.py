"""nginx in front of an app server, as in the paper (client -> nginx -> gunicorn -> Django).

:func:`nginx_spec` gives the process, the same on the host and in a container:
``python -m targets.common.nginx --prefix P ...`` writes a self-contained ``nginx.conf`` into
the folder P (the nginx *prefix*, :func:`write_conf`) and execs nginx in the foreground::

    nginx -p <prefix> -c <prefix>/nginx.conf -e <prefix>/logs/error.log \\
          -g 'daemon off; master_process on;'

The configuration:

* listens on ``config.host:config.port`` only (loopback by default), proxies everything to
  ``127.0.0.1:<app_port>`` over HTTP/1.1 with a pool of keep-alive upstream connections
  (nginx closes idle ones after 60 s, before gunicorn's 75 s keep-alive, so it never sends a
  request on a connection the app server is closing);
* ``client_max_body_size`` = ``max_body_bytes``: longer bodies are refused by nginx itself
  with 413 as JSON ``{"error": ...}``; nginx's own 502/504 (app server down or slow) are JSON
  too; answers from the app server, errors included, pass through unchanged;
* ``worker_processes 1``: one event-driven nginx worker proxies tens of thousands of requests a
  second, far more than a CPU-bound model tier behind it, and one worker keeps nginx's share of
  a small machine's cores (2 here) out of the measurement; more would only compete with gunicorn;
* access log off (the load generator records every request); error log to
  ``<prefix>/logs/error.log`` and, errors only, to stderr (the launcher's log of the process);
* pid file and every temp path (client bodies, proxy buffers...) inside the prefix, so nginx
  never writes to /var/lib/nginx or /run, as root or not.

The prefix is ``<system temp>/servecap-<uid>/nginx/<target>-<port>/`` on the host
(:mod:`targets.common.tmp`: a folder of ours no one else can create things in) (one folder
per target name and port: two running targets cannot share a port) and
``/tmp/servecap/nginx/target`` in a container; it is emptied and rewritten at each start, so
runs never pile up files. It holds the conf, the error log and empty temp folders.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import shutil
from collections.abc import Sequence
from pathlib import Path

from targets.common.settings import DEFAULT_MAX_BODY_BYTES
from targets.common.tmp import private_dir
from targets.config import loopback_url
from targets.launch_types import HOST, LaunchError, Placement, ProcessSpec
from targets.protocols.servecap import HEALTH_PATH

TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
UPSTREAM_KEEPALIVE = 64
"""Idle keep-alive connections to the app server that one nginx worker keeps."""
UPSTREAM_KEEPALIVE_TIMEOUT_S = 60
"""Below the app servers' keep-alive (75 s, see targets.common.gunicorn.KEEPALIVE_S)."""
CONTAINER_PREFIX = Path("/tmp/servecap/nginx/target")
"""write_conf makes its parent folders world-traversable: keep them ours, under /tmp."""


def nginx_binary() -> str:
    """Path of the nginx executable (``/usr/sbin`` is often not on a normal user's PATH)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise LaunchError(
            "nginx not found: install it (Debian/Ubuntu: apt-get install nginx-light; or run "
            "scripts/system-deps.sh)"
        )
    return found


def run_dir(name: str, port: int) -> Path:
    """The nginx prefix of target ``name`` on ``port`` (see the module docstring)."""
    return private_dir("nginx", f"{name}-{port}")


def _listen_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _user_line() -> str:
    """As root, nginx workers drop to ``nobody``; name its real group (not every system has
    the ``nogroup`` nginx assumes). Not root: workers keep our user and no line is needed."""
    if os.geteuid() != 0:
        return ""
    try:
        nobody = pwd.getpwnam("nobody")
        group = grp.getgrgid(nobody.pw_gid).gr_name
    except KeyError:
        return "user root root;\n"  # no unprivileged user to drop to
    return f"user nobody {group};\n"


BALANCE_DIRECTIVES = {"round-robin": "", "least-conn": "        least_conn;\n"}
"""nginx's upstream method for each balancer name (round-robin is nginx's default)."""


def _upstream(app_ports: Sequence[int], balance: str) -> str:
    if balance not in BALANCE_DIRECTIVES:
        raise ValueError(f"balance must be one of {', '.join(BALANCE_DIRECTIVES)}: {balance!r}")
    servers = "".join(f"        server 127.0.0.1:{p};\n" for p in app_ports)
    return BALANCE_DIRECTIVES[balance] + servers


def render_conf(
    prefix: Path,
    host: str,
    port: int,
    app_port: int | Sequence[int],
    max_body_bytes: int,
    worker_processes: int = 1,
    balance: str = "round-robin",
) -> str:
    """The nginx.conf text (all paths absolute, under ``prefix``). Several app ports make an
    upstream of replicas, balanced by ``balance`` (round-robin or least-conn)."""
    ports = [app_port] if isinstance(app_port, int) else list(app_port)
    p = prefix.resolve()
    temp = "\n".join(f"    {kind}_temp_path {p}/temp/{kind};" for kind in TEMP_PATHS)
    body_buffer = min(max_body_bytes, 1024 * 1024)
    too_large = f'{{"error":"body exceeds {max_body_bytes} bytes"}}'
    return f"""# Written by targets/common/nginx.py; rewritten at each launch.
{_user_line()}worker_processes {worker_processes};
pid {p}/nginx.pid;
error_log {p}/logs/error.log warn;
error_log stderr error;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    server_tokens off;
    default_type application/json;
{temp}
    client_max_body_size {max_body_bytes};
    client_body_buffer_size {body_buffer};
    keepalive_timeout 65s;
    keepalive_requests 100000;

    upstream app {{
{_upstream(ports, balance)}        keepalive {UPSTREAM_KEEPALIVE};
        keepalive_timeout {UPSTREAM_KEEPALIVE_TIMEOUT_S}s;
        keepalive_requests 100000;
    }}

    server {{
        listen {_listen_address(host, port)} backlog=4096;
        server_name _;

        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_connect_timeout 5s;
            proxy_send_timeout 300s;
            proxy_read_timeout 300s;
        }}

        error_page 413 @too_large;
        error_page 502 @bad_gateway;
        error_page 504 @gateway_timeout;
        location @too_large {{
            return 413 '{too_large}';
        }}
        location @bad_gateway {{
            return 502 '{{"error":"app server unreachable (nginx)"}}';
        }}
        location @gateway_timeout {{
            return 504 '{{"error":"app server timed out (nginx)"}}';
        }}
    }}
}}
"""


def write_conf(
    prefix: Path,
    host: str,
    port: int,
    app_port: int | Sequence[int],
    max_body_bytes: int,
    worker_processes: int = 1,
    balance: str = "round-robin",
) -> Path:
    """Empty ``prefix``, then write nginx.conf and the folders it names; return the conf path.

    Folders this creates are world-traversable (0755: as root, nginx workers run as nobody and
    create their temp folders here); existing parents are left as they are.
    """
    if prefix.exists():
        shutil.rmtree(prefix)
    for folder in (prefix / "logs", prefix / "temp"):
        _make_dirs(folder)
    conf = prefix / "nginx.conf"
    conf.write_text(render_conf(prefix, host, port, app_port, max_body_bytes, worker_processes,
                                balance))  # fmt: skip
    return conf


def _make_dirs(path: Path) -> None:
    """``mkdir -p`` giving each folder it creates mode 0755 whatever the umask."""
    missing: list[Path] = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
        folder.chmod(0o755)


def nginx_argv(prefix: Path, conf: Path) -> tuple[str, ...]:
    return (
        nginx_binary(), "-p", f"{prefix.resolve()}/", "-c", str(conf.resolve()),
        "-e", str((prefix / "logs" / "error.log").resolve()),
        "-g", "daemon off; master_process on;",
    )  # fmt: skip


def nginx_spec(
    name: str, host: str, port: int, app_port: int, max_body_bytes: int,
    placement: Placement = HOST, workers: int = 1,
) -> ProcessSpec:  # fmt: skip
    """nginx on host:port in front of 127.0.0.1:app_port, ready once /healthz answers through
    it (so also only once the app server behind it is ready)."""
    prefix = CONTAINER_PREFIX if placement.container else run_dir(name, port)
    if not placement.container:
        nginx_binary()  # fail before anything starts when nginx is not installed
    from targets.common.launch import PYTHON, base_env

    argv = (
        PYTHON, "-m", "targets.common.nginx", "--prefix", str(prefix), "--host", host,
        "--port", str(port), "--app-port", str(app_port),
        "--max-body-bytes", str(max_body_bytes), "--workers", str(workers),
    )  # fmt: skip
    return ProcessSpec(
        name=f"{name}-nginx",
        role="nginx",
        argv=argv,
        env=base_env(),
        ready_url=f"{loopback_url(host, port)}{HEALTH_PATH}",
    )


def main(argv: list[str] | None = None) -> None:
    """Write the configuration into ``--prefix`` and exec nginx in the foreground."""
    parser = argparse.ArgumentParser(prog="python -m targets.common.nginx")
    parser.add_argument("--prefix", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--app-port",
        type=int,
        required=True,
        action="append",
        help="an app server's port; several: an upstream of replicas",
    )
    parser.add_argument("--balance", choices=sorted(BALANCE_DIRECTIVES), default="round-robin")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    conf = write_conf(args.prefix, args.host, args.port, args.app_port, args.max_body_bytes,
                      args.workers, args.balance)  # fmt: skip
    command = nginx_argv(args.prefix, conf)
    os.execv(command[0], list(command))


if __name__ == "__main__":
    main()
