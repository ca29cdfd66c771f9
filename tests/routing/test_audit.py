"""Tests for routing.audit: the annotator-error correction and the planner that sizes audits for an interval
width, checked against the interval the console shows (``routing.active_inference.error_interval``)."""

from __future__ import annotations

import numpy as np
import pytest

from routing.active_inference import ErrorInterval, error_interval
from routing.audit import audits_for_width, correct_for_annotator_error, planned_width, sized_audit_rate


def _interval(rate: float, lower: float, upper: float) -> ErrorInterval:
    return ErrorInterval("doubly_robust", rate, lower, upper, 0.95, 4000, 400, 0, 56, 400.0)


def test_annotator_error_correction_hand_computed_and_inverts_the_noise() -> None:
    # binary: true model error 0.10, annotators wrong 5%: disagreement 0.1 * 0.95 + 0.9 * 0.05 = 0.14
    estimate = _interval(0.14, 0.10, 0.19)
    corrected = correct_for_annotator_error(estimate, annotator_error=0.05, n_classes=2)
    assert corrected.error_rate == pytest.approx(0.10)
    assert corrected.lower == pytest.approx((0.10 - 0.05) / 0.9) and corrected.upper == pytest.approx(0.14 / 0.9)
    # 10 classes: disagreement 0.1 * (1 - 0.05 / 9) + 0.9 * 0.05
    d = 0.1 * (1 - 0.05 / 9) + 0.9 * 0.05
    ten = correct_for_annotator_error(_interval(d, d, d), annotator_error=0.05,
                                      n_classes=10)
    assert ten.error_rate == pytest.approx(0.1)
    # disagreement below the annotators' own error: the model is (clipped) perfect
    low = correct_for_annotator_error(_interval(0.02, 0.0, 0.05),
                                      annotator_error=0.05, n_classes=2)
    assert low.error_rate == 0.0 and low.lower == 0.0 and low.upper == 0.0
    with pytest.raises(ValueError, match="annotator_error"):
        correct_for_annotator_error(estimate, annotator_error=0.5, n_classes=2)
    with pytest.raises(ValueError, match="n_classes"):
        correct_for_annotator_error(estimate, annotator_error=0.1, n_classes=1)


def test_audits_for_width_is_the_smallest_n_with_a_narrow_enough_planned_interval() -> None:
    n = audits_for_width(0.1, expected_error=0.05)
    assert planned_width(n, expected_error=0.05) <= 0.1 < planned_width(n - 1, expected_error=0.05)
    assert 150 <= n <= 220  # 2 (sqrt(2 p (1 - p) log 40 / n) + (1 - p) log 40 / (3 n)) = 0.1 at n ~ 184
    assert audits_for_width(0.05, expected_error=0.05) > 3 * n  # a half-width interval needs ~4x the audits
    # 2,000 automated items: n / 2000 of them; few automated: capped at half; no width: the floor
    assert sized_audit_rate(0.1, expected_error=0.05, n_automated=2000, floor=0.01) == pytest.approx(n / 2000)
    assert sized_audit_rate(0.1, expected_error=0.05, n_automated=20, floor=0.01) == 0.5
    assert sized_audit_rate(0.1, expected_error=0.05, n_automated=100_000, floor=0.05) == 0.05
    assert sized_audit_rate(None, expected_error=0.05, n_automated=2000, floor=0.05) == 0.05
    assert sized_audit_rate(0.1, expected_error=0.05, n_automated=0, floor=0.05) == 0.05
    with pytest.raises(ValueError, match="width"):
        audits_for_width(0.0, expected_error=0.05)


@pytest.mark.parametrize("expected_error", [0.02, 0.05, 0.1])
@pytest.mark.parametrize("n_audits", [50, 300, 1000])
def test_planned_audits_give_an_interval_no_wider_than_planned(expected_error: float, n_audits: int) -> None:
    """The planner against the real interval (``error_interval``, uniform audits of a calibrated model at the
    expected error): the median width over 20 draws is within the plan, and not far below it (0.7-1.0 of it was
    measured), so the planner neither under- nor grossly over-asks."""
    rng = np.random.default_rng(n_audits + int(expected_error * 1000))
    widths = []
    for n_population in (2 * n_audits, 20 * n_audits):
        rate = n_audits / n_population
        for _ in range(10):
            drawn, wrong = rng.random(n_population) < rate, rng.random(n_population) < expected_error
            e = error_interval(np.full(n_population, 1 - expected_error), np.full(n_population, rate), drawn, wrong)
            widths.append(e.upper - e.lower)
    ratio = float(np.median(widths)) / planned_width(n_audits, expected_error=expected_error)
    print(f"{n_audits} audits at error {expected_error}: median width / planned {ratio:.2f}")
    assert 0.6 <= ratio <= 1.0
