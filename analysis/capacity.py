"""Capacity model: from per-stage statistics to "how much load can one replica take".

Pure functions: ``summary.json`` dicts, stage lists or DataFrames in; numbers, small
dataclasses and tables out. No plotting, no file I/O. Conventions used throughout:

* **throughput** is ``goodput_rps`` (successful requests per second of the steady window),
  falling back to ``rps`` when a summary has no goodput; a replica is "what one target
  runs" (all its workers), so per-replica figures are the target's figures divided by
  ``replicas`` (1 unless given);
* capacity curves take the stages **in order of users** (ties by stage index), so a ramp
  that goes up and down still gives one curve; stages with no measured request are skipped;
* **max RPS under the SLO** (:func:`max_rps_under_slo`): a stage *meets* the SLO when its
  p99 is at most ``slo_p99_ms`` and its error and reject rates are at most their limits.
  Between the last stage meeting it and the first breaking it, each broken criterion is
  linearly interpolated against throughput and the lowest crossing wins. When no stage
  breaks it, the p99 line through the last two stages is extrapolated, flagged as such, and
  the value to size with (``capacity_rps``) stays the highest measured throughput: sizing
  never relies on an extrapolation;
* **knee** (:func:`find_knee`): Kneedle (Satopaa et al., 2011) on the p99-vs-throughput
  curve: both axes are normalised to [0, 1] and the knee is the stage where
  ``x_norm - y_norm`` is largest, i.e. the point furthest below the chord of a convex
  (hockey-stick) curve: the last stage before latency starts rising faster than
  throughput. A straight line scores 0, so a knee needs a score of at least ``min_score``.
  The per-step elasticity ``dln(p99) / dln(throughput)`` is returned as evidence (above 1:
  p99 grows faster than throughput);
* **Universal Scalability Law** (:func:`fit_usl`):
  ``X(N) = lambda N / (1 + sigma (N - 1) + kappa N (N - 1))`` fitted to throughput vs users
  with bounded least squares; ``N* = sqrt((1 - sigma) / kappa)`` is the concurrency of peak
  throughput ``X_max = X(N*)``;
* **Little's law** (:func:`littles_law_check`): a closed-loop stage should hold
  ``users = rps x (mean latency + think time)``; a ratio off by more than 20% means the
  users spent time the latency does not show (a saturated generator, client overhead, an
  unaccounted think time) or the figures mix outcomes (errors are fast).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeWarning, curve_fit

from analysis.stages import json_safe

DEFAULT_SLO_P99_MS = 500.0
"""SLO used for a run's capacity section when the scenario sets none."""
DEFAULT_MAX_ERROR_RATE = 0.01
DEFAULT_MAX_REJECT_RATE = 0.01
GENERATOR_SATURATED_PCT = 90.0
"""A load generator above this CPU % (100 = one core; Locust uses one) may not keep up."""
LITTLES_LAW_TOLERANCE = 0.2
USL_MIN_R2 = 0.9
USL_MIN_POINTS = 3
KNEE_MIN_SCORE = 0.1

STAGE_COLUMNS = (
    "index", "users", "duration_s", "window_s", "requests", "measured_requests", "ok",
    "errors", "rejected", "rps", "goodput_rps", "error_rate", "reject_rate", "mean_ms",
    "max_ms", "bytes_per_request", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "cpu_pct",
    "cpu_max_pct", "mem_mb", "mem_max_mb", "pss_mb", "resource_samples", "generator_cpu_pct",
    "host_cpu_pct", "littles_law_users",
)  # fmt: skip
"""Stage fields copied into :func:`stage_table` (missing ones become NaN)."""
STAGE_FLAGS = ("generator_ok", "generator_issues")
"""Stage fields kept as they are (set by ``analysis.stages.flag_generator``)."""
RUN_COLUMNS = ("source", "scenario", "target", "kind", "launcher", "status", "request_name")
BY_NAME_FIELDS = (
    "measured_requests", "ok", "errors", "rejected", "rps", "goodput_rps", "error_rate",
    "reject_rate", "mean_ms", "max_ms", "bytes_per_request", "p50_ms", "p90_ms", "p95_ms",
    "p99_ms",
)  # fmt: skip

StagesLike: TypeAlias = pd.DataFrame | Sequence[Mapping[str, Any]]


# --------------------------------------------------------------------------- per-stage figures


def cpu_seconds_per_request(cpu_pct: float | pd.Series, rps: float | pd.Series) -> Any:
    """CPU-seconds one request costs: ``cpu_pct / 100 / rps`` (NaN where rps is 0)."""
    if isinstance(cpu_pct, pd.Series) or isinstance(rps, pd.Series):
        rate = pd.Series(rps, dtype=float)
        return (pd.Series(cpu_pct, dtype=float) / 100.0) / rate.where(rate > 0)
    if not rps or not math.isfinite(rps) or rps <= 0:
        return math.nan
    return float(cpu_pct) / 100.0 / float(rps)


def memory_per_replica(mem_mb: float | pd.Series, replicas: int = 1) -> Any:
    """Memory of one replica when ``mem_mb`` was measured over ``replicas`` of them."""
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    return mem_mb / replicas


