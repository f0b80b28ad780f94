"""The disk cache of decoded image folders: decoding 50,000 JPEGs takes seconds, so a decoded
split is kept as an uncompressed ``.npz`` (see :mod:`targets.common.dataset` for its key)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from targets.common.dataset.folder import Listing, decode_files
from targets.inputs import CIFAR_INPUT, InputSpec

log = logging.getLogger(__name__)

NO_CACHE_ENV_VAR = "SERVECAP_NO_CACHE"
"""Set to ``1`` to neither read nor write the decoded-array cache."""
CACHE_ENV_VAR = "XDG_CACHE_HOME"
CACHE_FORMAT = 2
"""Bumped when what a cache file holds changes: older files are then misses."""


def cache_dir() -> Path:
    """Directory of the decoded-array cache: ``${XDG_CACHE_HOME:-~/.cache}/servecap``."""
    base = os.environ.get(CACHE_ENV_VAR, "")
    return (Path(base) if base else Path.home() / ".cache") / "servecap"


def cache_enabled() -> bool:
    return os.environ.get(NO_CACHE_ENV_VAR, "").strip().lower() not in {"1", "true", "yes", "on"}


def cache_paths(
    listing: Listing, spec: InputSpec = CIFAR_INPUT, resize: bool = False
) -> tuple[Path, str]:
    """(cache file for this listing, file-name prefix shared by older keys of same dir/split
    and the same input)."""
    how = json.dumps([str(listing.root), listing.split, list(spec.shape), spec.resize, resize,
                      list(listing.classes)])  # fmt: skip
    where = hashlib.sha256(how.encode()).hexdigest()[:12]
    key = json.dumps(
        [
            CACHE_FORMAT,
            how,
            len(listing.files),
            listing.newest_mtime_ns,
        ]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    prefix = f"cifar10-{listing.split}-{where}-"
    return cache_dir() / f"{prefix}{digest}.npz", prefix


def cache_load(
    listing: Listing, spec: InputSpec = CIFAR_INPUT, resize: bool = False
) -> np.ndarray | None:
    path, _ = cache_paths(listing, spec, resize)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            images = npz["images"]
            labels = npz["labels"]
            files = tuple(str(f) for f in npz["files"])
    except Exception as exc:  # a damaged cache is only a miss
        log.debug("ignoring unreadable cache %s: %s", path, exc)
        return None
    n = len(listing.files)
    if (
        images.shape != (n, *spec.shape)
        or images.dtype != np.uint8
        or files != listing.files
        or not np.array_equal(labels, listing.labels)
    ):
        log.debug("ignoring stale cache %s", path)
        return None
    return images


def cache_store(
    listing: Listing, images: np.ndarray, spec: InputSpec = CIFAR_INPUT, resize: bool = False
) -> None:
    path, prefix = cache_paths(listing, spec, resize)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=".tmp-", suffix=".npz", delete=False
        ) as tmp:
            np.savez(tmp, images=images, labels=listing.labels, files=np.asarray(listing.files))
        os.replace(tmp.name, path)
        for old in path.parent.glob(f"{prefix}*.npz"):
            if old != path:
                old.unlink(missing_ok=True)
        stale = time.time() - 3600  # leftovers of interrupted writes
        for tmp_file in path.parent.glob(".tmp-*.npz"):
            if tmp_file.stat().st_mtime < stale:
                tmp_file.unlink(missing_ok=True)
    except OSError as exc:  # caching is an optimisation; never fail the load for it
        log.debug("could not write cache %s: %s", path, exc)


def directory_images(
    listing: Listing, index: np.ndarray, spec: InputSpec = CIFAR_INPUT, resize: bool = False
) -> np.ndarray:
    if not cache_enabled():
        return decode_files(listing.root, [listing.files[i] for i in index], spec, resize)
    images = cache_load(listing, spec, resize)
    if images is None:
        images = decode_files(listing.root, listing.files, spec, resize)
        cache_store(listing, images, spec, resize)
    return images[index]
