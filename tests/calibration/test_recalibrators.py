"""Tests for calibration.recalibrators: the estimator contract, log-loss never rising, serialisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibration import (
    CALIBRATOR_METHODS,
    HistogramBinningCalibrator,
    IdentityCalibrator,
    IsotonicCalibrator,
    NotFittedError,
    PlattCalibrator,
    TemperatureScaling,
    calibrator_from_dict,
    negative_log_likelihood,
)

ALL_CALIBRATORS = [IdentityCalibrator, PlattCalibrator, IsotonicCalibrator, HistogramBinningCalibrator]


def _overconfident(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.5, 1.0, n)
    correct = (rng.random(n) < confidence**3).astype(float)
    return confidence, correct


def _binary_log_loss(correct: np.ndarray, confidence: np.ndarray) -> float:
    return negative_log_likelihood(correct.astype(int), confidence)


@pytest.mark.parametrize("cls", ALL_CALIBRATORS)
def test_contract_fit_returns_self_and_predict_in_unit_interval(cls: type) -> None:
    confidence, correct = _overconfident(300)
    calibrator = cls()
    assert calibrator.fit(confidence, correct) is calibrator
    calibrated = calibrator.predict(np.array([0.0, 0.3, 0.77, 1.0]))
    assert calibrated.shape == (4,) and np.all((calibrated >= 0) & (calibrated <= 1))
    assert calibrator.method in CALIBRATOR_METHODS and CALIBRATOR_METHODS[calibrator.method] is cls


@pytest.mark.parametrize("cls", ALL_CALIBRATORS)
def test_predict_before_fit_raises(cls: type) -> None:
    with pytest.raises(NotFittedError, match="not fitted"):
        cls().predict([0.5])
    with pytest.raises(NotFittedError):
        cls().to_dict()


@pytest.mark.parametrize("cls", ALL_CALIBRATORS)
def test_to_dict_round_trip(cls: type) -> None:
    confidence, correct = _overconfident(200, seed=4)
    calibrator = cls().fit(confidence, correct)
    data = json.loads(json.dumps(calibrator.to_dict()))
    assert data["method"] == cls.method
    restored = calibrator_from_dict(data)
    assert type(restored) is cls
    grid = np.linspace(0, 1, 101)
    np.testing.assert_allclose(restored.predict(grid), calibrator.predict(grid))


@pytest.mark.parametrize("cls", ALL_CALIBRATORS)
@pytest.mark.parametrize(
    ("confidence", "correct", "match"),
    [
        ([], [], "empty"),
        ([0.5, np.nan], [1, 0], "NaN"),
        ([0.5, 1.5], [1, 0], r"\[0, 1\]"),
        ([0.5, 0.6], [1], "length mismatch"),
        ([0.5, 0.6], [1, 2], "0 or 1"),
    ],
)
def test_fit_bad_input(cls: type, confidence: list, correct: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cls().fit(confidence, correct)


def test_platt_hand_case_and_identity_start() -> None:
    # perfectly calibrated data -> a close to 1, b close to 0
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.05, 0.95, 20_000)
    correct = (rng.random(20_000) < confidence).astype(float)
    platt = PlattCalibrator().fit(confidence, correct)
    assert platt.a_ == pytest.approx(1.0, abs=0.1) and platt.b_ == pytest.approx(0.0, abs=0.1)


def test_isotonic_is_monotone_and_serialisable_thresholds() -> None:
    confidence, correct = _overconfident(500, seed=2)
    isotonic = IsotonicCalibrator().fit(confidence, correct)
    grid = np.linspace(0, 1, 200)
    assert np.all(np.diff(isotonic.predict(grid)) >= 0)
    assert isotonic.x_thresholds_.shape == isotonic.y_thresholds_.shape


def test_histogram_empty_bins_fall_back_to_centre() -> None:
    histogram = HistogramBinningCalibrator(n_bins=4).fit([0.9, 0.95, 0.8], [1, 0, 1])
    np.testing.assert_allclose(histogram.bin_values_, [0.125, 0.375, 0.625, 2 / 3])
    np.testing.assert_allclose(histogram.predict([0.1, 0.76, 1.0]), [0.125, 2 / 3, 2 / 3])


def test_histogram_rejects_bad_n_bins() -> None:
    with pytest.raises(ValueError, match="n_bins"):
        HistogramBinningCalibrator(n_bins=0)


def test_single_sample_fits() -> None:
    for cls in ALL_CALIBRATORS:
        assert cls().fit([0.7], [1]).predict([0.7]).shape == (1,)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 300), power=st.floats(0.3, 4.0))
def test_recalibration_never_raises_log_loss_on_fitting_data(seed: int, n: int, power: float) -> None:
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.0, 1.0, n)
    correct = (rng.random(n) < confidence**power).astype(float)
    before = _binary_log_loss(correct, confidence)
    for cls in (PlattCalibrator, IsotonicCalibrator):
        after = _binary_log_loss(correct, cls().fit(confidence, correct).predict(confidence))
        assert after <= before + 1e-9


def test_calibrator_from_dict_rejects_unknown_and_incomplete() -> None:
    with pytest.raises(ValueError, match="unknown calibrator method 'magic'"):
        calibrator_from_dict({"method": "magic"})
    with pytest.raises(ValueError, match="missing keys"):
        calibrator_from_dict({"method": "platt", "n_samples": 3, "a": 1.0})
    with pytest.raises(ValueError, match="x_thresholds"):
        calibrator_from_dict(
            {"method": "isotonic", "n_samples": 3, "x_thresholds": [], "y_thresholds": [1.0]}
        )


def _overconfident_softmax(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, k))
    true_probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = (rng.random((n, 1)) > true_probs.cumsum(axis=1)).sum(axis=1).clip(max=k - 1)
    sharp = np.exp(3 * logits)
    return sharp / sharp.sum(axis=1, keepdims=True), labels


def test_temperature_scaling_cools_overconfident_model() -> None:
    y_prob, y_true = _overconfident_softmax(4000, 4, seed=5)
    scaler = TemperatureScaling().fit(y_prob, y_true)
    assert scaler.temperature_ == pytest.approx(3.0, rel=0.15)
    calibrated = scaler.predict_proba(y_prob)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    assert negative_log_likelihood(y_true, calibrated) < negative_log_likelihood(y_true, y_prob)
    restored = calibrator_from_dict(json.loads(json.dumps(scaler.to_dict())))
    np.testing.assert_allclose(restored.predict_proba(y_prob), calibrated)


def test_temperature_scaling_bad_input() -> None:
    with pytest.raises(NotFittedError):
        TemperatureScaling().predict_proba(np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match=r"\(n, k\)"):
        TemperatureScaling().fit(np.array([0.2, 0.7]), [0, 1])
    with pytest.raises(ValueError, match="sum to one"):
        TemperatureScaling().fit(np.array([[0.2, 0.7]]), [0])
    with pytest.raises(ValueError, match="length mismatch"):
        TemperatureScaling().fit(np.array([[0.3, 0.7]]), [0, 1])


def test_calibrator_from_dict_checks_array_lengths() -> None:
    histogram = HistogramBinningCalibrator(n_bins=3).fit([0.2, 0.9], [0, 1]).to_dict()
    with pytest.raises(ValueError, match="bin_values"):
        calibrator_from_dict({**histogram, "bin_values": [0.5, 0.5]})
    isotonic = IsotonicCalibrator().fit([0.2, 0.9], [0, 1]).to_dict()
    with pytest.raises(ValueError, match="x_thresholds"):
        calibrator_from_dict({**isotonic, "x_thresholds": [0.1, 0.2, 0.3]})