def stage_table(
    summary: Mapping[str, Any],
    name: str | None = None,
    replicas: int = 1,
    source: str | None = None,
) -> pd.DataFrame:
    """One row per target x stage of a ``summary.json``, with derived per-replica columns.

    ``name`` picks a request type's figures from ``by_name`` (e.g. the job queue's end-to-end
    ``job``) where a stage has them. ``source`` (e.g. the results folder's name) is copied to
    a column so tables of several folders can be concatenated. Added columns: ``stage``
    (= index), ``throughput_rps`` (goodput, else rps), ``cpu_cores``, ``cpu_s_per_request``,
    ``cpu_ms_per_request``, ``mem_mb_per_replica``, ``replicas``.
    """
    rows: list[dict[str, Any]] = []
    for run in summary.get("runs", []):
        for stage in run.get("stages") or []:
            row: dict[str, Any] = {
                "source": source,
                "scenario": summary.get("scenario"),
                "target": run.get("target"),
                "kind": run.get("kind"),
                "launcher": run.get("launcher"),
                "status": run.get("status"),
                "request_name": None,
            }
            row.update({c: stage.get(c) for c in STAGE_COLUMNS})
            row.update({c: stage.get(c) for c in STAGE_FLAGS})
            by_name = stage.get("by_name") or {}
            if name is not None and name in by_name:
                row.update({c: by_name[name].get(c) for c in BY_NAME_FIELDS})
                row["request_name"] = name
            rows.append(row)
    frame = pd.DataFrame(rows, columns=[*RUN_COLUMNS, *STAGE_COLUMNS, *STAGE_FLAGS])
    numeric = [c for c in STAGE_COLUMNS if c not in ("index", "users")]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce").astype(float)
    frame["index"] = pd.to_numeric(frame["index"], errors="coerce").astype("Int64")
    frame["users"] = pd.to_numeric(frame["users"], errors="coerce").astype("Int64")
    frame.insert(len(RUN_COLUMNS), "stage", frame["index"])
    frame["throughput_rps"] = frame["goodput_rps"].fillna(frame["rps"])
    frame["cpu_cores"] = frame["cpu_pct"] / 100.0
    frame["cpu_s_per_request"] = cpu_seconds_per_request(frame["cpu_pct"], frame["rps"])
    frame["cpu_ms_per_request"] = frame["cpu_s_per_request"] * 1000.0
    frame["replicas"] = replicas
    frame["mem_mb_per_replica"] = memory_per_replica(frame["mem_mb"], replicas)
    return frame


def stage_tables(
    summaries: Mapping[str, Mapping[str, Any]], name: str | None = None
) -> pd.DataFrame:
    """:func:`stage_table` of several summaries keyed by source (folder name), concatenated."""
    frames = [stage_table(s, name=name, source=src) for src, s in summaries.items()]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return stage_table({"runs": []})
    return pd.concat(frames, ignore_index=True)


def slo_goodput(
    requests: pd.DataFrame,
    slo_ms: float,
    window_s: Mapping[int, float] | pd.Series | None = None,
    name: str | None = None,
) -> pd.DataFrame:
    """Per stage, how many requests met the latency SLO, from the raw records.

    ``requests`` is ``requests.parquet`` (needs ``stage``, ``outcome``, ``latency_ms``;
    ``in_window`` is honoured when present). ``window_s`` maps stage index to its steady
    window length (``{s["index"]: s["window_s"]}`` from summary.json) for the rate column.
    Columns: ``measured``, ``ok``, ``ok_within_slo``, ``share_of_ok`` (ok requests at or
    under the SLO / ok requests), ``share_of_all`` (/ every measured request, errors and
    rejections count as misses), ``slo_goodput_rps``.
    """
    if "stage" not in requests:
        raise ValueError("requests need a 'stage' column: label them (analysis.stages)")
    sel = requests
    if "in_window" in sel:
        sel = sel[sel["in_window"].astype(bool)]
    if name is not None and "name" in sel:
        sel = sel[sel["name"] == name]
    ok = sel["outcome"] == "ok"
    good = ok & (sel["latency_ms"] <= slo_ms)
    grouped = pd.DataFrame({"stage": sel["stage"], "ok": ok, "good": good}).groupby("stage")
    out = pd.DataFrame(
        {
            "measured": grouped.size(),
            "ok": grouped["ok"].sum(),
            "ok_within_slo": grouped["good"].sum(),
        }
    ).astype(int)
    out["share_of_ok"] = out["ok_within_slo"] / out["ok"].where(out["ok"] > 0)
    out["share_of_all"] = out["ok_within_slo"] / out["measured"].where(out["measured"] > 0)
    windows = pd.Series(dict(window_s) if window_s is not None else {}, dtype=float)
    out["window_s"] = windows.reindex(out.index).to_numpy(dtype=float)
    out["slo_goodput_rps"] = out["ok_within_slo"] / out["window_s"].where(out["window_s"] > 0)
    out.insert(0, "slo_ms", float(slo_ms))
    return out.reset_index()


