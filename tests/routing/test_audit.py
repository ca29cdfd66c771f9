"""Tests for routing.audit: unbiasedness of the Horvitz-Thompson estimate in simulation, intervals, input checks."""

from __future__ import annotations

import numpy as np
import pytest

from routing.audit import audit_error_by_segment, audit_error_estimate


def test_hand_computed_estimate() -> None:
    # 4 audited of 100: two wrong, drawn with probability 0.1 and 0.5 -> (10 + 2) / 100
    estimate = audit_error_estimate([False, False, True, True], [0.1, 0.5, 0.5, 0.1], n_population=100)
    assert estimate.error_rate == pytest.approx(0.12) and estimate.n_errors == 2 and estimate.n_audited == 4
    assert estimate.standard_error == pytest.approx(np.sqrt(0.9 * 100 + 0.5 * 4) / 100)
    assert estimate.effective_sample_size == pytest.approx(24**2 / 208)
    assert 0.0 <= estimate.lower <= estimate.error_rate <= estimate.upper <= 1.0


def test_no_errors_still_gives_a_positive_upper_bound() -> None:
    estimate = audit_error_estimate(np.ones(50, bool), np.full(50, 0.05), n_population=1000)
    assert estimate.error_rate == 0.0 and estimate.lower == 0.0 and estimate.upper > 0.05


def test_no_audits_is_uninformative_not_zero() -> None:
    estimate = audit_error_estimate([], [], n_population=500)
    assert np.isnan(estimate.error_rate) and (estimate.lower, estimate.upper) == (0.0, 1.0)


def test_horvitz_thompson_is_unbiased_where_the_unweighted_mean_is_not() -> None:
    # Items near the threshold err more and are audited more often: the plain audit mean over-states the error.
    rng = np.random.default_rng(11)
    n_population, repeats = 2000, 4000
    near_threshold = rng.random(n_population) < 0.3
    wrong = rng.random(n_population) < np.where(near_threshold, 0.12, 0.01)
    probability = np.where(near_threshold, 0.2, 0.02)
    truth = wrong.mean()
    drawn = rng.random((repeats, n_population)) < probability  # Poisson sampling, one row per cycle
    estimates = (drawn * (wrong / probability)).sum(axis=1) / n_population
    naive = (drawn & wrong).sum(axis=1) / drawn.sum(axis=1)
    monte_carlo_se = estimates.std() / np.sqrt(repeats)
    assert abs(estimates.mean() - truth) < 4 * monte_carlo_se
    assert naive.mean() - truth > 10 * monte_carlo_se
    covered = 0
    for row in drawn[:400]:
        estimate = audit_error_estimate(~wrong[row], probability[row], n_population=n_population)
        assert estimate.error_rate == pytest.approx((wrong[row] / probability[row]).sum() / n_population)
        covered += estimate.lower <= truth <= estimate.upper
    assert covered / 400 >= 0.9  # nominal 95%; the Kish/Wilson interval is approximate


def test_per_segment_estimates() -> None:
    result = audit_error_by_segment(
        [True, False, True, True],
        [0.5, 0.5, 0.1, 0.1],
        ["a", "a", "b", "b"],
        n_population={"a": 10, "b": 40, "c": 7},
    )
    assert result["a"].error_rate == pytest.approx(0.2) and result["b"].error_rate == 0.0
    assert np.isnan(result["c"].error_rate)
    with pytest.raises(ValueError, match="n_population"):
        audit_error_by_segment([True], [0.5], ["z"], n_population={"a": 1})


@pytest.mark.parametrize(
    ("correct", "probability", "n_population", "match"),
    [
        ([True], [0.0], 10, "inclusion_probability"),
        ([True], [1.5], 10, "inclusion_probability"),
        ([True], [np.nan], 10, "inclusion_probability"),
        ([True, False], [0.5], 10, "length mismatch"),
        ([2], [0.5], 10, "correct"),
        ([True, True], [0.5, 0.5], 1, "n_population"),
    ],
)
def test_bad_input_raises(correct, probability, n_population, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        audit_error_estimate(correct, probability, n_population=n_population)


def test_annotator_error_correction_hand_computed_and_inverts_the_noise() -> None:
    from routing.audit import AuditEstimate, correct_for_annotator_error

    # binary: true model error 0.10, annotators wrong 5%: disagreement 0.1 * 0.95 + 0.9 * 0.05 = 0.14
    estimate = AuditEstimate(0.14, 0.10, 0.19, 0.01, 400, 56, 4000, 400.0, 0.95)
    corrected = correct_for_annotator_error(estimate, annotator_error=0.05, n_classes=2)
    assert corrected.error_rate == pytest.approx(0.10)
    assert corrected.lower == pytest.approx((0.10 - 0.05) / 0.9) and corrected.upper == pytest.approx(0.14 / 0.9)
    # 10 classes: disagreement 0.1 * (1 - 0.05 / 9) + 0.9 * 0.05
    d = 0.1 * (1 - 0.05 / 9) + 0.9 * 0.05
    ten = correct_for_annotator_error(AuditEstimate(d, d, d, 0.0, 1, 0, 1, 1.0, 0.95), annotator_error=0.05,
                                      n_classes=10)
    assert ten.error_rate == pytest.approx(0.1)
    # disagreement below the annotators' own error: the model is (clipped) perfect
    low = correct_for_annotator_error(AuditEstimate(0.02, 0.0, 0.05, 0.0, 100, 2, 100, 100.0, 0.95),
                                      annotator_error=0.05, n_classes=2)
    assert low.error_rate == 0.0 and low.lower == 0.0 and low.upper == 0.0
    with pytest.raises(ValueError, match="annotator_error"):
        correct_for_annotator_error(estimate, annotator_error=0.5, n_classes=2)
    with pytest.raises(ValueError, match="n_classes"):
        correct_for_annotator_error(estimate, annotator_error=0.1, n_classes=1)


def test_audits_for_width_is_the_smallest_n_with_a_narrow_enough_wilson_interval() -> None:
    from calibration.intervals import wilson_width
    from routing.audit import audits_for_width, sized_audit_rate

    n = audits_for_width(0.1, expected_error=0.05)
    assert wilson_width(0.05, n) <= 0.1 < wilson_width(0.05, n - 1)
    assert 60 <= n <= 90  # about 4 z^2 p (1 - p) / w^2 = 73, Wilson a little different
    assert audits_for_width(0.05, expected_error=0.05) > 3 * n  # a half-width interval needs ~4x the audits
    # 2,000 automated items: n / 2000 of them; few automated: capped at half; no width: the floor
    assert sized_audit_rate(0.1, expected_error=0.05, n_automated=2000, floor=0.01) == pytest.approx(n / 2000)
    assert sized_audit_rate(0.1, expected_error=0.05, n_automated=20, floor=0.01) == 0.5
    assert sized_audit_rate(0.1, expected_error=0.05, n_automated=100_000, floor=0.05) == 0.05
    assert sized_audit_rate(None, expected_error=0.05, n_automated=2000, floor=0.05) == 0.05
    assert sized_audit_rate(0.1, expected_error=0.05, n_automated=0, floor=0.05) == 0.05
    with pytest.raises(ValueError, match="width"):
        audits_for_width(0.0, expected_error=0.05)
