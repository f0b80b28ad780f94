"""The model-load release pattern: the launcher fetches the SavedModel archive from a URL.

The alternative, model-in-image, needs nothing here: the model is a path inside the image
(or a mounted volume). With ``model_url`` (and its ``model_sha256``) in a target's config, the
launcher downloads the ``.tar.gz`` once, checks its digest, unpacks it and starts the target on
the unpacked folder, as if it were ``model_path``: every worker, replica and container serves
the same verified files, and no server ever downloads anything. The fetch is part of the
target's measured time-to-ready (the cold start of this pattern).

Safety: only ``https://`` URLs (and ``file://`` for a local archive, explicitly), never a
redirect to anything but https; the archive must match its SHA-256; the download and the
unpacked files are capped at ``max_bytes`` each; only regular files and folders are unpacked,
all inside the destination. The cache is content-addressed (by digest) under the user's private
temporary folder (:mod:`targets.common.tmp`), where no one else can plant a folder; a verified
archive is unpacked once and reused.

Concurrency and failure: fetches of one digest take turns on a file lock (``<digest>.lock``,
``fcntl.flock``, released by the kernel when a fetcher dies), so a second launch waits for the
first and then serves its folder (before, each downloaded, and one replaced the folder the
other was serving). A fetch has an overall deadline (:data:`FETCH_DEADLINE_S`, the wait for the
lock included; each read also times out after :data:`READ_TIMEOUT_S`), so a server that drips
bytes cannot stall a launch for ever. Work in progress lives in ``.partial-<digest>-*``
folders: removed when the fetch ends, and, left by a fetch that was killed, by the next fetch
that finds no one holding their digest's lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from targets.common.loopback import checked_port
from targets.common.tmp import private_dir

FETCH_DEADLINE_S = 900.0
"""The longest a fetch may take, waiting for another fetch of the same model included."""
READ_TIMEOUT_S = 30.0
"""The longest one read from the server may wait (the deadline is checked between reads)."""
PARTIAL_PREFIX = ".partial-"
LOCK_POLL_S = 0.1
DEFAULT_MAX_BYTES = 2 * 1024**3
"""The largest archive downloaded, and the most bytes unpacked from it (2 GiB each)."""
ALLOWED_SCHEMES = ("https", "file")
CHUNK_BYTES = 1 << 20


class ModelFetchError(RuntimeError):
    """The model archive could not be downloaded, failed its checks, or is not a SavedModel."""


def check_url(url: str) -> str | None:
    """Why ``url`` may not be fetched (None when it may)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        return (
            f"model_url must be https:// (or file:// for a local archive), not {scheme or 'a'}"
            " URL: a plain-text download can be altered on the way"
        )
    try:
        checked_port(url, "model_url")
    except ValueError as err:
        return str(err)
    return None


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to https (never downgrade to http or switch to file/ftp)."""

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
        headers: Any, newurl: str,
    ) -> urllib.request.Request | None:  # fmt: skip
        if urlsplit(newurl).scheme.lower() != "https":
            raise ModelFetchError(f"{req.full_url} redirects to {newurl}: only https is followed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_HttpsOnlyRedirects())


def cache_root() -> Path:
    return private_dir("models")


def fetch_model(
    url: str, sha256: str, cache: Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
    deadline_s: float = FETCH_DEADLINE_S,
) -> Path:  # fmt: skip
    """The unpacked model folder of the archive at ``url`` whose SHA-256 is ``sha256``:
    downloaded, verified and unpacked the first time, from the cache after. ModelFetchError
    past ``deadline_s`` (waiting for another fetch of the same digest included)."""
    problem = check_url(url)
    if problem is not None:
        raise ModelFetchError(problem)
    deadline = time.monotonic() + deadline_s
    digest = sha256.lower()
    root = cache or cache_root()
    dest = root / digest
    if _complete(dest):
        return dest
    root.mkdir(parents=True, mode=0o711, exist_ok=True)
    with _digest_lock(root, digest, deadline, url):
        if _complete(dest):  # fetched by the one we waited for
            return dest
        sweep_partials(root, holding=digest)
        with tempfile.TemporaryDirectory(dir=root, prefix=f"{PARTIAL_PREFIX}{digest}-") as tmp:
            unpacked = _fetch_into(Path(tmp), url, digest, max_bytes, deadline)
            shutil.rmtree(dest, ignore_errors=True)  # only ever an incomplete one: see above
            unpacked.rename(dest)
    return dest


def _complete(dest: Path) -> bool:
    return dest.is_dir() and any(dest.rglob("saved_model.pb"))


def _fetch_into(tmp: Path, url: str, digest: str, max_bytes: int, deadline: float) -> Path:
    """Download, verify and unpack into ``tmp``; the unpacked folder."""
    archive = tmp / "model.tar.gz"
    got = _download(url, archive, max_bytes, deadline)
    if got != digest:
        raise ModelFetchError(
            f"{url}: SHA-256 is {got}, expected {digest} (model_sha256): refusing to use it"
        )
    unpacked = tmp / "model"
    try:
        with tarfile.open(archive, "r:*") as tar:
            safe_extract(tar, unpacked, max_bytes)
    except (tarfile.TarError, OSError) as err:
        raise ModelFetchError(f"{url} is not a usable .tar.gz archive: {err}") from None
    if not any(unpacked.rglob("saved_model.pb")):
        raise ModelFetchError(f"{url} holds no saved_model.pb (expected a SavedModel archive)")
    _readable_by_all(unpacked)  # containers (another uid) read it through the 0711 root
    return unpacked


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


@contextlib.contextmanager
def _digest_lock(root: Path, digest: str, deadline: float, url: str) -> Iterator[None]:
    """Hold the digest's lock (waiting for another fetch of it until ``deadline``)."""
    fd = os.open(root / f"{digest}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                raise ModelFetchError(f"{url}: another fetch of this model (sha256 {digest}) "
                                      "did not finish before the deadline")  # fmt: skip
            time.sleep(LOCK_POLL_S)
        yield
    finally:
        os.close(fd)  # releases the lock


