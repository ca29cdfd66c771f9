"""Tests for calibration.recalibrators: the estimator contract, log-loss never rising, serialisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibration import (
    CALIBRATOR_METHODS,
    BetaCalibrator,
    HistogramBinningCalibrator,
    IdentityCalibrator,
    IsotonicCalibrator,
    NotFittedError,
    OneVsRestCalibrator,
    PlattCalibrator,
    TemperatureScaling,
    calibrator_from_dict,
    negative_log_likelihood,
)

ALL_CALIBRATORS = [
    IdentityCalibrator,
    PlattCalibrator,
    IsotonicCalibrator,
    HistogramBinningCalibrator,
    BetaCalibrator,
]


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
    for cls in (PlattCalibrator, IsotonicCalibrator, BetaCalibrator):
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


def test_beta_starts_at_identity_and_recovers_a_beta_map() -> None:
    grid = np.linspace(0.01, 0.99, 50)
    identity = BetaCalibrator()
    identity.a_, identity.b_, identity.c_ = 1.0, 1.0, 0.0
    identity.n_samples_ = 1
    np.testing.assert_allclose(identity.predict(grid), grid, atol=1e-12)
    # truth: P(correct | c) = sigmoid(2 log c - 0.5 log(1 - c) + 0.3)
    rng = np.random.default_rng(7)
    confidence = rng.uniform(0.01, 0.99, 40_000)
    truth = 1 / (1 + np.exp(-(2 * np.log(confidence) - 0.5 * np.log1p(-confidence) + 0.3)))
    beta = BetaCalibrator().fit(confidence, (rng.random(40_000) < truth).astype(float))
    assert (beta.a_, beta.b_, beta.c_) == pytest.approx((2.0, 0.5, 0.3), abs=0.15)


def test_beta_is_monotone() -> None:
    rng = np.random.default_rng(3)
    confidence = rng.uniform(0, 1, 500)
    correct = (rng.random(500) < 1 - confidence).astype(float)  # anti-calibrated: a monotone map flattens
    beta = BetaCalibrator().fit(confidence, correct)
    assert beta.a_ >= 0 and beta.b_ >= 0
    assert np.all(np.diff(beta.predict(np.linspace(0, 1, 300))) >= -1e-12)


def _true_labels(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cumulative = probs.cumsum(axis=1)
    return np.minimum((rng.random((probs.shape[0], 1)) > cumulative).sum(axis=1), probs.shape[1] - 1)


@pytest.mark.parametrize("method", ["platt", "isotonic", "histogram", "beta", "identity"])
def test_one_vs_rest_rows_sum_to_one_and_round_trip(method: str) -> None:
    y_prob, y_true = _overconfident_softmax(1500, 4, seed=2)
    wrapper = OneVsRestCalibrator(method=method)
    assert wrapper.fit(y_prob, y_true) is wrapper
    calibrated = wrapper.predict_proba(y_prob)
    assert calibrated.shape == y_prob.shape and np.all((calibrated >= 0) & (calibrated <= 1))
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    assert len(wrapper.calibrators_) == 4
    restored = calibrator_from_dict(json.loads(json.dumps(wrapper.to_dict())))
    assert isinstance(restored, OneVsRestCalibrator) and restored.base_method == method
    np.testing.assert_allclose(restored.predict_proba(y_prob), calibrated)


def test_one_vs_rest_improves_an_overconfident_model() -> None:
    y_prob, y_true = _overconfident_softmax(4000, 4, seed=5)
    for method in ("platt", "beta"):
        calibrated = OneVsRestCalibrator(method=method).fit(y_prob, y_true).predict_proba(y_prob)
        assert negative_log_likelihood(y_true, calibrated) < negative_log_likelihood(y_true, y_prob)


def test_one_vs_rest_binary_calibrates_the_positive_column_only() -> None:
    rng = np.random.default_rng(0)
    positive = rng.uniform(0, 1, 400)
    y_prob = np.column_stack([1 - positive, positive])
    y_true = (rng.random(400) < positive**2).astype(int)
    wrapper = OneVsRestCalibrator(method="platt").fit(y_prob, y_true)
    assert len(wrapper.calibrators_) == 1
    expected = PlattCalibrator().fit(positive, y_true).predict(positive)
    np.testing.assert_allclose(wrapper.predict_proba(y_prob)[:, 1], expected)


def test_one_vs_rest_all_zero_rows_become_uniform() -> None:
    # isotonic on a class that is never true maps everything to 0; a row of zeros must not divide by zero
    y_prob = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1]])
    wrapper = OneVsRestCalibrator(method="isotonic").fit(y_prob, [0, 1, 0])
    calibrated = wrapper.predict_proba(np.array([[0.0, 0.0, 1.0]]))
    assert np.all(np.isfinite(calibrated))
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 300), sharpness=st.floats(0.3, 4.0))
def test_one_vs_rest_binary_never_raises_log_loss_on_fitting_data(seed: int, n: int, sharpness: float) -> None:
    rng = np.random.default_rng(seed)
    positive = rng.uniform(0, 1, n)
    y_true = (rng.random(n) < positive).astype(int)
    sharp = positive**sharpness / (positive**sharpness + (1 - positive) ** sharpness)
    y_prob = np.column_stack([1 - sharp, sharp])
    before = negative_log_likelihood(y_true, y_prob)
    for method in ("platt", "isotonic", "beta"):
        after = negative_log_likelihood(y_true, OneVsRestCalibrator(method=method).fit(y_prob, y_true).predict_proba(y_prob))
        assert after <= before + 1e-9


def test_one_vs_rest_bad_input() -> None:
    with pytest.raises(ValueError, match="method must be one of"):
        OneVsRestCalibrator(method="temperature")
    with pytest.raises(NotFittedError, match="not fitted"):
        OneVsRestCalibrator().predict_proba(np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match=r"\(n, k\)"):
        OneVsRestCalibrator().fit(np.array([0.2, 0.7]), [0, 1])
    wrapper = OneVsRestCalibrator().fit(np.array([[0.2, 0.8], [0.6, 0.4]]), [1, 0])
    with pytest.raises(ValueError, match="fitted on 2"):
        wrapper.predict_proba(np.array([[0.2, 0.3, 0.5]]))
    data = wrapper.to_dict()
    with pytest.raises(ValueError, match="calibrators"):
        calibrator_from_dict({**data, "calibrators": []})
    with pytest.raises(ValueError, match="platt"):
        calibrator_from_dict({**data, "calibrators": [IdentityCalibrator().fit([0.5], [1]).to_dict()]})


def test_integer_weights_equal_repeated_items() -> None:
    rng = np.random.default_rng(3)
    confidence = rng.uniform(0.3, 1.0, 200)
    correct = (rng.random(200) < confidence**2).astype(float)
    weight = rng.integers(1, 4, 200)
    repeated_conf, repeated_correct = np.repeat(confidence, weight), np.repeat(correct, weight)
    grid = np.linspace(0, 1, 101)
    for cls in (IsotonicCalibrator, HistogramBinningCalibrator):
        weighted = cls().fit(confidence, correct, sample_weight=weight).predict(grid)
        np.testing.assert_allclose(weighted, cls().fit(repeated_conf, repeated_correct).predict(grid), atol=1e-9)
    weighted = BetaCalibrator().fit(confidence, correct, sample_weight=weight).predict(grid)
    np.testing.assert_allclose(weighted, BetaCalibrator().fit(repeated_conf, repeated_correct).predict(grid),
                               atol=2e-3)
    # Platt's prior counts the labels themselves (weights are scaled to mean 1), so repeating items, which adds
    # labels, smooths less: the fits differ a little, by design


def test_platt_equals_scikit_learns_sigmoid_calibration_with_weights() -> None:
    from scipy.special import logit as sp_logit
    from sklearn.calibration import _sigmoid_calibration

    rng = np.random.default_rng(4)
    confidence = rng.uniform(0.5, 0.99, 500)
    correct = (rng.random(500) < confidence**3).astype(float)
    weight = 1.0 / rng.choice([0.05, 0.5], 500)  # audits (1 in 20) beside seed labels (1 in 2)
    ours = PlattCalibrator().fit(confidence, correct, sample_weight=weight)
    # weights scaled to mean 1, as Sluice scales them: the prior then counts the labels, not the population
    a, b = _sigmoid_calibration(sp_logit(confidence), correct, sample_weight=weight / weight.mean())
    assert ours.a_ == pytest.approx(-a, abs=2e-3) and ours.b_ == pytest.approx(-b, abs=2e-3)


def test_sample_weight_is_checked() -> None:
    with pytest.raises(ValueError, match="sample_weight"):
        PlattCalibrator().fit([0.5, 0.6], [1, 0], sample_weight=[1.0, 0.0])
    with pytest.raises(ValueError, match="length mismatch"):
        IsotonicCalibrator().fit([0.5, 0.6], [1, 0], sample_weight=[1.0])
