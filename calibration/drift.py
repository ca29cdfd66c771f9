"""Drift watch: does the confidence distribution of recent items still look like the calibration set's?

A recalibrator is only valid for the confidence distribution it was fitted on. When the model starts seeing
different inputs, its confidences shift, and a report that passed the gate can no longer be trusted. The
population stability index (PSI) and the two-sample Kolmogorov-Smirnov statistic measure that shift without
any labels; the calibrate flow marks a report stale when the PSI exceeds a limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from calibration._validation import as_confidence, check_n_bins
from calibration.errors import CalibrationInputError

__all__ = [
    "DEFAULT_MAX_PSI",
    "DEFAULT_MIN_DRIFT_SAMPLES",
    "DriftResult",
    "confidence_drift",
    "ks_statistic",
    "population_stability_index",
]

# Conventional reading of PSI: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 a real shift. Used until the
# routing policy grows its own limit.
DEFAULT_MAX_PSI = 0.25
# Below this many recent items the PSI is mostly sampling noise (about (bins - 1) (1/n_e + 1/n_a) on average).
DEFAULT_MIN_DRIFT_SAMPLES = 100
PROPORTION_FLOOR = 1e-4  # an empty bin counts as 0.01% so one missing bin gives a large, finite PSI


@dataclass(frozen=True)
class DriftResult:
    """The shift between the calibration set's confidences and recent ones; ``stale`` when ``psi > max_psi``.

    ``psi`` and ``ks`` are None when there were fewer than ``min_samples`` recent items to compare.
    """

    psi: float | None
    ks: float | None
    n_expected: int
    n_actual: int
    max_psi: float
    stale: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "psi": self.psi,
            "ks": self.ks,
            "n_expected": self.n_expected,
            "n_actual": self.n_actual,
            "max_psi": self.max_psi,
            "stale": self.stale,
        }


def _quantile_cuts(expected: np.ndarray, n_bins: int) -> np.ndarray:
    """Interior cut points at the deciles (for n_bins=10) of ``expected``; ties merge bins."""
    return np.unique(np.quantile(expected, np.linspace(0.0, 1.0, n_bins + 1)[1:-1]))


def _proportions(values: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(cuts, values, side="right"), minlength=cuts.shape[0] + 1)
    return np.maximum(counts / values.shape[0], PROPORTION_FLOOR)


def population_stability_index(expected: Any, actual: Any, *, n_bins: int = 10) -> float:
    """PSI = sum_b (a_b - e_b) ln(a_b / e_b).

    e_b and a_b are the fractions of ``expected`` (the reference, e.g. the calibration set's confidences)
    and of ``actual`` (recent confidences) in bin b. The bins are equal-mass over ``expected``: the cut
    points are its quantiles at 1/B, ..., (B-1)/B, a value on a cut goes to the bin on its right, and
    repeated cut points (ties) merge bins. Fractions are floored at 1e-4 so an empty bin gives a large but
    finite value. Every term is >= 0, so PSI >= 0, with 0 exactly when the binned fractions agree.
    """
    reference = as_confidence(expected, name="expected")
    recent = as_confidence(actual, name="actual")
    cuts = _quantile_cuts(reference, check_n_bins(n_bins))
    e, a = _proportions(reference, cuts), _proportions(recent, cuts)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_statistic(expected: Any, actual: Any) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: sup_x |F_expected(x) - F_actual(x)| of the empirical CDFs."""
    reference = np.sort(as_confidence(expected, name="expected"))
    recent = np.sort(as_confidence(actual, name="actual"))
    points = np.concatenate([reference, recent])
    cdf_reference = np.searchsorted(reference, points, side="right") / reference.shape[0]
    cdf_recent = np.searchsorted(recent, points, side="right") / recent.shape[0]
    return float(np.max(np.abs(cdf_reference - cdf_recent)))


def confidence_drift(
    expected: Any,
    actual: Any,
    *,
    max_psi: float = DEFAULT_MAX_PSI,
    n_bins: int = 10,
    min_samples: int = DEFAULT_MIN_DRIFT_SAMPLES,
) -> DriftResult:
    """PSI and KS of ``actual`` against ``expected``; stale when PSI > ``max_psi``.

    With fewer than ``min_samples`` recent confidences there is no evidence either way: nothing is measured
    and the result is not stale (the calibration gate and the report's age still apply).
    """
    reference = as_confidence(expected, name="expected")
    if not (isinstance(max_psi, (int, float)) and max_psi >= 0):
        raise CalibrationInputError(f"max_psi must be a number >= 0, got {max_psi!r}")
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
        raise CalibrationInputError(f"min_samples must be an integer >= 1, got {min_samples!r}")
    recent = np.asarray(actual, dtype=float)
    if recent.size < min_samples:
        return DriftResult(None, None, reference.shape[0], int(recent.size), float(max_psi), stale=False)
    psi = population_stability_index(reference, recent, n_bins=n_bins)
    ks = ks_statistic(reference, recent)
    return DriftResult(psi, ks, reference.shape[0], int(recent.size), float(max_psi), stale=psi > max_psi)
