"""What-if curves: what each candidate auto-accept threshold would do to automation, error and reviewer load."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from calibration.intervals import clopper_pearson

__all__ = ["DEFAULT_WHATIF_THRESHOLDS", "WhatIfCurve", "what_if"]

DEFAULT_WHATIF_THRESHOLDS = np.round(np.linspace(0.0, 1.0, 101), 2)
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True, eq=False)
class WhatIfCurve:
    """One entry per candidate threshold (ascending); an item is auto-accepted when its confidence >= threshold.

    ``expected_error`` is the mean of ``1 - calibrated`` among auto-accepted items (NaN where none are),
    ``empirical_error`` the error among labelled auto-accepted items with its exact (Clopper-Pearson) two-sided
    interval at ``interval_confidence`` (NaN / [0, 1] where none are labelled). ``review_volume`` is the items
    per cycle a person looks at: every item below the threshold plus the spot-checked share above it.
    """

    thresholds: np.ndarray
    automation_rate: np.ndarray
    n_auto: np.ndarray
    expected_error: np.ndarray
    n_labelled_auto: np.ndarray
    empirical_error: np.ndarray
    empirical_error_lower: np.ndarray
    empirical_error_upper: np.ndarray
    review_volume: np.ndarray
    reviewer_hours: np.ndarray
    n_items: int
    interval_confidence: float


def _as_unit_array(
    name: str, values: Any, n_items: int | None = None, *, allow_nan: bool = False
) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be numeric, got {values!r}") from error
    if array.ndim != 1 or (n_items is not None and array.shape[0] != n_items):
        expected = "1-D" if n_items is None else f"shape ({n_items},)"
        raise ValueError(f"length mismatch: {name} has shape {array.shape}, expected {expected}")
    checked = array[~np.isnan(array)] if allow_nan else array
    bad = ~((checked >= 0.0) & (checked <= 1.0))
    if bad.any():
        raise ValueError(
            f"{name} must be in [0, 1]; {int(bad.sum())} bad values, e.g. {checked[bad][:5].tolist()}"
        )
    return array


def _as_correct(correct: Any, n_items: int) -> np.ndarray:
    """Correctness as floats: 1.0 right, 0.0 wrong, NaN unlabelled."""
    array = _as_unit_array("correct", np.asarray(correct, dtype=float), n_items, allow_nan=True)
    labelled = array[~np.isnan(array)]
    if not np.isin(labelled, (0.0, 1.0)).all():
        raise ValueError(
            f"correct must be 0/1 (or NaN for unlabelled), got {np.unique(labelled)[:5].tolist()}"
        )
    return array


def _count_at_or_above(sorted_scores: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return sorted_scores.shape[0] - np.searchsorted(sorted_scores, grid, side="left")


def _sum_at_or_above(sorted_scores: np.ndarray, sorted_weights: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Sum of the weights of items at or above each threshold, from a prefix sum over the ascending scores."""
    prefix = np.concatenate([[0.0], np.cumsum(sorted_weights)])
    return prefix[-1] - prefix[np.searchsorted(sorted_scores, grid, side="left")]


def _expected_error_sums(
    scores: np.ndarray, sorted_scores: np.ndarray, calibrated: Any, grid: np.ndarray
) -> np.ndarray:
    if calibrated is None:  # the confidence is the calibrated probability of being right
        return _sum_at_or_above(sorted_scores, 1.0 - sorted_scores, grid)
    probability_right = _as_unit_array("calibrated", calibrated, scores.shape[0])
    order = np.argsort(scores)
    return _sum_at_or_above(scores[order], 1.0 - probability_right[order], grid)


def what_if(
    confidence: Any,
    correct: Any = None,
    *,
    thresholds: Any = None,
    calibrated: Any = None,
    items_per_cycle: float,
    seconds_per_item: float,
    spot_check_rate: float = 0.0,
    interval_confidence: float = 0.95,
) -> WhatIfCurve:
    """The what-if curve of ``confidence`` (the calibrated confidence the threshold acts on) over ``thresholds``
    (default: 0.00, 0.01, ..., 1.00).

    ``calibrated`` is the calibrated probability of being right used for the expected error (default:
    ``confidence`` itself); ``correct`` holds 0/1 labels, NaN for unlabelled items, and gives the empirical error.
    Rates are shares of this batch, scaled to ``items_per_cycle``. Sorted scores (all, labelled, wrong) and one
    prefix sum give every count and sum at every threshold by bisection: O(n log n + k log n).
    """
    scores = _as_unit_array("confidence", confidence)
    n_items = scores.shape[0]
    if n_items == 0:
        raise ValueError("confidence is empty: a what-if curve needs at least one scored item")
    if not (items_per_cycle >= 0 and seconds_per_item > 0 and 0.0 <= spot_check_rate <= 1.0):
        raise ValueError(
            f"need items_per_cycle >= 0, seconds_per_item > 0 and spot_check_rate in [0, 1], got {items_per_cycle!r}, "
            f"{seconds_per_item!r}, {spot_check_rate!r}"
        )
    grid = np.unique(
        _as_unit_array("thresholds", DEFAULT_WHATIF_THRESHOLDS if thresholds is None else thresholds)
    )
    sorted_scores = np.sort(scores)
    n_auto = _count_at_or_above(sorted_scores, grid)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected_error = _expected_error_sums(scores, sorted_scores, calibrated, grid) / n_auto
    labelled_counts, errors = _labelled_counts(scores, correct, grid)
    with np.errstate(invalid="ignore", divide="ignore"):
        empirical_error = errors / labelled_counts
    lower, upper = clopper_pearson(errors, labelled_counts.astype(float), confidence=interval_confidence)
    automation_rate = n_auto / n_items
    review_volume = items_per_cycle * ((1.0 - automation_rate) + automation_rate * spot_check_rate)
    return WhatIfCurve(
        thresholds=grid,
        automation_rate=automation_rate,
        n_auto=n_auto,
        expected_error=expected_error,
        n_labelled_auto=labelled_counts,
        empirical_error=empirical_error,
        empirical_error_lower=lower,
        empirical_error_upper=upper,
        review_volume=review_volume,
        reviewer_hours=review_volume * seconds_per_item / SECONDS_PER_HOUR,
        n_items=n_items,
        interval_confidence=interval_confidence,
    )


def _labelled_counts(scores: np.ndarray, correct: Any, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labelled items, wrong items) at or above each threshold; zeros without labels."""
    if correct is None:
        return np.zeros(grid.shape[0], dtype=np.int64), np.zeros(grid.shape[0])
    flags = np.asarray(correct)
    if flags.dtype == bool and flags.shape == scores.shape:  # every item labelled
        labelled, wrong = np.ones(scores.shape[0], dtype=bool), ~flags
    else:
        right = _as_correct(flags, scores.shape[0])
        labelled, wrong = ~np.isnan(right), right == 0.0
    labelled_scores = np.sort(scores[labelled]) if not labelled.all() else np.sort(scores)
    return _count_at_or_above(labelled_scores, grid), _count_at_or_above(np.sort(scores[wrong]), grid).astype(
        float
    )
