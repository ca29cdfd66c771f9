"""What a segment's routing rules would do before they go live: the threshold they lead to, the share of items
auto-accepted, the error among those with its exact interval, and the review load per day at the segment's
arrival rate, all read off the routing model's unbiased held-out labels.

The threshold is resolved as ``routing.decide.route`` applies it: a segment in the loop, of high stakes or
regulated sends everything to people; a target (``max_auto_error``, ``confidence``) is certified by the same
Learn-then-Test call the flows make (``routing.thresholds.guaranteed_threshold`` on the raw confidences, default
grid and start count) and compared with the raw confidence; a fixed ``auto_accept_threshold`` is compared with the
calibrated confidence. What the preview cannot see, and what then sends the whole segment to review whatever it
says: a failed or stale calibration gate, a live-guard halt, risk rules hitting single items. A small segment that
pools with its parent is certified on the pool's labels by the flows; the preview uses the labels it is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from calibration.intervals import clopper_pearson
from routing.decide import human_required
from routing.policy import SegmentPolicy
from routing.thresholds import _as_correct, default_start_count, guaranteed_threshold
from routing.whatif import _as_unit_array

__all__ = [
    "CERTIFIED",
    "FIXED",
    "MIN_PREVIEW_LABELS",
    "NO_THRESHOLD",
    "SegmentPreview",
    "ThresholdKind",
    "preview_segment",
]

ThresholdKind = Literal["certified target", "fixed", "none: everything to review"]
CERTIFIED: ThresholdKind = "certified target"
FIXED: ThresholdKind = "fixed"
NO_THRESHOLD: ThresholdKind = "none: everything to review"
# Below this many held-out labels the share a fixed threshold auto-accepts is known only to within about
# +-18 points (95 %, at a share of one half): too loose to set a threshold by, so the preview says so instead.
MIN_PREVIEW_LABELS = 30
SECONDS_PER_HOUR = 3600.0
HOURS_PER_DAY = 24.0


@dataclass(frozen=True)
class SegmentPreview:
    """What one segment's rules would do, on ``n_labels`` held-out labels and ``arrivals_per_day`` arrivals.

    ``threshold`` is the auto-accept threshold the rules lead to (None: nothing is auto-accepted),
    ``threshold_kind`` how it came about and ``threshold_reason`` why, in words. ``automation_rate`` is the share
    of the labelled items at or above it (the coverage), ``expected_error`` the share of those that were wrong,
    with its exact two-sided Clopper-Pearson interval ``[error_low, error_high]`` at ``interval_confidence``
    (NaN and [0, 1] when nothing is auto-accepted). ``review_per_day`` counts the items people look at per day:
    every arrival not auto-accepted plus the spot-checked share of those that are; ``review_budget_per_day`` is
    what the rules' review budget lets through per day, and ``over_budget_per_day`` the reviews beyond it (spot
    checks are audits, never budgeted), which pile up in the backlog. When nothing can be previewed (too few
    labels for a fixed threshold), ``reason`` says why and every rate is NaN.
    """

    threshold: float | None
    threshold_kind: ThresholdKind
    threshold_reason: str
    automation_rate: float
    n_auto: int
    n_errors: int
    expected_error: float
    error_low: float
    error_high: float
    review_per_day: float
    reviewer_hours_per_day: float
    review_budget_per_day: float
    over_budget_per_day: float
    arrivals_per_day: float
    n_labels: int
    interval_confidence: float
    reason: str | None = None

    @property
    def coverage(self) -> float:
        """The share of labelled items auto-accepted: ``automation_rate`` by the name the thresholds use."""
        return self.automation_rate


def _check_options(rules: Any, arrivals_per_day: float, min_labels: int, interval_confidence: float) -> None:
    if not isinstance(rules, SegmentPolicy):
        raise TypeError(f"rules must be a routing.policy.SegmentPolicy, got {type(rules).__name__}")
    if isinstance(arrivals_per_day, bool) or not (0.0 <= arrivals_per_day < math.inf):
        raise ValueError(f"arrivals_per_day must be a finite number >= 0, got {arrivals_per_day!r}")
    if isinstance(min_labels, bool) or not (isinstance(min_labels, int) and min_labels >= 1):
        raise ValueError(f"min_labels must be an integer >= 1, got {min_labels!r}")
    if not (0.0 < interval_confidence < 1.0):
        raise ValueError(f"interval_confidence must be in (0, 1), got {interval_confidence!r}")


def _people_only(rules: SegmentPolicy) -> str | None:
    """Why the rules send every item to people whatever the confidence, or None when they do not."""
    if not human_required(rules):  # the rule routing applies; the words below only say which part of it holds
        return None
    why = [text for applies, text in ((rules.mode == "in_the_loop", "in the loop"),
                                      (rules.stakes == "high", "high stakes"),
                                      (rules.regulated, "regulated")) if applies]
    return f"people review every item ({', '.join(why)})"


def _certified(confidence: np.ndarray, correct: np.ndarray, rules: SegmentPolicy) -> tuple[float | None, str]:
    alpha, delta = float(rules.max_auto_error), float(rules.delta)  # type: ignore[arg-type]
    result = guaranteed_threshold(confidence, correct, alpha=alpha, delta=delta)
    target = f"error among auto-accepted items <= {alpha:g} with confidence {1 - delta:g}"
    if result.threshold is None:
        start = default_start_count(alpha=alpha, delta=delta)
        return None, (f"no threshold certifies the target ({target}) on {result.n} held-out labels (the test starts "
                      f"where {start} labelled items lie above a threshold)")
    return result.threshold, (f"certified: {target} (Learn-then-Test on {result.n} held-out labels, upper "
                              f"bound {result.error_upper_bound:.3f})")


def preview_segment(
    confidence: np.ndarray,
    correct: np.ndarray,
    *,
    rules: SegmentPolicy,
    arrivals_per_day: float,
    calibrated: np.ndarray | None = None,
    min_labels: int = MIN_PREVIEW_LABELS,
    interval_confidence: float = 0.95,
) -> SegmentPreview:
    """Preview ``rules`` on the routing model's raw ``confidence`` and ``correct`` (bool) over a segment's
    unbiased held-out labels, at ``arrivals_per_day`` items arriving per day (see the module docstring).

    ``calibrated`` holds the calibrated confidences of the same items, which a fixed threshold is compared with as
    routing does (pass ones calibrated out of fold: a recalibrator fitted on these very labels flatters them);
    without it a fixed threshold is compared with ``confidence``. A fixed threshold on fewer than ``min_labels``
    labels gives a preview with a ``reason`` and NaN rates; a target is certified on whatever labels there are (too
    few certify nothing: everything to review), and people-only rules need no labels at all.
    """
    _check_options(rules, arrivals_per_day, min_labels, interval_confidence)
    raw = _as_unit_array("confidence", confidence)
    right = _as_correct(correct, raw.shape[0])
    scores = raw if calibrated is None else _as_unit_array("calibrated", calibrated, raw.shape[0])
    people = _people_only(rules)
    compared = raw  # a target is certified on, and compared with, the raw confidence
    if people is not None:
        threshold, kind, why = None, NO_THRESHOLD, people
    elif rules.has_target:
        threshold, why = _certified(raw, right, rules)
        kind = CERTIFIED if threshold is not None else NO_THRESHOLD
    else:
        threshold, kind, compared = float(rules.auto_accept_threshold), FIXED, scores
        why = f"fixed auto_accept_threshold {threshold:g}: no guarantee on the error of auto-accepted items"
        if raw.shape[0] < min_labels:
            return _unpreviewable(rules, threshold, why, arrivals_per_day, raw.shape[0], interval_confidence,
                                  f"{raw.shape[0]} held-out labels, fewer than the {min_labels} a preview of a "
                                  "fixed threshold needs")
    accepted = compared >= threshold if threshold is not None else np.zeros(raw.shape[0], dtype=bool)
    n_auto, n_errors = int(accepted.sum()), int((accepted & ~right).sum())
    automation = n_auto / raw.shape[0] if raw.shape[0] else 0.0  # no threshold: nothing automated, labels or not
    low, high = clopper_pearson(n_errors, n_auto, confidence=interval_confidence)
    return SegmentPreview(
        threshold=threshold, threshold_kind=kind, threshold_reason=why, automation_rate=automation,
        n_auto=n_auto, n_errors=n_errors, expected_error=n_errors / n_auto if n_auto else math.nan,
        error_low=float(low), error_high=float(high), interval_confidence=interval_confidence,
        n_labels=int(raw.shape[0]), **_load(rules, automation, arrivals_per_day),
    )


def _load(rules: SegmentPolicy, automation: float, arrivals_per_day: float) -> dict[str, Any]:
    """Review load per day: reviews (everything not automated) are budgeted, spot checks (audits) are not. An
    unknown (NaN) automation rate leaves every load NaN but the budget."""
    reviews = arrivals_per_day * (1.0 - automation)
    review_per_day = reviews + arrivals_per_day * automation * rules.spot_check_rate
    budget = rules.review_budget * HOURS_PER_DAY / rules.budget_window_hours
    return {"review_per_day": review_per_day,
            "reviewer_hours_per_day": review_per_day * rules.seconds_per_item / SECONDS_PER_HOUR,
            "review_budget_per_day": budget,
            "over_budget_per_day": math.nan if math.isnan(reviews) else max(0.0, reviews - budget),
            "arrivals_per_day": float(arrivals_per_day)}


def _unpreviewable(rules: SegmentPolicy, threshold: float, why: str, arrivals_per_day: float, n_labels: int,
                   interval_confidence: float, reason: str) -> SegmentPreview:
    return SegmentPreview(
        threshold=threshold, threshold_kind=FIXED, threshold_reason=why, automation_rate=math.nan, n_auto=0,
        n_errors=0, expected_error=math.nan, error_low=math.nan, error_high=math.nan,
        interval_confidence=interval_confidence, n_labels=n_labels, reason=reason,
        **_load(rules, math.nan, arrivals_per_day),
    )
