"""Binomial intervals, once: Wilson's score interval and the exact Clopper-Pearson bounds.

Everything in Sluice that puts an interval on a rate (a reliability bin's accuracy, an audited error, the what-if
curve, a certified threshold's bound, the console's figures) calls these two, so the same counts always give the
same interval. Arrays in, arrays out, element-wise; a rate over zero trials has no interval (NaN for Wilson, the
vacuous [0, 1] for Clopper-Pearson, which bounds must fail closed on).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import beta as beta_distribution
from scipy.stats import norm

__all__ = ["clopper_pearson", "clopper_pearson_upper", "wilson_interval", "wilson_width", "z_for"]


def z_for(confidence: float) -> float:
    """The two-sided normal quantile of a ``confidence`` level (1.96 for 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(norm.ppf(0.5 + confidence / 2.0))


def wilson_interval(successes: Any, trials: Any, *, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of ``successes`` in ``trials`` at a two-sided ``confidence``; NaN where ``trials`` is 0.

    ``trials`` may be fractional (an effective sample size). The lower end is exactly 0 at 0 successes and the
    upper exactly 1 at ``trials`` successes, not a rounding residue.
    """
    z = z_for(confidence)
    k = np.asarray(successes, dtype=float)
    n = np.where(np.asarray(trials, dtype=float) > 0, np.asarray(trials, dtype=float), np.nan)
    p = k / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denominator
    half = z * np.sqrt(np.maximum(p * (1.0 - p), 0.0) / n + z2 / (4.0 * n * n)) / denominator
    low = np.where(k <= 0, 0.0, np.clip(centre - half, 0.0, 1.0))
    high = np.where(k >= n, 1.0, np.clip(centre + half, 0.0, 1.0))
    nan = np.isnan(n)
    return np.where(nan, np.nan, low), np.where(nan, np.nan, high)


def wilson_width(rate: float, trials: float, *, confidence: float = 0.95) -> float:
    """Width of the Wilson interval of an observed ``rate`` over ``trials`` (inf with no trials)."""
    if trials <= 0:
        return float("inf")
    low, high = wilson_interval(rate * trials, trials, confidence=confidence)
    return float(high - low)


def clopper_pearson_upper(errors: Any, n: Any, *, delta: float) -> np.ndarray:
    """Exact one-sided upper bound (level ``delta``) on a binomial rate with ``errors`` of ``n``; 1.0 where
    ``errors == n`` or ``n == 0``."""
    errors, n = np.asarray(errors, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = beta_distribution.ppf(1.0 - delta, errors + 1.0, n - errors)
    return np.where((n > 0) & (errors < n), bound, 1.0)


def clopper_pearson(errors: Any, n: Any, *, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact two-sided Clopper-Pearson interval at ``confidence``; [0, 1] where ``n`` is 0."""
    errors, n = np.asarray(errors, dtype=float), np.asarray(n, dtype=float)
    tail = (1.0 - confidence) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = np.where((errors > 0) & (n > 0), beta_distribution.ppf(tail, errors, n - errors + 1.0), 0.0)
    upper = clopper_pearson_upper(errors, n, delta=tail)
    return np.nan_to_num(lower, nan=0.0), np.nan_to_num(upper, nan=1.0)
