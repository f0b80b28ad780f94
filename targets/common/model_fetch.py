"""The model-load release pattern: fetch the SavedModel archive from a URL when a server starts.

The alternative, model-in-image, needs nothing here: the model is a path inside the image
(or a mounted volume). With ``SERVECAP_MODEL_URL`` set, a server downloads a ``.tar.gz`` of
a model base (``<version>/saved_model.pb`` ...) or of one version directory, unpacks it
into a cache folder keyed by the URL, and serves from there. ``file://`` URLs work too.
The download's duration is part of the target's measured time-to-ready (cold start).
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

DOWNLOAD_TIMEOUT_S = 300


class ModelFetchError(RuntimeError):
    """The model archive could not be downloaded or is not a SavedModel archive."""


def fetch_model(url: str, cache_root: Path) -> Path:
    """Download and unpack ``url`` once; returns the unpacked model folder."""
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    dest = cache_root / key
    if dest.is_dir() and any(dest.rglob("saved_model.pb")):
        return dest
    cache_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_root) as tmp:
        archive = Path(tmp) / "model.tar.gz"
        try:
            with (
                urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp,
                archive.open("wb") as out,
            ):
                shutil.copyfileobj(resp, out)
        except (OSError, ValueError) as err:
            raise ModelFetchError(f"cannot download the model from {url}: {err}") from None
        unpacked = Path(tmp) / "model"
        try:
            with tarfile.open(archive, "r:*") as tar:
                safe_extract(tar, unpacked)
        except (tarfile.TarError, OSError) as err:
            raise ModelFetchError(f"{url} is not a readable .tar.gz archive: {err}") from None
        if not any(unpacked.rglob("saved_model.pb")):
            raise ModelFetchError(f"{url} holds no saved_model.pb (expected a SavedModel archive)")
        shutil.rmtree(dest, ignore_errors=True)
        unpacked.rename(dest)
    return dest


def safe_extract(tar: tarfile.TarFile, dest: Path) -> None:
    """Extract regular files and folders only, all inside ``dest`` (tarfile's ``data`` filter
    where this Python has it; the same rules checked here on builds before 3.11.4, such as
    Debian's 3.11.2)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    root = dest.resolve()
    members = tar.getmembers()
    for member in members:
        target = (root / member.name).resolve()
        if not (member.isfile() or member.isdir()):
            raise tarfile.TarError(f"{member.name}: only files and folders are allowed")
        if member.name.startswith("/") or not target.is_relative_to(root):
            raise tarfile.TarError(f"{member.name}: outside the destination folder")
        member.mode = (member.mode | 0o600) & 0o755
    tar.extractall(dest, members=members)


def model_root(path: Path) -> Path:
    """The folder to serve: a model base, a version dir, or the single folder inside an archive."""
    if (path / "saved_model.pb").exists() or any(p.name.isdigit() for p in path.iterdir()):
        return path
    children = [p for p in path.iterdir() if p.is_dir()]
    return model_root(children[0]) if len(children) == 1 else path
