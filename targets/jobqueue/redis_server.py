"""Start ``redis-server`` for the job queue with a password, a memory cap and an append-only file.

Run as ``python -m targets.jobqueue.redis_server --port P --maxmemory-mb M [--persistence
everysec|always|off] [--bind HOST] [--data-dir DIR]``: reads the launch's password from
``SERVECAP_REDIS_PASSWORD`` (refusing to start without one), writes a config file into a
private folder (mode 0700, file 0600: the password never appears on a command line, which every
local user can read in ``/proc``) and execs ``redis-server`` on it, so Redis keeps this
process's PID (signals and the launcher's stop reach it directly).

The config: loopback only (unless ``--bind``: a pod's interfaces, behind its Service),
protected mode, ``requirepass``; ``maxmemory`` with ``noeviction`` (a full Redis refuses
writes, which the web answers 503, instead of evicting queued jobs or results).

**Persistence** (the target's ``redis_persistence``). Without it a Redis restart lost accepted
jobs (seen: 2 of 4,565 under 4 users; the queue, the jobs and their images live only in
Redis). By default Redis keeps an append-only file, ``appendfsync everysec``: every write
reaches the file (the kernel's page cache) before its reply is sent, so a Redis process that
is killed or restarted loses no acknowledged write, which is the failure a restart fault and a
crashed container are; only a crash of the whole machine can lose the last second, and that
takes the web and the workers with it. ``always`` also fsyncs before replying (survives a
power cut) at the price of one fsync per event-loop turn (on network disks a few ms each,
which caps the queue's throughput); ``off`` keeps nothing on disk. No RDB snapshots: the AOF is
the record. The data folder lives as long as the launch: a restart within the launch (the same
password) replays it, a new launch starts empty (a marker holds a hash of the launch's
password, never the password).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import Literal, get_args

from targets.common.settings import env_name
from targets.common.tmp import private_dir
from targets.jobqueue.common import JobQueueSettings

REDIS_SERVER = "redis-server"
PASSWORD_ENV = env_name(JobQueueSettings, "redis_password")
Persistence = Literal["everysec", "always", "off"]
"""``appendfsync`` policies, or no append-only file (the target's ``redis_persistence``)."""
PERSISTENCE: tuple[Persistence, ...] = get_args(Persistence)
DEFAULT_PERSISTENCE: Persistence = "everysec"
LAUNCH_MARKER = "servecap-launch"
"""In the data folder: sha256 of the launch's password (whose data this is)."""


def config_text(
    port: int, password: str, maxmemory_mb: int, folder: Path,
    persistence: str = DEFAULT_PERSISTENCE, bind: str = "127.0.0.1",
) -> str:  # fmt: skip
    if not password or any(c.isspace() or c == '"' for c in password):
        raise ValueError("the Redis password must be non-empty, without spaces or quotes")
    if persistence not in PERSISTENCE:
        raise ValueError(f"persistence must be one of {', '.join(PERSISTENCE)}, not {persistence}")
    aof = ["appendonly no"] if persistence == "off" else [
        "appendonly yes", f"appendfsync {persistence}", "aof-use-rdb-preamble yes"]  # fmt: skip
    lines = [
        f"bind {bind}",
        f"port {port}",
        "protected-mode yes",
        f'requirepass "{password}"',
        f"maxmemory {maxmemory_mb}mb",
        "maxmemory-policy noeviction",
        'save ""',
        *aof,
        f'dir "{folder}"',
        "loglevel warning",
    ]
    return "\n".join(lines) + "\n"


def launch_data_dir(folder: Path, password: str, persistence: str) -> Path:
    """``folder`` as Redis's data folder (0700): kept when it holds this launch's data (a
    restart), emptied otherwise (a new launch, or nothing to keep)."""
    marker = hashlib.sha256(password.encode()).hexdigest()
    mine = folder / LAUNCH_MARKER
    try:
        keep = persistence != "off" and mine.read_text(encoding="ascii").strip() == marker
    except OSError:
        keep = False
    if not keep:
        _empty(folder)
        mine.write_text(marker + "\n", encoding="ascii")
    os.chmod(folder, 0o700)
    return folder


def _empty(folder: Path, keep: Path | None = None) -> None:
    """``folder`` made (0700) or emptied, but for ``keep``."""
    folder.mkdir(parents=True, mode=0o700, exist_ok=True)
    for entry in folder.iterdir():
        if entry == keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def write_config(
    port: int, password: str, maxmemory_mb: int, persistence: str = DEFAULT_PERSISTENCE,
    bind: str = "127.0.0.1", data_dir: Path | None = None,
) -> Path:  # fmt: skip
    """The config file in a private folder (0700, made afresh), itself 0600; the data in
    ``data_dir`` (default: ``data`` beside the config), kept across restarts of one launch."""
    folder = private_dir("redis", str(port))
    data = data_dir or folder / "data"
    _empty(folder, keep=data)
    os.chmod(folder, 0o700)
    launch_data_dir(data, password, persistence)
    path = folder / "redis.conf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(config_text(port, password, maxmemory_mb, data, persistence, bind))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m targets.jobqueue.redis_server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maxmemory-mb", type=int, required=True)
    parser.add_argument("--persistence", choices=PERSISTENCE, default=DEFAULT_PERSISTENCE)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--data-dir", type=Path, default=None)
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
    config = write_config(args.port, password, args.maxmemory_mb, args.persistence, args.bind,
                          args.data_dir)  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    os.execve(binary, [binary, str(config)], env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
