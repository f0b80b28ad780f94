"""Little's law as a check of closed-loop stages: ``users = rps x (mean latency + think)``.

A ratio off by more than 20% means the users spent time the latency does not show (a
saturated generator, client overhead, an unaccounted think time) or the figures mix outcomes
(errors are fast).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.defaults import DEFAULT_MAX_ERROR_RATE, GENERATOR_CPU_LIMIT_PCT
from analysis.tables import StagesLike, as_float

LITTLES_LAW_TOLERANCE = 0.2


def littles_law_check(
    stages: StagesLike,
    think_time_s: float = 0.0,
    tolerance: float = LITTLES_LAW_TOLERANCE,
    generator_limit_pct: float = GENERATOR_CPU_LIMIT_PCT,
) -> pd.DataFrame:
    """Per stage: is ``users ~ rps x (mean latency + think time)``? Flags what is suspect.

    Columns: ``expected_users`` (the right-hand side), ``ratio`` (expected / users),
    ``deviates`` (|ratio - 1| > tolerance), ``generator_saturated`` (generator CPU above
    ``generator_limit_pct``), ``suspect`` (either) and ``note`` (why). Identifying columns
    (source, target, stage) are kept when present. Meant for closed-loop stages.
    """
    frame = stages.copy() if isinstance(stages, pd.DataFrame) else pd.DataFrame(list(stages))
    for col in ("users", "rps", "mean_ms", "generator_cpu_pct", "error_rate", "reject_rate"):
        frame[col] = pd.to_numeric(frame.get(col, np.nan), errors="coerce").astype(float)
    keep = [c for c in ("source", "target", "stage", "index") if c in frame]
    out = frame[keep].copy()
    out["users"] = frame["users"]
    out["rps"] = frame["rps"]
    out["mean_ms"] = frame["mean_ms"]
    out["think_time_s"] = float(think_time_s)
    # A closed-loop user's cycle also holds the generator's own time around each request
    # (client_ms, kept out of the latency): without it fast targets would look suspect.
    client_ms = pd.to_numeric(frame.get("client_overhead_p50_ms", 0.0), errors="coerce")
    cycle_ms = frame["mean_ms"] + (client_ms.fillna(0.0) if isinstance(client_ms, pd.Series)
                                   else 0.0)  # fmt: skip
    out["expected_users"] = frame["rps"] * (cycle_ms / 1000.0 + think_time_s)
    out["ratio"] = out["expected_users"] / frame["users"].where(frame["users"] > 0)
    out["deviates"] = (out["ratio"] - 1.0).abs() > tolerance
    out["generator_cpu_pct"] = frame["generator_cpu_pct"]
    out["generator_saturated"] = frame["generator_cpu_pct"] > generator_limit_pct
    if "generator_ok" in frame:  # the run's own verdict (per generator process, lateness)
        flagged = frame["generator_ok"].map(lambda v: v is False or v == 0)
        out["generator_saturated"] = out["generator_saturated"] | flagged.astype(bool)
    out["suspect"] = out["deviates"] | out["generator_saturated"]
    notes = []
    for (_, o), (_, f) in zip(out.iterrows(), frame.iterrows(), strict=True):
        note = []
        issues = f.get("generator_issues")
        if isinstance(issues, list | tuple) and issues:
            note.append("generator: " + "; ".join(map(str, issues)))
        elif o["generator_saturated"]:
            note.append(f"generator CPU {o['generator_cpu_pct']:.0f}% > {generator_limit_pct:.0f}%")
        if o["deviates"]:
            if o["ratio"] < 1:
                note.append(
                    f"only {o['expected_users']:.2f} of {o['users']:.0f} users busy: time spent "
                    "outside the measured latency (generator saturated, client overhead, think "
                    "time not accounted for)"
                )
            else:
                note.append(
                    f"{o['expected_users']:.2f} in flight for {o['users']:.0f} users: more than "
                    "the users can hold (wrong think time, or mixed outcomes)"
                )
            failed = as_float(f["error_rate"]) + as_float(f["reject_rate"])
            if failed > DEFAULT_MAX_ERROR_RATE:
                note.append(f"{failed:.1%} errors/rejections: the mean covers ok requests only")
        elif not o["users"] > 0:
            note.append("open loop (no users): not applicable")
        elif pd.isna(o["ratio"]):
            note.append("no data")
        notes.append("; ".join(note))
    out["note"] = notes
    return out.reset_index(drop=True)
