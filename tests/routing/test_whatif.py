"""Tests for routing.whatif: a hand-computed curve, agreement with brute force, partial labels and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from routing.thresholds import clopper_pearson_upper
from routing.whatif import what_if


def test_hand_computed_curve() -> None:
    confidence = np.array([0.2, 0.5, 0.8, 0.9])
    correct = np.array([False, True, False, True])
    curve = what_if(
        confidence, correct, thresholds=[0.9, 0.5, 0.95], items_per_cycle=100, seconds_per_item=36
    )
    np.testing.assert_array_equal(curve.thresholds, [0.5, 0.9, 0.95])
    np.testing.assert_array_equal(curve.n_auto, [3, 1, 0])
    np.testing.assert_allclose(curve.automation_rate, [0.75, 0.25, 0.0])
    np.testing.assert_allclose(curve.expected_error[:2], [(0.5 + 0.2 + 0.1) / 3, 0.1])
    assert np.isnan(curve.expected_error[2]) and np.isnan(curve.empirical_error[2])
    np.testing.assert_allclose(curve.empirical_error[:2], [1 / 3, 0.0])
    np.testing.assert_allclose(curve.review_volume, [25.0, 75.0, 100.0])
    np.testing.assert_allclose(curve.reviewer_hours, [0.25, 0.75, 1.0])  # 36 s per item = 0.01 h
    assert curve.empirical_error_lower[1] == 0.0 and curve.empirical_error_upper[2] == 1.0
    # two-sided 95% upper bound = one-sided bound at 2.5%
    assert curve.empirical_error_upper[1] == pytest.approx(clopper_pearson_upper(0, 1, delta=0.025)[()])


def test_spot_checks_add_to_review_volume() -> None:
    curve = what_if(
        [0.95, 0.2], thresholds=[0.9], items_per_cycle=1000, seconds_per_item=30, spot_check_rate=0.1
    )
    assert curve.review_volume[0] == pytest.approx(1000 * (0.5 + 0.5 * 0.1))
    assert curve.n_labelled_auto[0] == 0 and np.isnan(curve.empirical_error[0])


def test_default_grid_and_partial_labels_match_brute_force() -> None:
    rng = np.random.default_rng(5)
    confidence = rng.random(5000)
    calibrated = np.sqrt(confidence)
    correct = (rng.random(5000) < calibrated).astype(float)
    correct[rng.random(5000) < 0.6] = np.nan
    curve = what_if(confidence, correct, calibrated=calibrated, items_per_cycle=10, seconds_per_item=1)
    assert curve.thresholds.shape == (101,) and curve.thresholds[0] == 0.0 and curve.thresholds[-1] == 1.0
    for position in (0, 37, 80, 99):
        above = confidence >= curve.thresholds[position]
        labelled = above & ~np.isnan(correct)
        assert curve.n_auto[position] == above.sum() and curve.n_labelled_auto[position] == labelled.sum()
        assert curve.expected_error[position] == pytest.approx((1 - calibrated[above]).mean())
        assert curve.empirical_error[position] == pytest.approx(1 - correct[labelled].mean())
        assert curve.empirical_error_lower[position] <= curve.empirical_error[position]
        assert curve.empirical_error[position] <= curve.empirical_error_upper[position]


@settings(max_examples=60, deadline=None)
@given(confidence=arrays(np.float64, st.integers(1, 50), elements=st.floats(0.0, 1.0)))
def test_automation_falls_and_review_rises_with_the_threshold(confidence) -> None:
    curve = what_if(confidence, items_per_cycle=50, seconds_per_item=20)
    assert (np.diff(curve.automation_rate) <= 0).all() and (np.diff(curve.reviewer_hours) >= -1e-12).all()
    assert curve.automation_rate[0] == 1.0  # threshold 0 accepts everything


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([],), {}, "empty"),
        (([0.5, 1.5],), {}, "confidence"),
        (([0.5, np.nan],), {}, "confidence"),
        (([0.5], [2]), {}, "correct"),
        (([0.5], [1, 0]), {}, "length mismatch"),
        (([0.5],), {"thresholds": [2.0]}, "thresholds"),
        (([0.5],), {"calibrated": [0.5, 0.6]}, "calibrated"),
        (([0.5],), {"seconds_per_item": 0}, "seconds_per_item"),
        (([0.5],), {"spot_check_rate": 1.5}, "spot_check_rate"),
    ],
)
def test_bad_input_raises(args, kwargs, match: str) -> None:
    options = {"items_per_cycle": 10, "seconds_per_item": 30, **kwargs}
    with pytest.raises(ValueError, match=match):
        what_if(*args, **options)
