"""What goes with the live audit estimate: the annotators' error it is corrected for, and how many audits a run
needs for an interval of a given width. The estimate itself is the one every unbiased use shares
(``routing.active_inference.error_interval``; ``services.audit`` applies it to the automated items).

Annotator error: an audit compares the model with a person, who is wrong too. When the annotators' error rate ``e``
is measured on gold items (known answers) and a wrong annotator picks any of the other ``K - 1`` labels alike,
the observed disagreement is ``d = p (1 - e / (K - 1)) + (1 - p) e`` for a model error ``p``, so
``p = (d - e) / (1 - e - e / (K - 1))`` (Rogan and Gladen's correction; for K = 2, ``(d - e) / (1 - 2e)``). The
map is increasing while ``e < (K - 1) / K``, so it carries the interval's ends too; the uncertainty of ``e``
itself is not propagated (it is reported beside, with its gold count). Uncorrected, annotator error inflates the
estimated model error when the model is mostly right: the uncorrected figure errs on the side of people.

Sizing audits: the interval's ends are betting bounds, whose width for ``n`` audits drawn uniformly at an error
rate ``p`` (calibrated confidences) is close to twice Bernstein's ``sqrt(2 p (1 - p) L / n) + (1 - p) L / (3 n)``,
``L = log(2 / (1 - confidence))``. That form plans the audits: measured against the real interval (uniform draws,
50-1,000 audits, errors 0.02-0.10, tests/routing/test_audit.py) the median width came out at 0.73-0.97 of it, so a
planned run's interval is at most the width asked for, typically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = ["AnnotatorCorrected", "Interval", "audits_for_width", "correct_for_annotator_error", "planned_width",
           "sized_audit_rate"]

MAX_AUDIT_RATE = 0.5  # a sized audit share never sends more than half of what was automated back to people
DEFAULT_EXPECTED_ERROR = 0.05  # without a target, an audit share sized for an interval width plans for this


class Interval(Protocol):
    """An estimate with its interval (``routing.active_inference.ErrorInterval``)."""

    @property
    def error_rate(self) -> float: ...
    @property
    def lower(self) -> float: ...
    @property
    def upper(self) -> float: ...


@dataclass(frozen=True)
class AnnotatorCorrected:
    """An audit estimate corrected for the annotators' measured error (see the module docstring)."""

    error_rate: float
    lower: float
    upper: float
    annotator_error: float
    n_classes: int


def correct_for_annotator_error(estimate: Interval, *, annotator_error: float, n_classes: int) -> AnnotatorCorrected:
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


def planned_width(n_audits: int, *, expected_error: float, confidence: float = 0.95) -> float:
    """The width planned for the interval of ``n_audits`` uniform audits at ``expected_error`` (module docstring)."""
    log_term = np.log(2.0 / (1.0 - confidence))
    p = expected_error
    return float(2.0 * (np.sqrt(2.0 * p * (1.0 - p) * log_term / n_audits) + (1.0 - p) * log_term / (3.0 * n_audits)))


def audits_for_width(width: float, *, expected_error: float, confidence: float = 0.95) -> int:
    """The fewest audits whose planned interval at ``expected_error`` is at most ``width`` wide (bisection)."""
    if not (0.0 < width < 1.0 and 0.0 < expected_error < 1.0 and 0.0 < confidence < 1.0):
        raise ValueError(f"need width, expected_error and confidence in (0, 1), got {width!r}, {expected_error!r}, "
                         f"{confidence!r}")
    low, high = 1, 1
    while planned_width(high, expected_error=expected_error, confidence=confidence) > width:
        low, high = high, high * 2
    while low < high:
        middle = (low + high) // 2
        too_wide = planned_width(middle, expected_error=expected_error, confidence=confidence) > width
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
