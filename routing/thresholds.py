"""Auto-accept thresholds with a finite-sample guarantee on the error rate among auto-accepted items.

The guarantee
-------------
``guaranteed_threshold(confidence, correct, alpha=a, delta=d)`` returns a threshold ``t`` such that, with
probability at least ``1 - d`` over the draw of the calibration data, the error rate among items whose confidence
is at least ``t`` is at most ``a``. The method is Learn-then-Test (Angelopoulos, Bates, Candès, Jordan, Lei, 2021)
with fixed-sequence testing: for candidate thresholds ``t_1 > t_2 > ...`` (a grid fixed before looking at the
errors) the null hypothesis "the error among items at or above ``t_j`` exceeds ``a``" is rejected when the exact
one-sided Clopper-Pearson upper bound at level ``d`` is ``<= a``. The sequence walks down from the highest candidate
and stops at the first hypothesis it cannot reject; the lowest rejected candidate is returned. Fixed-sequence
testing controls the family-wise error at ``d`` without any multiplicity correction, because a later hypothesis is
tested only if every earlier one was rejected.

Testing from the very top would stop at once: with zero errors in ``m`` items the bound reaches ``a`` only once
``m >= log(d) / log(1 - a)`` (45 items for a = 0.05, d = 0.1). So the sequence starts at the highest candidate with
at least ``min_count`` items at or above it; that choice looks at the confidences only, never the errors, so the
guarantee holds.

The assumption, and how drift breaks it
---------------------------------------
The guarantee is about items exchangeable with the calibration items: the same segment, model and calibrator, drawn
the same way as production traffic. Labels must therefore be unbiased (random audit share, gold, seed): labels
chosen by active learning over-represent hard items and certify nothing. When production drifts (new topics, a new
upstream model, a changed calibrator) the calibration items stop being exchangeable with what is routed and the
bound says nothing about the new traffic. The drift watch then marks the segment's calibration stale, the gate
fails, and the segment routes to review until a fresh threshold is derived on fresh labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibration.intervals import clopper_pearson_upper

__all__ = [
    "DEFAULT_GRID_SIZE",
    "ThresholdResult",
    "candidate_thresholds",
    "clopper_pearson_upper",
    "default_start_count",
    "fixed_sequence",
    "guaranteed_threshold",
    "minimum_count",
    "naive_threshold",
]

DEFAULT_GRID_SIZE = 1000


@dataclass(frozen=True)
class ThresholdResult:
    """A derived auto-accept threshold (None when no candidate meets the target) and its evidence.

    ``coverage`` is the share of calibration items at or above the threshold (0.0 when there is none),
    ``error_upper_bound`` the Clopper-Pearson bound at the threshold (None when there is none), ``tested`` how many
    candidate thresholds the fixed sequence tested (the last one failed unless the grid ran out), ``n_errors`` the
    wrong items among the ``n_accepted`` at the threshold. ``estimator`` names what tested each candidate
    (``clopper_pearson`` on uniform labels here; ``weighted`` or ``doubly_robust`` from ``routing.active_inference``,
    where ``n`` and ``n_accepted`` count routed items and ``n_labelled`` the labels at the threshold).
    """

    threshold: float | None
    coverage: float
    error_upper_bound: float | None
    n: int
    n_accepted: int
    tested: int
    alpha: float
    delta: float
    empirical_error: float | None = None
    n_errors: int = 0
    estimator: str = "clopper_pearson"
    n_labelled: int | None = None


def _as_confidence(confidence: Any) -> np.ndarray:
    try:
        values = np.asarray(confidence, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"confidence must be numeric, got {confidence!r}") from error
    if values.ndim != 1:
        raise ValueError(f"confidence must be 1-D, got shape {values.shape}")
    bad = ~((values >= 0.0) & (values <= 1.0))  # NaN fails both comparisons
    if bad.any():
        raise ValueError(
            f"confidence must be finite and in [0, 1]; {int(bad.sum())} bad values, e.g. {values[bad][:5].tolist()}"
        )
    return values


def _as_correct(correct: Any, n_items: int) -> np.ndarray:
    flags = np.asarray(correct)
    if flags.shape != (n_items,):
        raise ValueError(f"length mismatch: correct has shape {flags.shape}, expected ({n_items},)")
    if flags.dtype != bool and not np.isin(flags, (0, 1)).all():
        raise ValueError(f"correct must be booleans (or 0/1), got values {np.unique(flags)[:5].tolist()}")
    return flags.astype(bool)


def _check_level(name: str, value: float) -> float:
    if not (0.0 < value < 1.0):
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return float(value)


def minimum_count(*, alpha: float, delta: float) -> int:
    """The fewest items with zero errors whose Clopper-Pearson bound at level ``delta`` reaches ``alpha``."""
    alpha, delta = _check_level("alpha", alpha), _check_level("delta", delta)
    return max(1, math.ceil(math.log(delta) / math.log1p(-alpha) - 1e-12))


def _default_grid(sorted_confidence: np.ndarray, size: int) -> np.ndarray:
    """Quantiles of the confidence alone (never the errors), as observed values so counts are exact."""
    positions = np.unique(np.linspace(0, sorted_confidence.shape[0] - 1, size).round().astype(np.intp))
    return sorted_confidence[positions]


START_COUNT_FLOOR = 100


def default_start_count(*, alpha: float, delta: float) -> int:
    """Items that must lie above the first tested candidate: 2 x ``minimum_count`` and at least 100. The choice
    looks at counts only, never at errors, so it does not touch the guarantee; it only keeps one early error from
    ending the sequence at once."""
    return max(START_COUNT_FLOOR, 2 * minimum_count(alpha=alpha, delta=delta))


def candidate_thresholds(grid: Any, sorted_confidence: np.ndarray, grid_size: int) -> np.ndarray:
    """The candidate thresholds in the order the fixed sequence tests them (descending): ``grid`` when given, else
    ``grid_size`` quantiles of the ascending ``sorted_confidence`` (never the errors)."""
    if grid is None:
        candidates = _default_grid(sorted_confidence, grid_size)
    else:
        candidates = np.asarray(grid, dtype=float)
        if candidates.ndim != 1 or candidates.size == 0 or not np.isfinite(candidates).all():
            raise ValueError(f"grid must be a non-empty 1-D array of finite thresholds, got {grid!r}")
    return np.unique(candidates)[::-1]  # descending: the fixed sequence walks down


def fixed_sequence(passed: np.ndarray) -> tuple[int, int]:
    """(how many leading hypotheses were rejected, how many were tested) by a fixed-sequence walk over ``passed``
    (one flag per hypothesis, in test order): the walk stops at the first hypothesis it cannot reject."""
    n_passed = int(np.argmin(passed)) if not passed.all() else int(passed.shape[0])
    return n_passed, min(n_passed + 1, int(passed.shape[0]))


class _SortedScores:
    """Ascending confidences of all items and of the wrong ones: counts at or above any threshold by bisection."""

    def __init__(self, confidence: np.ndarray, correct: np.ndarray) -> None:
        self.all = np.sort(confidence)
        self.wrong = np.sort(confidence[~correct])

    def counts(self, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(items, errors) at or above each threshold."""
        accepted = self.all.shape[0] - np.searchsorted(self.all, thresholds, side="left")
        errors = self.wrong.shape[0] - np.searchsorted(self.wrong, thresholds, side="left")
        return accepted, errors


