"""Read a results folder into tidy frames (the only I/O in ``analysis``).

The layout and columns are the results contract (:mod:`analysis.contract`). Readers accept a
finished run (Parquet) and one still going or interrupted (the CSV parts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from analysis.contract import (
    OUTCOMES,
    REQUEST_COLUMNS,
    REQUEST_PARTS,
    REQUESTS_FILE,
    RESOURCES_FILE,
    SAMPLE_COLUMNS,
    SAMPLE_PARTS,
    SERVER_METRICS_COLUMNS,
    SERVER_METRICS_FILE,
    SERVER_METRICS_PART,
    SUMMARY_FILE,
    TIMELINE_FILE,
    read_json,
)

_NUMERIC = {c: t for c, t in REQUEST_COLUMNS.items() if t != "object"}


def empty_requests() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in REQUEST_COLUMNS.items()})


def read_requests(target_dir: Path) -> pd.DataFrame:
    """Per-request records of one target run, finished (Parquet) or partial (CSV parts)."""
    parquet = target_dir / REQUESTS_FILE
    if parquet.exists():
        return pd.read_parquet(parquet)
    # Parts are being written while a run goes: skip empty ones and a half-written last line.
    parts = [p for p in sorted(target_dir.glob(REQUEST_PARTS)) if p.stat().st_size > 0]
    frames = [_read_part(p) for p in parts]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return empty_requests()
    return pd.concat(frames, ignore_index=True).sort_values("ts", ignore_index=True)


def _read_part(path: Path) -> pd.DataFrame:
    text = {c: str for c, t in REQUEST_COLUMNS.items() if t == "object"}  # "1" stays a version
    frame = pd.read_csv(path, keep_default_na=False, on_bad_lines="skip", dtype=text)
    frame = frame[frame["outcome"].isin(OUTCOMES)]  # drops a cut last line
    for col, dtype in _NUMERIC.items():
        if col in frame:
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
            if dtype == "int64":
                frame[col] = frame[col].fillna(0).astype(int)
    return frame.dropna(subset=["ts", "latency_ms"])


SAMPLE_FILES = SAMPLE_PARTS


def read_samples(target_dir: Path) -> pd.DataFrame:
    parquet = target_dir / RESOURCES_FILE
    if parquet.exists():
        return pd.read_parquet(parquet)
    paths = [target_dir / name for name in SAMPLE_PARTS]
    frames = [pd.read_csv(p) for p in paths if p.exists() and p.stat().st_size > 0]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in SAMPLE_COLUMNS})
    frame = pd.concat(frames, ignore_index=True, sort=False).sort_values("ts", ignore_index=True)
    for col in ("cpu_pct", "mem_mb", "pss_mb"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def read_server_metrics(target_dir: Path) -> pd.DataFrame:
    """The target's scraped metrics (finished Parquet or the CSV part); empty when none."""
    parquet = target_dir / SERVER_METRICS_FILE
    if parquet.exists():
        return pd.read_parquet(parquet)
    part = target_dir / SERVER_METRICS_PART
    if part.exists() and part.stat().st_size > 0:
        frame = pd.read_csv(part, on_bad_lines="skip")
        return frame.apply(pd.to_numeric, errors="coerce").dropna(subset=["ts"])
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in SERVER_METRICS_COLUMNS.items()})


def read_timeline(target_dir: Path) -> list[dict[str, Any]] | None:
    path = target_dir / TIMELINE_FILE
    if not path.exists():
        return None
    data: list[dict[str, Any]] = read_json(path)
    return data


def read_summary(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / SUMMARY_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a servecap results folder?")
    data: dict[str, Any] = read_json(path)
    return data