def sweep_partials(root: Path, holding: str | None = None) -> list[Path]:
    """Remove the work folders of fetches that no longer run (killed): those of ``holding``
    (whose lock the caller holds) and of any digest whose lock is free. Returns them."""
    removed = []
    for folder in root.glob(f"{PARTIAL_PREFIX}*"):
        digest = folder.name[len(PARTIAL_PREFIX) :].partition("-")[0]
        if digest != holding:
            fd = os.open(root / f"{digest}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if not _try_lock(fd):
                    continue  # a live fetch of that digest owns it
            finally:
                os.close(fd)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _download(url: str, path: Path, max_bytes: int, deadline: float) -> str:
    """Copy ``url`` to ``path``, at most ``max_bytes``, by ``deadline`` (monotonic); returns
    the SHA-256 of what came."""
    digest = hashlib.sha256()
    size = 0
    try:
        timeout = max(0.1, min(READ_TIMEOUT_S, deadline - time.monotonic()))
        with _opener().open(url, timeout=timeout) as resp, path.open("wb") as out:
            read = getattr(resp, "read1", resp.read)  # what has come: the deadline between reads
            while chunk := read(CHUNK_BYTES):
                if time.monotonic() > deadline:
                    raise ModelFetchError(f"{url}: the download did not finish in time "
                                          f"({size} bytes so far)")  # fmt: skip
                size += len(chunk)
                if size > max_bytes:
                    raise ModelFetchError(f"{url}: archive larger than {max_bytes} bytes")
                digest.update(chunk)
                out.write(chunk)
    except ModelFetchError:
        raise
    except (OSError, ValueError) as err:
        raise ModelFetchError(f"cannot download the model from {url}: {err}") from None
    return digest.hexdigest()


def safe_extract(tar: tarfile.TarFile, dest: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Extract regular files and folders only, all inside ``dest``, at most ``max_bytes`` in
    all (tarfile's ``data`` filter where this Python has it; the same rules checked here on
    builds before 3.11.4, such as Debian's 3.11.2)."""
    members = tar.getmembers()
    total = sum(m.size for m in members if m.isfile())
    if total > max_bytes:
        raise tarfile.TarError(f"unpacks to {total} bytes, more than the cap of {max_bytes}")
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    root = dest.resolve()
    for member in members:
        target = (root / member.name).resolve()
        if not (member.isfile() or member.isdir()):
            raise tarfile.TarError(f"{member.name}: only files and folders are allowed")
        if member.name.startswith("/") or not target.is_relative_to(root):
            raise tarfile.TarError(f"{member.name}: outside the destination folder")
        member.mode = (member.mode | 0o600) & 0o755
    tar.extractall(dest, members=members)


def _readable_by_all(folder: Path) -> None:
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)


def model_root(path: Path) -> Path:
    """The folder to serve: a model base, a version dir, or the single folder inside an archive."""
    if (path / "saved_model.pb").exists() or any(p.name.isdigit() for p in path.iterdir()):
        return path
    children = [p for p in path.iterdir() if p.is_dir()]
    return model_root(children[0]) if len(children) == 1 else path