def _curve(stages: StagesLike) -> pd.DataFrame:
    """Stages as a frame in capacity-curve order with ``throughput`` and ``concurrency``.

    Closed loop (users vary across stages): ordered by users, then index, and concurrency is
    the users. Otherwise (open-loop ``rate``, ``find-max`` and ``sequential`` runs, where
    users are 0 or constant): ordered by the offered rate (``rps``: every request sent or
    scheduled, so an overloaded stage whose goodput collapsed still sorts as the heavy load it
    was), and concurrency is the measured ``littles_law_users`` (throughput x mean latency).
    """
    frame = stages.copy() if isinstance(stages, pd.DataFrame) else pd.DataFrame(list(stages))
    for col in ("index", "users", "rps", "p99_ms", "error_rate", "reject_rate", "mean_ms",
                "littles_law_users"):  # fmt: skip
        if col not in frame:
            frame[col] = np.nan
    good = frame["goodput_rps"] if "goodput_rps" in frame else pd.Series(np.nan, frame.index)
    frame["throughput"] = pd.to_numeric(good, errors="coerce").fillna(
        pd.to_numeric(frame["rps"], errors="coerce")
    )
    if "measured_requests" in frame:
        measured = pd.to_numeric(frame["measured_requests"], errors="coerce")
        frame = frame[measured.fillna(0) > 0]
    for col in ("p99_ms", "error_rate", "reject_rate", "mean_ms", "rps", "littles_law_users"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    users = pd.to_numeric(frame["users"], errors="coerce")
    if users[users > 0].nunique() > 1:
        frame["concurrency"] = users.astype(float)
        frame = frame.sort_values(["users", "index"], kind="stable")
    else:
        frame["concurrency"] = frame["littles_law_users"]
        frame["offered"] = frame["rps"].fillna(frame["throughput"])
        frame = frame.sort_values(["offered", "index"], kind="stable").drop(columns="offered")
    return frame.reset_index(drop=True)


def _int(value: Any) -> int | None:
    try:
        return None if value is None or pd.isna(value) else int(value)
    except (TypeError, ValueError):
        return None


def _num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


# --------------------------------------------------------------------------- max RPS under SLO


@dataclass(frozen=True)
class MaxRps:
    """Max sustainable throughput per replica under an SLO, with the evidence used."""

    slo_p99_ms: float
    max_error_rate: float
    max_reject_rate: float
    max_rps: float | None
    """The estimate (may be an extrapolation: see ``method``); None when nothing meets it."""
    capacity_rps: float | None
    """The value to size with: ``max_rps`` unless extrapolated, then the measured lower bound."""
    method: str
    """interpolated (between the evidence stages) | saturated (throughput stopped growing: the
    peak that met the SLO) | extrapolated | lower_bound (nothing broke) | none | no_data"""
    limited_by: str | None
    """p99 | error_rate | reject_rate | throughput (saturated); None when nothing broke."""
    lower_stage: int | None
    """Index of the last stage meeting the SLO before the first break."""
    upper_stage: int | None
    """Index of the first stage breaking it."""
    evidence: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def extrapolated(self) -> bool:
        return self.method == "extrapolated"

    @property
    def evidence_stages(self) -> list[int]:
        return [s for s in (self.lower_stage, self.upper_stage) if s is not None]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["extrapolated"] = self.extrapolated
        out["evidence_stages"] = self.evidence_stages
        return dict(json_safe(out))


def _violations(row: pd.Series, slo: float, max_err: float, max_rej: float) -> list[str]:
    out = []
    if not (row["p99_ms"] <= slo):  # NaN (no successful request) breaks it too
        out.append("p99")
    if row["error_rate"] > max_err:
        out.append("error_rate")
    if row["reject_rate"] > max_rej:
        out.append("reject_rate")
    return out


_LIMIT_COLUMN = {"p99": "p99_ms", "error_rate": "error_rate", "reject_rate": "reject_rate"}


def max_rps_under_slo(
    stages: StagesLike,
    slo_p99_ms: float,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE,
) -> MaxRps:
    """Highest throughput meeting the p99 SLO and the error/reject limits (see module doc)."""
    if slo_p99_ms <= 0:
        raise ValueError(f"slo_p99_ms must be positive, got {slo_p99_ms}")
    curve = _curve(stages)
    limits = {"p99": slo_p99_ms, "error_rate": max_error_rate, "reject_rate": max_reject_rate}
    base: dict[str, Any] = {
        "slo_p99_ms": float(slo_p99_ms),
        "max_error_rate": float(max_error_rate),
        "max_reject_rate": float(max_reject_rate),
    }
    if curve.empty:
        return MaxRps(**base, max_rps=None, capacity_rps=None, method="no_data", limited_by=None,
                      lower_stage=None, upper_stage=None,
                      warnings=["no stage has measured requests"])  # fmt: skip
    broken = [
        _violations(r, slo_p99_ms, max_error_rate, max_reject_rate) for _, r in curve.iterrows()
    ]
    evidence = [
        {
            "index": _int(r["index"]),
            "users": _int(r["users"]),
            "throughput_rps": _num(r["throughput"]),
            "p99_ms": _num(r["p99_ms"]),
            "error_rate": _num(r["error_rate"]),
            "reject_rate": _num(r["reject_rate"]),
            "meets": not v,
            "violations": v,
        }
        for (_, r), v in zip(curve.iterrows(), broken, strict=True)
    ]
    warnings: list[str] = []
    first = next((i for i, v in enumerate(broken) if v), None)
    x = curve["throughput"].to_numpy(dtype=float)

    def describe(i: int) -> str:
        r = curve.iloc[i]
        return f"stage {_int(r['index'])} ({_int(r['users'])} users)"

    if first == 0:
        r = curve.iloc[0]
        warnings.append(
            f"no stage meets the SLO: already {describe(0)} breaks it on "
            f"{', '.join(broken[0])} (p99 {_num(r['p99_ms']):.1f} ms, errors "
            f"{_num(r['error_rate']):.1%}, rejected {_num(r['reject_rate']):.1%}); start the "
            "ramp lower or relax the SLO"
        )
        return MaxRps(**base, max_rps=None, capacity_rps=None, method="none",
                      limited_by=broken[0][0], lower_stage=None,
                      upper_stage=_int(r["index"]), evidence=evidence,
                      warnings=warnings)  # fmt: skip

    last_ok = (len(curve) if first is None else first) - 1
    lower = curve.iloc[last_ok]
    peak = int(np.nanargmax(x[: last_ok + 1]))
    bound = float(x[peak])
    peak_stage = _int(curve.iloc[peak]["index"])
    if first is None and peak < last_ok:
        # Every stage meets the SLO, but adding users stopped adding throughput.
        warnings.append(
            f"every stage meets the SLO but throughput peaked at {describe(peak)} "
            f"({bound:.1f} rps) and did not grow with more users: the replica saturates before "
            "the SLO is reached; capacity is that peak"
        )
        return MaxRps(**base, max_rps=bound, capacity_rps=bound, method="saturated",
                      limited_by="throughput", lower_stage=peak_stage, upper_stage=None,
                      evidence=evidence, warnings=warnings)  # fmt: skip
    if first is None:
        # Nothing broke and throughput still grew: the ramp stopped short of capacity.
        estimate, method = bound, "lower_bound"
        if len(curve) >= 2:
            prev = curve.iloc[last_ok - 1]
            dx = _num(lower["throughput"]) - _num(prev["throughput"])
            dy = _num(lower["p99_ms"]) - _num(prev["p99_ms"])
            if dx > 0 and dy > 0:
                slope = dy / dx
                estimate = _num(lower["throughput"]) + (slo_p99_ms - _num(lower["p99_ms"])) / slope
                method = "extrapolated"
        trend = f"; the p99 line through the last two stages reaches the SLO at {estimate:.1f} rps"
        warnings.append(
            "no stage breaks the SLO: the ramp stopped before capacity; sizing uses the highest "
            f"measured throughput meeting it ({bound:.1f} rps), a lower bound"
            f"{trend if method == 'extrapolated' else ''}: extend the ramp to measure it"
        )
        return MaxRps(**base, max_rps=estimate, capacity_rps=bound, method=method,
                      limited_by=None, lower_stage=_int(lower["index"]), upper_stage=None,
                      evidence=evidence, warnings=warnings)  # fmt: skip

    upper = curve.iloc[first]
    lower_stage = _int(lower["index"])
    x_lo, x_hi = _num(lower["throughput"]), _num(upper["throughput"])
    if not x_hi > x_lo:
        estimate, method, limited = bound, "saturated", "throughput"
        warnings.append(
            f"throughput did not grow from {describe(last_ok)} to {describe(first)} "
            f"({x_lo:.1f} -> {x_hi:.1f} rps) while it broke the SLO ({', '.join(broken[first])}): "
            "the replica saturated; capacity is the highest throughput that met the SLO"
        )
        lower_stage = peak_stage
    else:
        crossings: dict[str, float] = {}
        for crit in broken[first]:
            col = _LIMIT_COLUMN[crit]
            y_lo, y_hi = _num(lower[col]), _num(upper[col])
            if not math.isfinite(y_hi):  # no successful request left: p99 undefined
                continue
            crossings[crit] = x_lo + (limits[crit] - y_lo) * (x_hi - x_lo) / (y_hi - y_lo)
        if not crossings:  # only an undefined p99 broke it
            crossings["p99"] = x_lo
        limited = min(crossings, key=lambda k: crossings[k])
        estimate, method = crossings[limited], "interpolated"
        if bound > estimate:  # an earlier stage did better than the crossing
            estimate, method, limited, lower_stage = bound, "saturated", "throughput", peak_stage
            warnings.append(
                f"{describe(peak)} reached {bound:.1f} rps within the SLO, more than the "
                f"crossing before {describe(first)}: throughput fell as users were added"
            )
    later = [
        i for i in range(first + 1, len(curve)) if not broken[i] and x[i] > estimate
    ]  # fmt: skip
    if later:
        warnings.append(
            f"{describe(later[0])} meets the SLO again at {x[later[0]]:.1f} rps after "
            f"{describe(first)} broke it: noisy stages? the estimate uses the first break"
        )
    return MaxRps(**base, max_rps=estimate, capacity_rps=estimate, method=method,
                  limited_by=limited, lower_stage=lower_stage,
                  upper_stage=_int(upper["index"]), evidence=evidence,
                  warnings=warnings)  # fmt: skip


# --------------------------------------------------------------------------- knee


@dataclass(frozen=True)
class Knee:
    """The knee of the p99-vs-throughput curve (Kneedle), with the per-stage evidence."""

    found: bool
    index: int | None
    users: int | None
    throughput_rps: float | None
    p99_ms: float | None
    score: float | None
    """max(x_norm - y_norm): 0 for a straight line, towards 1 for a sharp hockey stick."""
    reason: str
    method: str = "kneedle"
    evidence: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(json_safe(asdict(self)))


def find_knee(
    stages: StagesLike, min_score: float = KNEE_MIN_SCORE, latency: str = "p99_ms"
) -> Knee:
    """Kneedle knee of latency (``p99_ms``) vs throughput; see the module docstring."""
    curve = _curve(stages)
    if latency not in curve:
        curve[latency] = np.nan
    curve = curve[np.isfinite(curve["throughput"]) & np.isfinite(curve[latency].astype(float))]
    none: dict[str, Any] = {"found": False, "index": None, "users": None,
                            "throughput_rps": None, "p99_ms": None, "score": None}  # fmt: skip
    if len(curve) < 3:
        return Knee(**none, reason=f"{len(curve)} usable stage(s): a knee needs at least 3")
    x = curve["throughput"].to_numpy(dtype=float)
    y = curve[latency].to_numpy(dtype=float)
    x_span, y_span = np.ptp(x), np.ptp(y)
    if x_span <= 0 or y_span <= 0:
        return Knee(**none, reason="throughput or latency does not vary across stages")
    xn, yn = (x - x.min()) / x_span, (y - y.min()) / y_span
    diff = xn - yn
    with np.errstate(divide="ignore", invalid="ignore"):
        dlx = np.diff(np.log(x))
        dly = np.diff(np.log(y))
        elasticity = np.where(dlx > 0, dly / dlx, np.where(dly > 0, np.inf, np.nan))
    evidence = [
        {
            "index": _int(r["index"]),
            "users": _int(r["users"]),
            "throughput_rps": float(x[i]),
            "p99_ms": float(y[i]),
            "x_norm": float(xn[i]),
            "y_norm": float(yn[i]),
            "difference": float(diff[i]),
            "elasticity_from_previous": float(elasticity[i - 1]) if i else math.nan,
        }
        for i, (_, r) in enumerate(curve.iterrows())
    ]
    k = int(np.argmax(diff))
    score = float(diff[k])
    row = curve.iloc[k]
    if score < min_score:
        return Knee(**{**none, "score": score}, evidence=evidence,
                    reason=f"no knee: the curve is not convex enough (score {score:.2f} < "
                           f"{min_score}); latency grows in step with throughput")  # fmt: skip
    return Knee(
        found=True,
        index=_int(row["index"]),
        users=_int(row["users"]),
        throughput_rps=float(x[k]),
        p99_ms=float(y[k]),
        score=score,
        reason=(
            f"stage {_int(row['index'])} ({_int(row['users'])} users, {x[k]:.1f} rps, "
            f"p99 {y[k]:.1f} ms) is furthest below the normalised chord (score {score:.2f}); "
            "beyond it p99 grows faster than throughput"
        ),
        evidence=evidence,
    )


# --------------------------------------------------------------------------- USL


def usl_throughput(n: Any, lam: float, sigma: float, kappa: float) -> Any:
    """Universal Scalability Law: ``lam N / (1 + sigma (N - 1) + kappa N (N - 1))``."""
    n = np.asarray(n, dtype=float)
    return lam * n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))


