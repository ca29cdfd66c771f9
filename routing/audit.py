"""Audit-sample estimators: the live error rate of auto-accepted items from the randomly spot-checked ones.

Each auto-accepted item ``i`` of a cycle was drawn for a spot check independently with a known inclusion
probability ``pi_i`` (Poisson sampling; ``RoutingResult.inclusion_probability``). Among the ``N`` auto-accepted
items (spot-checked ones included) the Horvitz-Thompson estimate of the error rate,
``sum_{i audited} e_i / pi_i / N``, is unbiased whatever the probabilities, as long as every item had
``pi_i > 0``; an unweighted mean of the audited items is biased whenever ``pi_i`` varies with the error rate.

Interval: Wilson's score interval at the HT point estimate with Kish's effective sample size
``n_eff = (sum w)^2 / sum w^2`` (``w = 1 / pi``). With equal probabilities this is the ordinary Wilson interval on
the audited items; unlike a normal interval on the HT variance it does not collapse to [0, 0] when no audited
item was wrong. The HT standard error (Poisson-sampling variance estimator) is reported beside it.

Annotator error: an audit compares the model with a person, who is wrong too. When the annotators' error rate ``e``
is measured on gold items (known answers) and a wrong annotator picks any of the other ``K - 1`` labels alike,
the observed disagreement is ``d = p (1 - e / (K - 1)) + (1 - p) e`` for a model error ``p``, so
``p = (d - e) / (1 - e - e / (K - 1))`` (Rogan and Gladen's correction; for K = 2, ``(d - e) / (1 - 2e)``). The
map is increasing while ``e < (K - 1) / K``, so it carries the interval's ends too; the uncertainty of ``e``
itself is not propagated (it is reported beside, with its gold count). Uncorrected, annotator error inflates the
estimated model error when the model is mostly right: the uncorrected figure errs on the side of people.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibration.intervals import wilson_interval, wilson_width

__all__ = ["AuditEstimate", "AnnotatorCorrected", "audit_error_by_segment", "audit_error_estimate",
           "audits_for_width", "correct_for_annotator_error", "sized_audit_rate"]

MAX_AUDIT_RATE = 0.5  # a sized audit share never sends more than half of what was automated back to people
DEFAULT_EXPECTED_ERROR = 0.05  # without a target, an audit share sized for an interval width plans for this


@dataclass(frozen=True)
class AuditEstimate:
    """The estimated error rate among all ``n_population`` auto-accepted items, from ``n_audited`` spot checks.

    With no audited item the estimate is NaN and the interval the uninformative [0, 1].
    """

    error_rate: float
    lower: float
    upper: float
    standard_error: float
    n_audited: int
    n_errors: int
    n_population: int
    effective_sample_size: float
    confidence: float


def _inputs(correct: Any, inclusion_probability: Any) -> tuple[np.ndarray, np.ndarray]:
    flags = np.asarray(correct)
    probability = np.asarray(inclusion_probability, dtype=float)
    if flags.ndim != 1 or probability.shape != flags.shape:
        raise ValueError(
            f"length mismatch: correct has shape {flags.shape}, inclusion_probability {probability.shape}"
        )
    if flags.dtype != bool and not np.isin(flags, (0, 1)).all():
        raise ValueError(f"correct must be booleans (or 0/1), got values {np.unique(flags)[:5].tolist()}")
    bad = ~((probability > 0.0) & (probability <= 1.0))
    if bad.any():
        raise ValueError(
            f"inclusion_probability must be in (0, 1]; {int(bad.sum())} bad values, e.g. {probability[bad][:5].tolist()}"
        )
    return ~flags.astype(bool), probability


def audit_error_estimate(
    correct: Any, inclusion_probability: Any, *, n_population: int, confidence: float = 0.95
) -> AuditEstimate:
    """Horvitz-Thompson estimate, with interval, of the error rate among ``n_population`` auto-accepted items from
    the audited ones (``correct``: the human verdict per audited item; ``inclusion_probability``: its chance of
    having been drawn). See the module docstring for the interval."""
    wrong, probability = _inputs(correct, inclusion_probability)
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if n_population < wrong.shape[0] or n_population < 0:
        raise ValueError(f"n_population ({n_population}) must be >= the {wrong.shape[0]} audited items")
    n_audited, n_errors = int(wrong.shape[0]), int(wrong.sum())
    if n_audited == 0:
        return AuditEstimate(np.nan, 0.0, 1.0, np.nan, 0, 0, int(n_population), 0.0, confidence)
    weights = 1.0 / probability
    rate = float((wrong * weights).sum() / n_population)
    variance = float((wrong * (1.0 - probability) * weights**2).sum()) / n_population**2
    n_effective = float(weights.sum() ** 2 / (weights**2).sum())
    low, high = wilson_interval(min(rate, 1.0) * n_effective, n_effective, confidence=confidence)
    lower, upper = float(low), float(high)
    return AuditEstimate(
        error_rate=rate,
        lower=lower,
        upper=upper,
        standard_error=float(np.sqrt(variance)),
        n_audited=n_audited,
        n_errors=n_errors,
        n_population=int(n_population),
        effective_sample_size=n_effective,
        confidence=confidence,
    )


def audit_error_by_segment(
    correct: Any,
    inclusion_probability: Any,
    segments: Sequence[str],
    *,
    n_population: Mapping[str, int],
    confidence: float = 0.95,
) -> dict[str, AuditEstimate]:
    """:func:`audit_error_estimate` per segment; ``n_population`` holds each segment's auto-accepted count (a
    segment with auto-accepted items but no audits gets the NaN estimate and [0, 1])."""
    wrong, probability = _inputs(correct, inclusion_probability)
    labels = np.asarray(segments, dtype=str)
    if labels.shape != wrong.shape:
        raise ValueError(f"length mismatch: segments has shape {labels.shape}, correct {wrong.shape}")
    unknown = sorted(set(labels.tolist()) - set(n_population))
    if unknown:
        raise ValueError(f"segments {unknown} have audited items but no n_population")
    return {
        segment: audit_error_estimate(
            ~wrong[labels == segment],
            probability[labels == segment],
            n_population=count,
            confidence=confidence,
        )
        for segment, count in sorted(n_population.items())
    }


@dataclass(frozen=True)
class AnnotatorCorrected:
    """An audit estimate corrected for the annotators' measured error (see the module docstring)."""

    error_rate: float
    lower: float
    upper: float
    annotator_error: float
    n_classes: int


