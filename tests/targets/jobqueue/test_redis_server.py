"""The job queue's Redis: its config (persistence knob), and an append-only file that brings
every acknowledged write back after a SIGKILL within one launch, and nothing into the next."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from targets.jobqueue.redis_server import PASSWORD_ENV, config_text, launch_data_dir
from tests.ports import free_port
from tests.targets.jobqueue.helpers import wait_for_redis

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server is not installed (make setup)")  # fmt: skip


def test_the_append_only_file_is_on_by_default_and_the_knob_turns_it_off(tmp_path: Path) -> None:
    on = config_text(6379, "pw", 64, tmp_path).splitlines()
    assert {"appendonly yes", "appendfsync everysec", 'save ""', "bind 127.0.0.1"} <= set(on)
    always = config_text(6379, "pw", 64, tmp_path, persistence="always").splitlines()
    assert "appendfsync always" in always
    off = config_text(6379, "pw", 64, tmp_path, persistence="off").splitlines()
    assert "appendonly no" in off and not any(line.startswith("appendfsync") for line in off)
    with pytest.raises(ValueError, match="persistence must be one of"):
        config_text(6379, "pw", 64, tmp_path, persistence="sometimes")


def test_the_data_of_a_launch_is_kept_for_its_restarts_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    launch_data_dir(data, "first", "everysec")
    (data / "appendonly.aof").write_text("jobs")
    launch_data_dir(data, "first", "everysec")  # a restart: same launch, same password
    assert (data / "appendonly.aof").read_text() == "jobs"
    assert "first" not in (data / "servecap-launch").read_text()  # a hash, not the password
    launch_data_dir(data, "second", "everysec")  # the next launch starts empty
    assert not (data / "appendonly.aof").exists()
    (data / "appendonly.aof").write_text("jobs")
    launch_data_dir(data, "second", "off")  # nothing is kept without persistence
    assert not (data / "appendonly.aof").exists()
    assert oct(data.stat().st_mode & 0o777) == "0o700"


@pytest.fixture
def port() -> Iterator[int]:
    yield free_port()


def start(port: int, password: str, persistence: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "targets.jobqueue.redis_server", "--port", str(port),
         "--maxmemory-mb", "16", "--persistence", persistence],
        env={**os.environ, PASSWORD_ENV: password}, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_redis(proc, port, password)
    return proc


def test_a_killed_redis_comes_back_with_every_acknowledged_write(port: int) -> None:
    password = os.urandom(8).hex()
    proc = start(port, password, "everysec")
    try:
        redis.Redis(port=port, password=password).rpush("queue", *range(100))
        proc.kill()  # SIGKILL right after the reply: no shutdown, no final fsync
        proc.wait(5)
        proc = start(port, password, "everysec")  # restarted within its launch
        assert redis.Redis(port=port, password=password).llen("queue") == 100
    finally:
        proc.kill()
        proc.wait(5)