def guaranteed_threshold(
    confidence: Any,
    correct: Any,
    *,
    alpha: float,
    delta: float,
    grid: Any = None,
    min_count: int | None = None,
    grid_size: int = DEFAULT_GRID_SIZE,
) -> ThresholdResult:
    """The lowest candidate threshold certified by fixed-sequence Clopper-Pearson testing (see the module docstring).

    ``confidence`` holds calibrated confidences of unbiasedly labelled items and ``correct`` whether each model
    output was right. ``grid`` is a set of candidate thresholds fixed before looking at the errors; by default
    ``grid_size`` quantiles of the confidence. The sequence starts at the highest candidate with at least
    ``min_count`` items at or above it (default: ``default_start_count(alpha, delta)``, twice the bare minimum and
    at least 100: starting at the bare minimum, where a single error already fails the first test, stops the
    sequence needlessly often). An empty calibration set, or one where the first tested candidate fails, gives
    ``threshold=None``: the segment auto-accepts nothing.
    """
    alpha, delta = _check_level("alpha", alpha), _check_level("delta", delta)
    values = _as_confidence(confidence)
    flags = _as_correct(correct, values.shape[0])
    need = default_start_count(alpha=alpha, delta=delta) if min_count is None else int(min_count)
    if need < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count!r}")
    n_items = values.shape[0]
    if n_items == 0:
        return ThresholdResult(None, 0.0, None, 0, 0, 0, alpha, delta)
    scores = _SortedScores(values, flags)
    candidates = candidate_thresholds(grid, scores.all, grid_size)
    accepted, errors = scores.counts(candidates)
    start = int(np.argmax(accepted >= need)) if (accepted >= need).any() else candidates.shape[0]
    bounds = clopper_pearson_upper(errors[start:], accepted[start:], delta=delta)
    n_passed, tested = fixed_sequence(bounds <= alpha)
    if n_passed == 0:
        return ThresholdResult(None, 0.0, None, n_items, 0, tested, alpha, delta)
    last = start + n_passed - 1
    return ThresholdResult(
        threshold=float(candidates[last]),
        coverage=float(accepted[last] / n_items),
        error_upper_bound=float(bounds[n_passed - 1]),
        n=n_items,
        n_accepted=int(accepted[last]),
        tested=tested,
        alpha=alpha,
        delta=delta,
        empirical_error=float(errors[last] / accepted[last]),
        n_errors=int(errors[last]),
    )


def naive_threshold(confidence: Any, correct: Any, *, alpha: float) -> float | None:
    """The lowest observed confidence whose empirical error at or above it is ``<= alpha``: no bound, no guarantee.

    Kept for comparison only; it violates the target about half the time near the boundary.
    """
    alpha = _check_level("alpha", alpha)
    values = _as_confidence(confidence)
    flags = _as_correct(correct, values.shape[0])
    if values.shape[0] == 0:
        return None
    scores = _SortedScores(values, flags)
    candidates = np.unique(scores.all)
    accepted, errors = scores.counts(candidates)
    meets = errors <= alpha * accepted
    return float(candidates[np.argmax(meets)]) if meets.any() else None
