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
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from targets.common.loopback import checked_port
from targets.common.tmp import private_dir

DOWNLOAD_TIMEOUT_S = 300
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
    url: str, sha256: str, cache: Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> Path:
    """The unpacked model folder of the archive at ``url`` whose SHA-256 is ``sha256``:
    downloaded, verified and unpacked the first time, from the cache after."""
    problem = check_url(url)
    if problem is not None:
        raise ModelFetchError(problem)
    digest = sha256.lower()
    root = cache or cache_root()
    dest = root / digest
    if dest.is_dir() and any(dest.rglob("saved_model.pb")):
        return dest
    root.mkdir(parents=True, mode=0o711, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        archive = Path(tmp) / "model.tar.gz"
        got = _download(url, archive, max_bytes)
        if got != digest:
            raise ModelFetchError(
                f"{url}: SHA-256 is {got}, expected {digest} (model_sha256): refusing to use it"
            )
        unpacked = Path(tmp) / "model"
        try:
            with tarfile.open(archive, "r:*") as tar:
                safe_extract(tar, unpacked, max_bytes)
        except (tarfile.TarError, OSError) as err:
            raise ModelFetchError(f"{url} is not a usable .tar.gz archive: {err}") from None
        if not any(unpacked.rglob("saved_model.pb")):
            raise ModelFetchError(f"{url} holds no saved_model.pb (expected a SavedModel archive)")
        _readable_by_all(unpacked)  # containers (another uid) read it through the 0711 root
        shutil.rmtree(dest, ignore_errors=True)
        unpacked.rename(dest)
    return dest


def _download(url: str, path: Path, max_bytes: int) -> str:
    """Copy ``url`` to ``path``, at most ``max_bytes``; returns the SHA-256 of what came."""
    digest = hashlib.sha256()
    size = 0
    try:
        with _opener().open(url, timeout=DOWNLOAD_TIMEOUT_S) as resp, path.open("wb") as out:
            while chunk := resp.read(CHUNK_BYTES):
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
