"""Model-load pattern: the launcher fetches a verified SavedModel archive once for a target."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

import targets.common.model_fetch as model_fetch
from targets.common.model_fetch import (
    PARTIAL_PREFIX,
    ModelFetchError,
    _HttpsOnlyRedirects,
    fetch_model,
    model_root,
)
from targets.launch_types import LaunchError
from targets.launchers.base import with_fetched_model
from targets.registry import target_config
from tests.fakes import serving


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def archive(tmp_path: Path, tiny_model: Path) -> Path:
    path = tmp_path / "model.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tiny_model, arcname="cifar10_cnn")
    return path


def test_fetch_verify_unpack_and_cache(archive: Path, tmp_path: Path) -> None:
    digest = sha256_of(archive)
    first = fetch_model(archive.as_uri(), digest, tmp_path / "cache")
    assert first.name == digest and list(first.rglob("saved_model.pb"))
    mtime = first.stat().st_mtime
    again = fetch_model(archive.as_uri(), digest, tmp_path / "cache")
    assert again == first and again.stat().st_mtime == mtime  # cached: no second download
    root = model_root(first)  # descends into the archive's single cifar10_cnn/ folder
    assert root.name == "cifar10_cnn" and (root / "1" / "saved_model.pb").exists()
    modes = {p.stat().st_mode & 0o777 for p in first.rglob("*")}
    assert modes <= {0o755, 0o644}  # readable by the containers' user


def test_a_wrong_digest_is_refused_and_nothing_is_kept(archive: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFetchError, match="SHA-256 is .* expected 0+"):
        fetch_model(archive.as_uri(), "0" * 64, tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["0" * 64 + ".lock"]


def test_download_and_unpacked_sizes_are_capped(archive: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFetchError, match="larger than 1000 bytes"):
        fetch_model(archive.as_uri(), sha256_of(archive), tmp_path / "c1", max_bytes=1000)
    bomb = tmp_path / "bomb.tar.gz"  # 50 MB of zeros compress to ~50 KB
    with tarfile.open(bomb, "w:gz") as tar:
        info = tarfile.TarInfo("m/1/saved_model.pb")
        info.size = 50 * 2**20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert bomb.stat().st_size < 1 * 2**20
    with pytest.raises(ModelFetchError, match="more than the cap"):
        fetch_model(bomb.as_uri(), sha256_of(bomb), tmp_path / "c2", max_bytes=2**20)


def test_only_files_inside_the_folder_are_unpacked(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ModelFetchError, match="not a usable"):
        fetch_model(evil.as_uri(), sha256_of(evil), tmp_path / "cache")
    assert not (tmp_path / "outside.txt").exists()


def test_redirects_never_leave_https() -> None:
    handler = _HttpsOnlyRedirects()
    req = urllib.request.Request("https://models.example/m.tgz")
    with pytest.raises(ModelFetchError, match="only https is followed"):
        handler.redirect_request(req, io.BytesIO(), 302, "Found", Message(),
                                 "http://models.example/m.tgz")  # fmt: skip
    ok = handler.redirect_request(req, io.BytesIO(), 302, "Found", Message(),
                                  "https://cdn.example/m.tgz")  # fmt: skip
    assert ok is not None and ok.full_url == "https://cdn.example/m.tgz"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model_url": "http://models.example/m.tgz", "model_sha256": "a" * 64}, "https"),
        ({"model_url": "ftp://models.example/m.tgz", "model_sha256": "a" * 64}, "https"),
        ({"model_url": "https://models.example/m.tgz"}, "model_sha256"),
        ({"model_url": "https://m.example/m.tgz", "model_sha256": "xyz"}, "model_sha256"),
    ],
)
def test_config_refuses_unsafe_model_urls(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        target_config(kind="fastapi", **fields)
    for kind in ("jobqueue", "triton", "tfserving", "django-to-flask"):  # every model kind
        with pytest.raises(ValidationError, match=message):
            target_config(kind=kind, **fields)


def test_the_launcher_fetches_once_for_every_worker(archive: Path) -> None:
    config = target_config(kind="jobqueue", model_url=archive.as_uri(),
                           model_sha256=sha256_of(archive), model_path="/nonexistent")  # fmt: skip
    fetched = with_fetched_model("jq", config)
    assert fetched.model_url is None  # type: ignore[attr-defined]
    served = Path(fetched.model_path)  # type: ignore[attr-defined]
    assert (served / "1" / "saved_model.pb").exists()
    assert str(served).startswith(os.path.realpath(os.sep + "tmp"))  # the private cache
    bad = config.model_copy(update={"model_sha256": "1" * 64})
    with pytest.raises(LaunchError, match="target 'jq': .*SHA-256"):
        with_fetched_model("jq", bad)


def test_concurrent_fetches_of_one_model_take_turns(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two launches fetch one digest at once: one downloads, the other waits and serves the
    same folder (before, both downloaded and the second replaced the first's folder)."""
    real = model_fetch._download
    downloads: list[str] = []

    def slow_download(url: str, path: Path, max_bytes: int, deadline: float) -> str:
        downloads.append(url)
        time.sleep(0.3)  # both fetches are under way meanwhile
        return real(url, path, max_bytes, deadline)

    monkeypatch.setattr(model_fetch, "_download", slow_download)
    digest = sha256_of(archive)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(
        fetch_model(archive.as_uri(), digest, tmp_path / "cache"))) for _ in range(2)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(downloads) == 1 and len(results) == 2 and results[0] == results[1]
    assert list(results[0].rglob("saved_model.pb"))
    assert not list((tmp_path / "cache").glob(f"{PARTIAL_PREFIX}*"))


