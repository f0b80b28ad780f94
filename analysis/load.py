"""Read a results folder into tidy frames (the only I/O in ``analysis``).

Layout written by ``servecap run``::

    <run>/summary.json  meta.json  scenario.yaml
    <run>/<target>/requests.parquet   per-request records (requests-*.csv parts while running)
    <run>/<target>/resources.parquet  resource samples (resources.csv while running)
    <run>/<target>/timeline.json      stage boundaries
    <run>/<target>/locust_*.csv       Locust's own statistics
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from loadtests.collectors import SAMPLE_COLUMNS
from loadtests.recorder import COLUMNS as REQUEST_COLUMNS

_REQUEST_DTYPES = {
    "ts": float, "latency_ms": float, "status": int, "bytes": int, "users": int,
    "service_ms": float, "lag_ms": float, "client_ms": float,
}  # fmt: skip


def read_requests(target_dir: Path) -> pd.DataFrame:
    """Per-request records of one target run, finished (Parquet) or partial (CSV parts)."""
    parquet = target_dir / "requests.parquet"
    if parquet.exists():
        return pd.read_parquet(parquet)
    # Parts are being written while a run goes: skip empty ones and a half-written last line.
    parts = [p for p in sorted(target_dir.glob("requests-*.csv")) if p.stat().st_size > 0]
    frames = [_read_part(p) for p in parts]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=_REQUEST_DTYPES.get(c, object))
                             for c in REQUEST_COLUMNS})  # fmt: skip
    return pd.concat(frames, ignore_index=True).sort_values("ts", ignore_index=True)


def _read_part(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, keep_default_na=False, on_bad_lines="skip")
    frame = frame[frame["outcome"].isin(("ok", "error", "rejected"))]  # drops a cut last line
    for col, dtype in _REQUEST_DTYPES.items():
        if col in frame:
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
            if dtype is int:
                frame[col] = frame[col].fillna(0).astype(int)
    return frame.dropna(subset=["ts", "latency_ms"])


SAMPLE_FILES = ("resources.csv", "resources-docker.csv", "resources-gpu.csv")
"""psutil (target processes, generator, host), Docker stats API (target containers; extra
net/blk/mem-limit columns), NVML (GPUs; extra gpu_* columns): SAMPLE_COLUMNS first in each."""


def read_samples(target_dir: Path) -> pd.DataFrame:
    parquet = target_dir / "resources.parquet"
    if parquet.exists():
        return pd.read_parquet(parquet)
    paths = [target_dir / name for name in SAMPLE_FILES]
    frames = [pd.read_csv(p) for p in paths if p.exists() and p.stat().st_size > 0]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in SAMPLE_COLUMNS})
    frame = pd.concat(frames, ignore_index=True, sort=False).sort_values("ts", ignore_index=True)
    for col in ("cpu_pct", "mem_mb", "pss_mb"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def read_timeline(target_dir: Path) -> list[dict[str, Any]] | None:
    path = target_dir / "timeline.json"
    if not path.exists():
        return None
    data: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return data


def read_summary(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a servecap results folder?")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data