@dataclass(frozen=True)
class UslFit:
    """USL parameters, goodness of fit and the peak they imply."""

    lam: float
    """Throughput of one user without contention (rps)."""
    sigma: float
    """Contention (serial fraction), 0..1."""
    kappa: float
    """Coherency (crosstalk) penalty, >= 0; above 0 throughput peaks then falls."""
    r2: float
    n_star: float
    """Concurrency of peak throughput, sqrt((1 - sigma) / kappa); inf when kappa is 0."""
    x_max: float
    """Peak (kappa > 0) or asymptotic (lam / sigma) throughput; inf when both are 0."""
    n_points: int
    poor_fit: bool
    reason: str

    def predict(self, n: Any) -> Any:
        return usl_throughput(n, self.lam, self.sigma, self.kappa)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["lambda"] = out.pop("lam")
        return dict(json_safe(out))


def usl_peak(lam: float, sigma: float, kappa: float) -> tuple[float, float]:
    """``(N*, X_max)`` of USL parameters."""
    if kappa > 1e-12:
        n_star = math.sqrt(max(1.0 - sigma, 0.0) / kappa)
        n_star = max(n_star, 1.0)
        return n_star, float(usl_throughput(n_star, lam, sigma, kappa))
    if sigma > 1e-12:
        return math.inf, lam / sigma
    return math.inf, math.inf


