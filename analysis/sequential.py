"""The paper's sequential method: N requests one after another, repeated; mean total seconds."""

from __future__ import annotations

from typing import Any

import pandas as pd


def sequential_summary(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per N: repeats, mean/std/min/max total seconds and mean ms per request.

    ``runs`` are ``{"requests": N, "repeat": r, "total_s": seconds}`` rows.
    """
    if not runs:
        return []
    frame = pd.DataFrame(runs)
    out = []
    for n, group in frame.groupby("requests", sort=True):
        totals = group["total_s"]
        out.append(
            {
                "requests": int(n),
                "repeats": len(group),
                "mean_total_s": float(totals.mean()),
                "std_total_s": float(totals.std(ddof=1)) if len(group) > 1 else 0.0,
                "min_total_s": float(totals.min()),
                "max_total_s": float(totals.max()),
                "mean_ms_per_request": float(totals.mean() / int(n) * 1000),
            }
        )
    return out