def correct_for_annotator_error(estimate: AuditEstimate, *, annotator_error: float, n_classes: int) -> AnnotatorCorrected:
    """The model's error implied by ``estimate`` (disagreement with people) when people err at ``annotator_error``
    with errors spread evenly over the other ``n_classes - 1`` labels; clipped to [0, 1]."""
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes!r}")
    limit = (n_classes - 1) / n_classes
    if not (0.0 <= annotator_error < limit):
        raise ValueError(f"annotator_error must be in [0, {limit:.3f}) for {n_classes} classes, got {annotator_error!r}")
    slope = 1.0 - annotator_error - annotator_error / (n_classes - 1)

    def undo(disagreement: float) -> float:
        return float(np.clip((disagreement - annotator_error) / slope, 0.0, 1.0))

    return AnnotatorCorrected(undo(estimate.error_rate) if np.isfinite(estimate.error_rate) else np.nan,
                              undo(estimate.lower), undo(estimate.upper), annotator_error, n_classes)


def audits_for_width(width: float, *, expected_error: float, confidence: float = 0.95) -> int:
    """Audits whose Wilson interval at ``expected_error`` is at most ``width`` wide (the smallest such n, by
    bisection on the exact Wilson width)."""
    if not (0.0 < width < 1.0 and 0.0 < expected_error < 1.0 and 0.0 < confidence < 1.0):
        raise ValueError(f"need width, expected_error and confidence in (0, 1), got {width!r}, {expected_error!r}, "
                         f"{confidence!r}")
    low, high = 1, 1
    while wilson_width(expected_error, high, confidence=confidence) > width:
        low, high = high, high * 2
    while low < high:
        middle = (low + high) // 2
        too_wide = wilson_width(expected_error, middle, confidence=confidence) > width
        low, high = (middle + 1, high) if too_wide else (low, middle)
    return high


def sized_audit_rate(width: float | None, *, expected_error: float, n_automated: int, floor: float,
                     confidence: float = 0.95) -> float:
    """The audit share of a run that will automate about ``n_automated`` items: enough audits for an interval
    ``width`` wide, at least ``floor`` (the policy's spot-check rate) and at most ``MAX_AUDIT_RATE``. Without a
    width, or with nothing to automate, the floor."""
    if width is None or n_automated <= 0:
        return floor
    needed = audits_for_width(width, expected_error=expected_error, confidence=confidence)
    return float(min(max(needed / n_automated, floor), max(floor, MAX_AUDIT_RATE)))
