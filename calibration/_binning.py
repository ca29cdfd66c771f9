"""Confidence binning shared by the metrics and the histogram recalibrator (netcal 1.4's edge rule)."""

from __future__ import annotations

import numpy as np

from calibration.errors import CalibrationInputError

STRATEGIES = ("uniform", "quantile")


def bin_edges(confidence: np.ndarray, *, n_bins: int, strategy: str) -> np.ndarray:
    """n_bins + 1 edges: equal width on [0, 1] ("uniform") or equal mass over the data ("quantile")."""
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    if strategy == "quantile":
        return np.quantile(confidence, np.linspace(0.0, 1.0, n_bins + 1))
    raise CalibrationInputError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")


def assign_bins(confidence: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each confidence.

    Bins are left-closed [e_i, e_{i+1}) and the last bin is closed on both sides, as netcal 1.4 gets
    from ``np.histogramdd`` / ``scipy.stats.binned_statistic_dd`` over ``np.linspace(0, 1, n_bins + 1)``: a
    confidence exactly on an interior edge belongs to the bin on its right, 1.0 to the last bin.
    """
    n_bins = edges.shape[0] - 1
    if np.array_equal(edges, np.linspace(0.0, 1.0, n_bins + 1)):
        return _assign_uniform_bins(confidence, edges)
    index = np.searchsorted(edges, confidence, side="right") - 1
    return np.clip(index, 0, n_bins - 1)


def _assign_uniform_bins(confidence: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``searchsorted`` on equal-width edges in O(1) per value: floor(c * B) is off by at most one bin where
    rounding puts c * B across an integer, so one comparison with each edge of the bin makes it exact.
    Confidences are already validated to lie in [0, 1], so the floor is never negative."""
    n_bins = edges.shape[0] - 1
    index = (confidence * n_bins).astype(np.intp)
    np.minimum(index, n_bins - 1, out=index)
    right_edges = np.append(edges[1:-1], np.inf)  # the last bin is closed: nothing lies right of it
    np.subtract(index, np.less(confidence, edges.take(index)), out=index, casting="unsafe")
    np.add(index, np.greater_equal(confidence, right_edges.take(index)), out=index, casting="unsafe")
    return index
