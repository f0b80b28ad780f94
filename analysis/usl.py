"""The Universal Scalability Law fitted to throughput against concurrency.

``X(N) = lambda N / (1 + sigma (N - 1) + kappa N (N - 1))`` fitted with bounded least squares;
``N* = sqrt((1 - sigma) / kappa)`` is the concurrency of peak throughput ``X_max = X(N*)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeWarning, curve_fit

from analysis.stages import json_safe
from analysis.tables import StagesLike, curve

USL_MIN_R2 = 0.9
USL_PARAMETERS = 3
USL_MIN_POINTS = 5
"""Distinct concurrency levels the USL is fitted to, at least. Its 3 parameters pass through
any 3 points (R^2 = 1 whatever the system does) and nearly through 4, so a fit to so few
tests nothing; 5 levels leave 2 beyond the parameters for the R^2 to mean something."""


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

    Not fitted (every parameter NaN, ``poor_fit`` set, ``reason`` saying why) with fewer than
    ``min_points`` distinct concurrencies; ``poor_fit`` is also set when the fit fails or
    R^2 < ``min_r2``. Points with a non-finite or non-positive value are dropped.
    """
    n = np.asarray(users, dtype=float)
    x = np.asarray(throughput, dtype=float)
    keep = np.isfinite(n) & np.isfinite(x) & (n > 0) & (x >= 0)
    n, x = n[keep], x[keep]
    nan = math.nan
    distinct = len(np.unique(n))
    if distinct < min_points:
        return UslFit(nan, nan, nan, nan, nan, nan, len(n), True,
                      f"not fitted: {distinct} distinct concurrency level(s); its "
                      f"{USL_PARAMETERS} parameters fit so few exactly, which tests nothing "
                      f"(at least {min_points} levels)")  # fmt: skip
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
    if distinct <= len(params) + 1:  # only with a min_points below the default
        reasons.append(f"only {distinct} levels for {len(params)} parameters: indicative only")
    if math.isfinite(n_star) and n_star > 2 * float(n.max()):
        reasons.append(f"N* ({n_star:.0f}) is far beyond the measured {n.max():.0f} users")
    return UslFit(lam, sigma, kappa, r2, n_star, x_max, len(n), r2 < min_r2,
                  "; ".join(reasons) or "good fit")  # fmt: skip


def fit_usl_stages(stages: StagesLike) -> UslFit:
    """:func:`fit_usl` of throughput vs concurrency (users; measured in open loop)."""
    points = curve(stages)
    return fit_usl(points["concurrency"].astype(float), points["throughput"].astype(float))
