"""Start ``redis-server`` for the job queue with a password, a memory cap, nothing on disk.

Run as ``python -m targets.jobqueue.redis_server --port P --maxmemory-mb M``: reads the launch's
password from ``SERVECAP_REDIS_PASSWORD`` (refusing to start without one), writes a config file
into a private folder (mode 0700, file 0600: the password never appears on a command line,
which every local user can read in ``/proc``) and execs ``redis-server`` on it, so Redis keeps
this process's PID (signals and the launcher's stop reach it directly).

The config: loopback only, protected mode, ``requirepass``; ``maxmemory`` with ``noeviction``
(a full Redis refuses writes, which the web answers 503, instead of evicting queued jobs or
results); no RDB or AOF persistence (a job queue for a load test keeps nothing across
restarts).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from targets.common.settings import env_name
from targets.common.tmp import private_dir
from targets.jobqueue.common import JobQueueSettings

REDIS_SERVER = "redis-server"
PASSWORD_ENV = env_name(JobQueueSettings, "redis_password")


def config_text(port: int, password: str, maxmemory_mb: int, folder: Path) -> str:
    if not password or any(c.isspace() or c == '"' for c in password):
        raise ValueError("the Redis password must be non-empty, without spaces or quotes")
    lines = [
        "bind 127.0.0.1",
        f"port {port}",
        "protected-mode yes",
        f'requirepass "{password}"',
        f"maxmemory {maxmemory_mb}mb",
        "maxmemory-policy noeviction",
        'save ""',
        "appendonly no",
        f"dir {folder}",
        "loglevel warning",
    ]
    return "\n".join(lines) + "\n"


def write_config(port: int, password: str, maxmemory_mb: int) -> Path:
    """The config file in a fresh private folder (0700), itself 0600."""
    folder = private_dir("redis", str(port))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, mode=0o700)
    path = folder / "redis.conf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(config_text(port, password, maxmemory_mb, folder))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m targets.jobqueue.redis_server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maxmemory-mb", type=int, required=True)
    args = parser.parse_args(argv)
    password = os.environ.get(PASSWORD_ENV, "")
    if not password:
        print(f"redis_server: {PASSWORD_ENV} is not set; refusing to run Redis without a "
              "password (the launchers set one per launch)", file=sys.stderr)  # fmt: skip
        return 2
    binary = shutil.which(REDIS_SERVER)
    if binary is None:
        print(f"redis_server: {REDIS_SERVER} is not on PATH", file=sys.stderr)
        return 2
    config = write_config(args.port, password, args.maxmemory_mb)
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    os.execve(binary, [binary, str(config)], env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
