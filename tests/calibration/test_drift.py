"""Tests for calibration.drift: PSI and KS worked by hand, their properties, and the stale decision."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import ks_2samp

from calibration import (
    DEFAULT_MAX_PSI,
    CalibrationInputError,
    confidence_drift,
    ks_statistic,
    population_stability_index,
)

unit_floats = st.floats(0.0, 1.0)


def test_psi_hand_computed() -> None:
    expected = np.array([0.1] * 50 + [0.9] * 50)  # median 0.5: two bins of half each
    actual = np.array([0.1] * 25 + [0.9] * 75)  # fractions 1/4, 3/4
    # (1/4 - 1/2) ln(1/2) + (3/4 - 1/2) ln(3/2) = (ln 2 + ln 1.5) / 4 = ln(3) / 4
    assert population_stability_index(expected, actual, n_bins=2) == pytest.approx(math.log(3) / 4, abs=1e-12)


def test_psi_empty_bin_is_floored_not_infinite() -> None:
    expected = np.array([0.1] * 50 + [0.9] * 50)
    actual = np.full(100, 0.95)  # nothing in the lower bin
    e, a = 0.5, 1e-4
    expected_psi = (a - e) * math.log(a / e) + (1.0 - e) * math.log(1.0 / e)
    assert population_stability_index(expected, actual, n_bins=2) == pytest.approx(expected_psi, abs=1e-12)


def test_psi_ties_merge_bins() -> None:
    expected = np.ones(200)  # every decile is 1.0: one cut, two bins [.., 1.0) and [1.0, ..]
    assert population_stability_index(expected, np.ones(50)) == 0.0
    assert population_stability_index(expected, np.full(50, 0.9)) > 1.0


def test_ks_hand_computed_and_scipy() -> None:
    assert ks_statistic([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert ks_statistic([0.1, 0.2, 0.3, 0.4], [0.25, 0.35]) == pytest.approx(0.5)


@settings(max_examples=80, deadline=None)
@given(
    expected=arrays(np.float64, st.integers(1, 60), elements=unit_floats),
    actual=arrays(np.float64, st.integers(1, 60), elements=unit_floats),
    n_bins=st.integers(1, 20),
    seed=st.integers(0, 2**32 - 1),
)
def test_psi_and_ks_properties(expected: np.ndarray, actual: np.ndarray, n_bins: int, seed: int) -> None:
    psi = population_stability_index(expected, actual, n_bins=n_bins)
    assert psi >= 0.0 and math.isfinite(psi)
    assert population_stability_index(expected, expected, n_bins=n_bins) == 0.0
    rng = np.random.default_rng(seed)
    shuffled = population_stability_index(rng.permutation(expected), rng.permutation(actual), n_bins=n_bins)
    assert shuffled == pytest.approx(psi, abs=1e-12)
    ks = ks_statistic(expected, actual)
    assert 0.0 <= ks <= 1.0
    assert ks == pytest.approx(ks_2samp(expected, actual).statistic, abs=1e-12)


def test_confidence_drift_flags_a_shift_and_not_a_resample() -> None:
    rng = np.random.default_rng(0)
    calibration_set = rng.beta(5, 2, 2_000)
    same = confidence_drift(calibration_set, rng.beta(5, 2, 1_000))
    assert not same.stale and same.psi is not None and same.psi < 0.05
    shifted = confidence_drift(calibration_set, rng.beta(2, 2, 1_000))
    assert shifted.stale and shifted.psi > DEFAULT_MAX_PSI and shifted.ks > 0.3
    assert shifted.to_dict() == {
        "psi": shifted.psi, "ks": shifted.ks, "n_expected": 2_000, "n_actual": 1_000,
        "max_psi": DEFAULT_MAX_PSI, "stale": True,
    }


def test_confidence_drift_without_enough_recent_items_measures_nothing() -> None:
    result = confidence_drift(np.linspace(0, 1, 500), np.full(10, 0.99), min_samples=100)
    assert (result.psi, result.ks, result.stale, result.n_actual) == (None, None, False, 10)
    assert confidence_drift(np.linspace(0, 1, 500), [], min_samples=1).n_actual == 0


@pytest.mark.parametrize(
    ("expected", "actual", "kwargs", "match"),
    [
        ([], [0.5], {}, "expected is empty"),
        ([0.5], [], {}, "actual is empty"),
        ([0.5, np.nan], [0.5], {}, "NaN"),
        ([0.5], [1.5], {}, r"\[0, 1\]"),
        ([0.5], [0.5], {"n_bins": 0}, "n_bins"),
    ],
)
def test_psi_bad_input(expected: list, actual: list, kwargs: dict, match: str) -> None:
    with pytest.raises(CalibrationInputError, match=match):
        population_stability_index(expected, actual, **kwargs)


def test_confidence_drift_bad_options() -> None:
    with pytest.raises(CalibrationInputError, match="max_psi"):
        confidence_drift([0.5], [0.5], max_psi=-1)
    with pytest.raises(CalibrationInputError, match="min_samples"):
        confidence_drift([0.5], [0.5], min_samples=0)