def fit_usl(
    users: Sequence[float] | np.ndarray | pd.Series,
    throughput: Sequence[float] | np.ndarray | pd.Series,
    min_r2: float = USL_MIN_R2,
    min_points: int = USL_MIN_POINTS,
) -> UslFit:
    """Fit the USL to throughput vs concurrency (``scipy.optimize.curve_fit`` with bounds).

    ``poor_fit`` is set when there are fewer than ``min_points`` distinct concurrencies, the
    fit fails, or R^2 < ``min_r2``. Points with a non-finite or non-positive value are
    dropped.
    """
    n = np.asarray(users, dtype=float)
    x = np.asarray(throughput, dtype=float)
    keep = np.isfinite(n) & np.isfinite(x) & (n > 0) & (x >= 0)
    n, x = n[keep], x[keep]
    nan = math.nan
    distinct = len(np.unique(n))
    if distinct < min_points:
        return UslFit(nan, nan, nan, nan, nan, nan, len(n), True,
                      f"{distinct} distinct concurrency level(s): the USL fit needs at least "
                      f"{min_points}")  # fmt: skip
    lam0 = float(np.max(x / n))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)  # covariance: unused here
            params, _ = curve_fit(
                usl_throughput, n, x, p0=(max(lam0, 1e-9), 0.01, 1e-4),
                bounds=([0.0, 0.0, 0.0], [np.inf, 1.0, 1.0]), maxfev=20_000,
            )  # fmt: skip
    except (RuntimeError, ValueError) as err:
        return UslFit(nan, nan, nan, nan, nan, nan, len(n), True, f"USL fit failed: {err}")
    lam, sigma, kappa = (float(p) for p in params)
    residual = float(np.sum((x - usl_throughput(n, lam, sigma, kappa)) ** 2))
    total = float(np.sum((x - x.mean()) ** 2))
    r2 = 1.0 - residual / total if total > 0 else (1.0 if residual < 1e-12 else 0.0)
    n_star, x_max = usl_peak(lam, sigma, kappa)
    reasons = []
    if r2 < min_r2:
        reasons.append(f"poor fit: R^2 {r2:.3f} < {min_r2}")
    if distinct == len(params):
        reasons.append(f"only {distinct} levels for 3 parameters: indicative only")
    if math.isfinite(n_star) and n_star > 2 * float(n.max()):
        reasons.append(f"N* ({n_star:.0f}) is far beyond the measured {n.max():.0f} users")
    return UslFit(lam, sigma, kappa, r2, n_star, x_max, len(n), r2 < min_r2,
                  "; ".join(reasons) or "good fit")  # fmt: skip