class _Drip(http.server.BaseHTTPRequestHandler):
    """A server that sends a large archive one byte every 50 ms: never idle, never done."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(10**9))
        self.end_headers()
        with contextlib.suppress(OSError):
            while True:
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def drip_url() -> Iterator[str]:
    with serving(_Drip) as base:
        yield f"{base}/model.tar.gz"


def test_a_server_that_drips_cannot_stall_a_launch(drip_url: str, tmp_path: Path) -> None:
    """Each read gets a byte (so no read ever times out): only the overall deadline ends it.
    (https only in configs: the download itself is what a slow server holds up.)"""
    start = time.monotonic()
    with pytest.raises(ModelFetchError, match="did not finish in time"):
        model_fetch._download(drip_url, tmp_path / "m.tar.gz", 2**30, time.monotonic() + 1.0)
    assert time.monotonic() - start < 10


KILLABLE_FETCH = """
import sys, time
import targets.common.model_fetch as f
real = f._download
def slow(url, path, max_bytes, deadline):
    path.write_bytes(b"part of an archive")
    print("downloading", flush=True)
    time.sleep(60)
f._download = slow
f.fetch_model(sys.argv[1], sys.argv[2], f.Path(sys.argv[3]))
"""


def test_a_killed_fetch_leaves_nothing_behind_once_the_next_one_runs(
    archive: Path, tmp_path: Path
) -> None:
    cache, digest = tmp_path / "cache", sha256_of(archive)
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE_FETCH, archive.as_uri(), digest,
                             str(cache)], stdout=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == b"downloading\n"
    assert len(list(cache.glob(f"{PARTIAL_PREFIX}*"))) == 1
    other = cache / f"{PARTIAL_PREFIX}{'e' * 64}-killed-too"  # another model's, killed as well
    other.mkdir()
    proc.send_signal(signal.SIGKILL)  # no cleanup of its own
    proc.wait(10)
    fetched = fetch_model(archive.as_uri(), digest, cache)
    assert list(fetched.rglob("saved_model.pb"))
    assert not list(cache.glob(f"{PARTIAL_PREFIX}*"))


@pytest.mark.integration
def test_a_target_serves_a_fetched_model(archive: Path, tmp_path: Path) -> None:
    from targets.common.payload import encode_request
    from targets.launchers.process import ProcessLauncher
    from targets.protocols import get_protocol
    from targets.registry import get_kind
    from tests.ports import free_port

    config = target_config(kind="fastapi", port=free_port(), workers=2, model_path="/nonexistent",
                           model_url=archive.as_uri(), model_sha256=sha256_of(archive))  # fmt: skip
    with ProcessLauncher(stop_grace_s=5).launch("f", config, tmp_path / "logs") as target:
        endpoint = get_kind("fastapi").endpoint(target.config)
        protocol = get_protocol(endpoint.protocol)
        body, ctype = encode_request(np.zeros((2, 32, 32, 3), np.uint8), "base64")
        answer = protocol.infer(endpoint, body, {"Content-Type": ctype})
    assert protocol.probabilities(answer, endpoint).shape == (2, 10)