def fit_usl_stages(stages: StagesLike) -> UslFit:
    """:func:`fit_usl` of throughput vs concurrency (users; measured in open loop)."""
    curve = _curve(stages)
    return fit_usl(curve["concurrency"].astype(float), curve["throughput"].astype(float))


# --------------------------------------------------------------------------- Little's law


def littles_law_check(
    stages: StagesLike,
    think_time_s: float = 0.0,
    tolerance: float = LITTLES_LAW_TOLERANCE,
    generator_limit_pct: float = GENERATOR_SATURATED_PCT,
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
            failed = _num(f["error_rate"]) + _num(f["reject_rate"])
            if failed > DEFAULT_MAX_ERROR_RATE:
                note.append(f"{failed:.1%} errors/rejections: the mean covers ok requests only")
        elif not o["users"] > 0:
            note.append("open loop (no users): not applicable")
        elif pd.isna(o["ratio"]):
            note.append("no data")
        notes.append("; ".join(note))
    out["note"] = notes
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------- a run's capacity


@dataclass(frozen=True)
class RunCapacity:
    """Everything the capacity model says about one run (one target)."""

    target: str | None
    kind: str | None
    status: str | None
    max_rps: MaxRps
    knee: Knee
    usl: UslFit
    littles_law: pd.DataFrame
    replicas: int
    cpu_cores: float
    """Per replica, at ``capacity_rps`` (interpolated between the evidence stages)."""
    cpu_s_per_request: float
    mem_mb: float
    """Per replica: the largest stage-mean RSS (memory barely depends on load; stage means
    rather than single-sample peaks, which one stray sample can double)."""
    pss_mb: float
    warnings: list[str]
    find_max: dict[str, Any] | None = None
    """The run's own find-max search result (``find-max`` mode), when it has one."""

    @property
    def capacity_rps(self) -> float | None:
        """Per replica: the measured capacity divided by the replicas it was measured over."""
        cap = self.max_rps.capacity_rps
        return None if cap is None else cap / self.replicas

    def to_dict(self) -> dict[str, Any]:
        """The ``capacity`` section of a run in summary.json (strict JSON, rounded)."""
        m = self.max_rps
        suspect = self.littles_law[self.littles_law["suspect"]]
        return dict(
            json_safe(
                {
                    "slo": {
                        "p99_ms": m.slo_p99_ms,
                        "max_error_rate": m.max_error_rate,
                        "max_reject_rate": m.max_reject_rate,
                    },
                    "throughput": "goodput_rps",
                    "max_rps": _round(m.max_rps),
                    "capacity_rps": _round(m.capacity_rps),
                    "method": m.method,
                    "extrapolated": m.extrapolated,
                    "limited_by": m.limited_by,
                    "evidence_stages": m.evidence_stages,
                    "knee": {
                        "found": self.knee.found,
                        "index": self.knee.index,
                        "users": self.knee.users,
                        "throughput_rps": _round(self.knee.throughput_rps),
                        "p99_ms": _round(self.knee.p99_ms),
                        "score": _round(self.knee.score),
                        "method": self.knee.method,
                    },
                    "usl": {
                        "lambda": _round(self.usl.lam),
                        "sigma": _round(self.usl.sigma, 5),
                        "kappa": _round(self.usl.kappa, 7),
                        "r2": _round(self.usl.r2, 4),
                        "n_star": _round(self.usl.n_star),
                        "x_max": _round(self.usl.x_max),
                        "poor_fit": self.usl.poor_fit,
                        "reason": self.usl.reason,
                    },
                    "per_replica": {
                        "replicas_measured": self.replicas,
                        "capacity_rps": _round(self.capacity_rps),
                        "cpu_cores": _round(self.cpu_cores),
                        "cpu_s_per_request": _round(self.cpu_s_per_request, 6),
                        "mem_mb": _round(self.mem_mb),
                        "pss_mb": _round(self.pss_mb),
                    },
                    "find_max": self.find_max,
                    "littles_law_suspect_stages": [
                        _int(v) for v in suspect.get("index", suspect.get("stage", []))
                    ],
                    "warnings": self.warnings,
                }
            )
        )


def _max(frame: pd.DataFrame, column: str) -> float:
    if column not in frame:
        return math.nan
    values = pd.to_numeric(frame[column], errors="coerce")
    return float(values.max()) if values.notna().any() else math.nan


def _round(value: float | None, digits: int = 3) -> float | None:
    if value is None or not math.isfinite(value):
        return value
    return round(float(value), digits)


def _at_capacity(curve: pd.DataFrame, m: MaxRps, column: str) -> float:
    """``column`` at the capacity: interpolated between the evidence stages, else the lower."""
    if m.capacity_rps is None or column not in curve or m.lower_stage is None:
        return math.nan
    by_index = curve.set_index("index")
    lo = by_index.loc[m.lower_stage]
    y_lo = _num(lo[column])
    if m.method == "interpolated" and m.upper_stage is not None:
        hi = by_index.loc[m.upper_stage]
        x_lo, x_hi, y_hi = _num(lo["throughput"]), _num(hi["throughput"]), _num(hi[column])
        if x_hi > x_lo and math.isfinite(y_hi) and math.isfinite(y_lo):
            return y_lo + (m.capacity_rps - x_lo) * (y_hi - y_lo) / (x_hi - x_lo)
    return y_lo


def _find_max_info(
    found: Mapping[str, Any] | None, m: MaxRps, warnings: list[str]
) -> dict[str, Any] | None:
    """The find-max result beside the stage-based estimate; warns when they disagree."""
    if not found:
        return None
    info = {k: found.get(k) for k in ("max_rps", "lowest_failing_rps", "slo_p99_ms", "complete")}
    same_slo = info["slo_p99_ms"] is not None and math.isclose(
        float(info["slo_p99_ms"]), m.slo_p99_ms
    )
    if same_slo and m.capacity_rps and info["max_rps"]:
        ratio = float(info["max_rps"]) / m.capacity_rps
        if abs(ratio - 1) > 0.25:
            warnings.append(
                f"find-max found {float(info['max_rps']):.1f} rps, the stages give "
                f"{m.capacity_rps:.1f} rps: more than 25% apart"
            )
    elif not same_slo:
        warnings.append(
            f"find-max searched against p99 {info['slo_p99_ms']} ms, not {m.slo_p99_ms:g} ms"
        )
    return info


def run_capacity(
    run: Mapping[str, Any],
    slo_p99_ms: float = DEFAULT_SLO_P99_MS,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE,
    think_time_s: float = 0.0,
    replicas: int = 1,
    name: str | None = None,
) -> RunCapacity:
    """The capacity model applied to one run of ``summary.json`` (see the module docstring)."""
    table = stage_table({"runs": [run]}, name=name, replicas=replicas)
    curve = _curve(table)
    m = max_rps_under_slo(curve, slo_p99_ms, max_error_rate, max_reject_rate)
    knee = find_knee(curve)
    usl = fit_usl_stages(curve)
    littles = littles_law_check(table, think_time_s)
    warnings = [*m.warnings]
    if run.get("status") not in (None, "ok"):
        warnings.insert(0, f"run status is {run.get('status')!r}: {run.get('error') or ''}".strip())
    cpu_pct = _at_capacity(curve, m, "cpu_pct")
    cpu_cores = memory_per_replica(cpu_pct / 100.0, replicas)
    if m.capacity_rps is not None and not math.isfinite(cpu_pct):
        warnings.append("no CPU samples at the capacity stages: CPU per replica unknown")
    mem = _max(curve, "mem_mb")
    pss = _max(curve, "pss_mb")
    if usl.poor_fit:
        warnings.append(f"USL: {usl.reason}")
    for _, row in littles[littles["suspect"]].iterrows():
        warnings.append(f"stage {_int(row.get('index'))}: Little's law check: {row['note']}")
    find_max = _find_max_info(run.get("find_max"), m, warnings)
    return RunCapacity(
        find_max=find_max,
        target=run.get("target"),
        kind=run.get("kind"),
        status=run.get("status"),
        max_rps=m,
        knee=knee,
        usl=usl,
        littles_law=littles,
        replicas=replicas,
        cpu_cores=float(cpu_cores),
        cpu_s_per_request=cpu_seconds_per_request(cpu_pct, m.capacity_rps or 0.0),
        mem_mb=float(memory_per_replica(mem, replicas)),
        pss_mb=float(memory_per_replica(pss, replicas)),
        warnings=warnings,
    )


def capacity_section(
    run: Mapping[str, Any],
    slo_p99_ms: float = DEFAULT_SLO_P99_MS,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE,
    think_time_s: float = 0.0,
    replicas: int = 1,
    name: str | None = None,
) -> dict[str, Any]:
    """The ``capacity`` section of one run in summary.json: JSON-safe, never raises on data."""
    return run_capacity(
        run, slo_p99_ms, max_error_rate, max_reject_rate, think_time_s, replicas, name
    ).to_dict()


# --------------------------------------------------------------------------- comparison


def _labels(table: pd.DataFrame) -> pd.Series:
    """``target``, or ``source/target`` when a target name appears in several sources."""
    if table.empty:
        return pd.Series(dtype=object)
    pairs = table[["source", "target"]].drop_duplicates()
    ambiguous = pairs["target"].duplicated(keep=False)
    dup = set(pairs.loc[ambiguous, "target"])
    return table.apply(
        lambda r: f"{r['source']}/{r['target']}" if r["target"] in dup else str(r["target"]),
        axis=1,
    )


def label_runs(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (from :func:`stage_table(s) <stage_tables>`) with a unique ``label`` column."""
    out = table.copy()
    out["label"] = _labels(out) if not out.empty else pd.Series(dtype=object)
    return out


def common_users(table: pd.DataFrame) -> int | None:
    """The highest user count every run of ``table`` measured (None when there is none)."""
    if table.empty:
        return None
    sets = [
        set(g["users"].dropna().astype(int))
        for _, g in table.groupby(["source", "target"], dropna=False)
    ]
    shared = set.intersection(*sets) if sets else set()
    return max(shared) if shared else None


def run_records(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """A stage table back to summary-like runs, keyed by the run's unique ``label``."""
    labelled = table if "label" in table else label_runs(table)
    runs: dict[str, dict[str, Any]] = {}
    for label, g in labelled.groupby("label", sort=False):
        first = g.iloc[0]
        stages = g[[c for c in (*STAGE_COLUMNS, *STAGE_FLAGS) if c in g]].astype(object)
        stages = stages.where(stages.notna(), None)
        runs[str(label)] = {
            "target": first["target"],
            "kind": first["kind"],
            "status": first["status"],
            "source": first["source"],
            "scenario": first["scenario"],
            "stages": stages.to_dict("records"),
        }
    return runs


def capacities(
    table: pd.DataFrame,
    slo_p99_ms: float = DEFAULT_SLO_P99_MS,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE,
    think_time_s: float = 0.0,
) -> dict[str, RunCapacity]:
    """:func:`run_capacity` of every run of a stage table, keyed by its ``label``."""
    return {
        label: run_capacity(run, slo_p99_ms, max_error_rate, max_reject_rate, think_time_s)
        for label, run in run_records(table).items()
    }


def compare_runs(
    table: pd.DataFrame,
    slo_p99_ms: float = DEFAULT_SLO_P99_MS,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE,
    at_users: int | None = None,
) -> pd.DataFrame:
    """One row per run (source x target) for an architecture comparison.

    ``table`` comes from :func:`stage_table` / :func:`stage_tables`. Columns: ``label``,
    ``kind``, capacity figures under the SLO, and the figures of the stage with ``at_users``
    users (default: :func:`common_users`, the highest load every run measured):
    ``rps_at_users``, ``p99_at_users_ms``, ``cpu_ms_per_request``; ``mem_mb`` is the largest
    stage-mean RSS.
    """
    columns = ["label", "source", "scenario", "target", "kind", "status", "max_rps",
               "capacity_rps", "method", "knee_rps", "usl_x_max", "usl_poor_fit", "at_users",
               "rps_at_users", "p99_at_users_ms", "cpu_ms_per_request", "cpu_cores_at_capacity",
               "mem_mb", "pss_mb"]  # fmt: skip
    if table.empty:
        return pd.DataFrame(columns=columns)
    labelled = label_runs(table)
    users = at_users if at_users is not None else common_users(labelled)
    caps = capacities(labelled, slo_p99_ms, max_error_rate, max_reject_rate)
    rows = []
    for label, g in labelled.groupby("label", sort=False):
        cap = caps[str(label)]
        at = g[g["users"] == users].sort_values("index").tail(1) if users is not None else g[:0]
        first = g.iloc[0]

        def at_value(col: str, at: pd.DataFrame = at) -> float:
            return _num(at[col].iloc[0]) if len(at) else math.nan

        rows.append(
            {
                "label": label, "source": first["source"], "scenario": first["scenario"],
                "target": first["target"], "kind": first["kind"], "status": first["status"],
                "max_rps": cap.max_rps.max_rps, "capacity_rps": cap.capacity_rps,
                "method": cap.max_rps.method, "knee_rps": cap.knee.throughput_rps,
                "usl_x_max": cap.usl.x_max, "usl_poor_fit": cap.usl.poor_fit, "at_users": users,
                "rps_at_users": at_value("throughput_rps"),
                "p99_at_users_ms": at_value("p99_ms"),
                "cpu_ms_per_request": at_value("cpu_ms_per_request"),
                "cpu_cores_at_capacity": cap.cpu_cores, "mem_mb": cap.mem_mb,
                "pss_mb": cap.pss_mb,
            }
        )  # fmt: skip
    out = pd.DataFrame(rows, columns=columns)
    for col in ("max_rps", "capacity_rps", "knee_rps", "usl_x_max"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    return out
