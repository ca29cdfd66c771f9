"""Tests for calibration.metrics: exact hand-computed cases, bin edges, properties and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss

from calibration import (
    CalibrationInputError,
    ReliabilityCurve,
    adaptive_calibration_error,
    brier_score,
    classwise_calibration_error,
    debiased_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_curve,
    reliability_curve_from_confidence,
    top_label,
)


def test_top_label_binary_and_multiclass() -> None:
    confidence, predicted = top_label(np.array([0.2, 0.5, 0.9]))
    np.testing.assert_allclose(confidence, [0.8, 0.5, 0.9])
    np.testing.assert_array_equal(predicted, [0, 1, 1])
    confidence, predicted = top_label(np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]]))
    np.testing.assert_allclose(confidence, [0.7, 0.5])
    np.testing.assert_array_equal(predicted, [1, 0])


def test_ece_and_mce_hand_computed_two_bins() -> None:
    # confidences 0.6, 0.7 (bin [0.5, 1]) and 0.2, 0.3 (predicting class 0, confidences 0.8, 0.7)
    y_prob = np.array([[0.4, 0.6], [0.3, 0.7], [0.8, 0.2], [0.7, 0.3]])
    y_true = np.array([1, 0, 0, 0])
    # n_bins=2: bin [0, 0.5) empty; bin [0.5, 1] holds conf 0.6, 0.7, 0.8, 0.7 -> mean 0.7, accuracy 3/4
    assert expected_calibration_error(y_true, y_prob, n_bins=2) == pytest.approx(0.05, abs=1e-12)
    assert maximum_calibration_error(y_true, y_prob, n_bins=2) == pytest.approx(0.05, abs=1e-12)
    # n_bins=10: [0.6, 0.7) {0.6 correct}, [0.7, 0.8) {0.7 wrong, 0.7 correct}, [0.8, 0.9) {0.8 correct}
    expected = (abs(1 - 0.6) + 2 * abs(0.5 - 0.7) + abs(1 - 0.8)) / 4
    assert expected_calibration_error(y_true, y_prob, n_bins=10) == pytest.approx(expected, abs=1e-12)
    assert maximum_calibration_error(y_true, y_prob, n_bins=10) == pytest.approx(0.4, abs=1e-12)


def test_binary_vector_is_the_positive_class_probability() -> None:
    y_prob = np.array([0.9, 0.1, 0.4])  # P(y = 1)
    y_true = np.array([1, 1, 0])
    # one bin: mean P(y = 1) 1.4 / 3 against the frequency of y = 1, 2 / 3 (not top-label: that would be 0.8 vs 2/3)
    assert expected_calibration_error(y_true, y_prob, n_bins=1) == pytest.approx(0.2, abs=1e-12)
    # the (n, 2) matrix of the same model is scored top-label
    matrix = np.column_stack([1 - y_prob, y_prob])
    assert expected_calibration_error(y_true, matrix, n_bins=1) == pytest.approx(abs(0.8 - 2 / 3), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_vector_curve_equals_sklearn_calibration_curve(seed: int) -> None:
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(seed)
    y_prob = rng.uniform(0, 1, 3_000)  # continuous: no value on a bin edge, where sklearn bins to the left
    y_true = (rng.random(3_000) < y_prob**1.3).astype(int)
    curve = reliability_curve(y_true, y_prob, n_bins=10)
    frequency, mean_probability = calibration_curve(y_true, y_prob, n_bins=10, strategy="uniform")
    np.testing.assert_allclose(curve.accuracy[~curve.empty], frequency, atol=1e-12)
    np.testing.assert_allclose(curve.mean_confidence[~curve.empty], mean_probability, atol=1e-12)
    assert expected_calibration_error(y_true, y_prob, n_bins=10) == pytest.approx(
        curve.expected_calibration_error, abs=1e-12)


def test_perfect_and_worst_calibration() -> None:
    assert expected_calibration_error([1, 0], np.array([[0.0, 1.0], [1.0, 0.0]])) == 0.0
    assert expected_calibration_error([0, 1], np.array([[0.0, 1.0], [1.0, 0.0]])) == pytest.approx(1.0)


def test_interior_edge_goes_to_the_right_bin_and_one_to_the_last() -> None:
    # 0.5 is the edge between the two bins of n_bins=2: it belongs to [0.5, 1] (netcal/histogramdd rule)
    curve = reliability_curve_from_confidence([0.5, 1.0, 0.0], [1, 1, 0], n_bins=2)
    np.testing.assert_array_equal(curve.count, [1, 2])
    curve = reliability_curve_from_confidence(np.linspace(0, 1, 11), np.ones(11), n_bins=10)
    np.testing.assert_array_equal(curve.count, [1] * 9 + [2])


def test_quantile_bins_are_equal_mass() -> None:
    confidence = np.linspace(0.5, 0.99, 100)
    curve = reliability_curve_from_confidence(confidence, np.ones(100), n_bins=4, strategy="quantile")
    np.testing.assert_array_equal(curve.count, [25, 25, 25, 25])
    assert curve.bin_edges[0] == pytest.approx(0.5) and curve.bin_edges[-1] == pytest.approx(0.99)


def test_reliability_curve_empty_bins_and_wilson() -> None:
    curve = reliability_curve_from_confidence([0.95, 0.95, 0.95, 0.95], [1, 1, 1, 0], n_bins=10)
    assert curve.bin_edges.shape == (11,)
    assert curve.empty.sum() == 9 and not curve.empty[9]
    assert (
        np.isnan(curve.accuracy[0]) and np.isnan(curve.mean_confidence[0]) and np.isnan(curve.wilson_low[0])
    )
    assert curve.accuracy[9] == pytest.approx(0.75)
    # Wilson 95% for 3/4: centre (0.75 + z^2/8) / (1 + z^2/4), half z/(1+z^2/4) sqrt(0.75*0.25/4 + z^2/64)
    z = 1.959963984540054
    centre = (0.75 + z**2 / 8) / (1 + z**2 / 4)
    half = z / (1 + z**2 / 4) * np.sqrt(0.75 * 0.25 / 4 + z**2 / 64)
    assert curve.wilson_low[9] == pytest.approx(centre - half)
    assert curve.wilson_high[9] == pytest.approx(centre + half)
    assert curve.wilson_low[9] < 0.75 < curve.wilson_high[9]


def test_reliability_curve_dict_round_trip_is_json() -> None:
    curve = reliability_curve([0, 1, 1], np.array([0.2, 0.7, 0.95]), n_bins=5)
    data = json.loads(json.dumps(curve.to_dict()))
    assert curve.empty[0] and data["accuracy"][0] is None and data["empty"][0] is True
    back = ReliabilityCurve.from_dict(data)
    for field in ("bin_edges", "mean_confidence", "accuracy", "count", "empty", "wilson_low", "wilson_high"):
        np.testing.assert_array_equal(getattr(back, field), getattr(curve, field))
    assert back.count.dtype.kind == "i" and back.empty.dtype == bool


def test_reliability_curve_from_dict_rejects_missing_keys() -> None:
    with pytest.raises(ValueError, match="keys"):
        ReliabilityCurve.from_dict({"bin_edges": [0.0, 1.0]})


def test_brier_score_hand_computed_and_sklearn() -> None:
    y_prob = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    # row 1, truth 0: 0.09 + 0.04 + 0.01 = 0.14; row 2, truth 1: 0.01 + 0.81 + 0.64 = 1.46
    assert brier_score([0, 1], y_prob) == pytest.approx(0.8)
    binary = np.array([0.1, 0.8, 0.6])
    truth = np.array([0, 1, 0])
    assert brier_score(truth, binary) == pytest.approx(brier_score_loss(truth, binary))


def test_negative_log_likelihood_matches_sklearn() -> None:
    y_prob = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
    y_true = np.array([0, 2, 1])
    assert negative_log_likelihood(y_true, y_prob) == pytest.approx(
        log_loss(y_true, y_prob, labels=[0, 1, 2])
    )
    assert negative_log_likelihood([1, 0], np.array([0.8, 0.3])) == pytest.approx(
        -(np.log(0.8) + np.log(0.7)) / 2
    )
    assert np.isfinite(negative_log_likelihood([1], np.array([0.0])))


def test_agrees_with_sklearn_calibration_curve_on_binary_confidence() -> None:
    rng = np.random.default_rng(3)
    confidence = rng.uniform(0.001, 0.999, 2000)
    confidence = confidence[np.abs(confidence * 10 - np.round(confidence * 10)) > 1e-9]  # no values on edges
    correct = (rng.random(confidence.shape[0]) < confidence).astype(int)
    curve = reliability_curve_from_confidence(confidence, correct, n_bins=10)
    accuracy, mean_confidence = calibration_curve(correct, confidence, n_bins=10, strategy="uniform")
    np.testing.assert_allclose(curve.accuracy[~curve.empty], accuracy)
    np.testing.assert_allclose(curve.mean_confidence[~curve.empty], mean_confidence)


@settings(max_examples=60, deadline=None)
@given(
    probs=arrays(np.float64, st.integers(1, 40), elements=st.floats(0.0, 1.0)),
    seed=st.integers(0, 2**32 - 1),
    n_bins=st.integers(1, 20),
    strategy=st.sampled_from(["uniform", "quantile"]),
)
def test_ece_in_unit_interval_and_permutation_invariant(
    probs: np.ndarray, seed: int, n_bins: int, strategy: str
) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, probs.shape[0])
    ece = expected_calibration_error(labels, probs, n_bins=n_bins, strategy=strategy)
    assert 0.0 <= ece <= 1.0
    order = rng.permutation(probs.shape[0])
    permuted = expected_calibration_error(labels[order], probs[order], n_bins=n_bins, strategy=strategy)
    assert permuted == pytest.approx(ece, abs=1e-12)
    assert maximum_calibration_error(labels, probs, n_bins=n_bins, strategy=strategy) >= ece - 1e-12


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_classes=st.integers(2, 6))
def test_ece_near_zero_when_labels_drawn_from_predictions(seed: int, n_classes: int) -> None:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(n_classes), size=20_000)
    cumulative = probs.cumsum(axis=1)
    labels = np.minimum((rng.random((20_000, 1)) > cumulative).sum(axis=1), n_classes - 1)
    assert expected_calibration_error(labels, probs) < 0.03


@pytest.mark.parametrize(
    ("y_true", "y_prob", "match"),
    [
        ([], np.array([]), "empty"),
        ([0], np.array([np.nan]), "NaN"),
        ([0], np.array([1.2]), r"\[0, 1\]"),
        ([0], np.array([-0.1]), r"\[0, 1\]"),
        ([0, 1], np.array([[0.5, 0.6], [0.2, 0.8]]), "sum to one"),
        ([0, 1, 1], np.array([0.2, 0.8]), "length mismatch"),
        ([0, 3], np.array([[0.5, 0.5], [0.2, 0.8]]), "class indices"),
        ([0.5], np.array([0.3]), "class indices"),
        ([0], np.array([[[0.5, 0.5]]]), "shape"),
        ([0], np.array([[1.0]]), "2 class columns"),
    ],
)
def test_bad_input_raises_naming_the_problem(y_true: list, y_prob: np.ndarray, match: str) -> None:
    for metric in (
        expected_calibration_error,
        maximum_calibration_error,
        brier_score,
        negative_log_likelihood,
        adaptive_calibration_error,
        classwise_calibration_error,
        debiased_calibration_error,
    ):
        with pytest.raises(CalibrationInputError, match=match):
            metric(y_true, y_prob)


@pytest.mark.parametrize(("kwargs", "match"), [({"n_bins": 0}, "n_bins"), ({"strategy": "log"}, "strategy")])
def test_bad_options_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        expected_calibration_error([1], np.array([0.7]), **kwargs)


def test_correct_must_be_binary() -> None:
    with pytest.raises(ValueError, match="0 or 1"):
        reliability_curve_from_confidence([0.5, 0.6], [1, 2])


def test_adaptive_ece_hand_computed_against_uniform() -> None:
    # confidences 0.6, 0.7, 0.8, 0.9, hits 1, 0, 1, 1
    y_prob, y_true = np.array([0.6, 0.7, 0.8, 0.9]), np.array([1, 0, 1, 1])
    # two equal-width bins put everything in [0.5, 1]: mean conf 0.75 = accuracy 3/4
    assert expected_calibration_error(y_true, y_prob, n_bins=2) == pytest.approx(0.0, abs=1e-12)
    # equal-mass edges 0.6, 0.75, 0.9: {0.6 hit, 0.7 miss} gap |0.5 - 0.65|, {0.8, 0.9 hits} gap |1 - 0.85|
    assert adaptive_calibration_error(y_true, y_prob, n_bins=2) == pytest.approx(0.15, abs=1e-12)
    assert adaptive_calibration_error(y_true, y_prob, n_bins=2) == expected_calibration_error(
        y_true, y_prob, n_bins=2, strategy="quantile"
    )


def test_classwise_ece_hand_computed() -> None:
    y_prob = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    # one bin per class: class 0 mean p 0.4 vs freq 1/2, class 1 0.15 vs 1/2, class 2 0.45 vs 0
    expected = (0.1 + 0.35 + 0.45) / 3
    assert classwise_calibration_error([0, 1], y_prob, n_bins=1) == pytest.approx(expected, abs=1e-12)
    # binary vector = columns (1 - p, p): both gaps |2/3 - 1.4/3| = |1/3 - 1.6/3| = 0.2
    binary = classwise_calibration_error([1, 1, 0], np.array([0.9, 0.1, 0.4]), n_bins=1)
    assert binary == pytest.approx(0.2, abs=1e-12)


def test_classwise_ece_uses_all_classes_not_only_the_top_label() -> None:
    # top label always right with confidence 0.5, but the runner-up probabilities are badly off
    y_prob = np.array([[0.5, 0.5, 0.0], [0.5, 0.0, 0.5]])
    y_true = np.array([0, 0])
    assert expected_calibration_error(y_true, y_prob, n_bins=1) == pytest.approx(0.5)
    assert classwise_calibration_error(y_true, y_prob, n_bins=1) == pytest.approx((0.5 + 0.25 + 0.25) / 3)


def test_debiased_ece_hand_computed() -> None:
    # one bin, confidence 0.9, 5 of 10 right: plug-in (0.5 - 0.9)^2 = 0.16, variance 0.25 / 9
    y_prob, y_true = np.full(10, 0.9), np.array([1] * 5 + [0] * 5)
    expected = np.sqrt(0.16 - 0.25 / 9)
    for strategy in ("uniform", "quantile"):
        ece = debiased_calibration_error(y_true, y_prob, n_bins=1, strategy=strategy)
        assert ece == pytest.approx(expected, abs=1e-12)


def test_debiased_ece_ignores_single_sample_bins_and_floors_at_zero() -> None:
    # bins [0.5, 0.75) and [0.75, 1]: the second holds one sample and contributes nothing
    y_prob, y_true = np.array([0.6, 0.6, 0.6, 0.9]), np.array([1, 1, 0, 0])
    plug_in_first = (2 / 3 - 0.6) ** 2 - (2 / 3) * (1 / 3) / 2  # negative: noise explains the whole gap
    assert plug_in_first < 0
    assert debiased_calibration_error(y_true, y_prob, n_bins=2, strategy="uniform") == 0.0


def _plug_in_l2(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int) -> float:
    curve = reliability_curve(y_true, y_prob, n_bins=n_bins, strategy="quantile")
    filled = ~curve.empty
    gaps = (curve.accuracy[filled] - curve.mean_confidence[filled]) ** 2
    return float(np.sqrt(np.sum(curve.count[filled] * gaps) / curve.n_samples))


def test_debiased_ece_is_closer_to_zero_on_calibrated_small_samples() -> None:
    # the true calibration error is 0; over 100 samples of 200 the plug-in averages ~0.11, debiased ~0.02
    rng = np.random.default_rng(11)
    debiased, plug_in = [], []
    for _ in range(100):
        y_prob = rng.uniform(0.5, 1.0, 200)
        y_true = (rng.random(200) < y_prob).astype(int)
        debiased.append(debiased_calibration_error(y_true, y_prob))
        plug_in.append(_plug_in_l2(y_true, y_prob, 15))
    assert np.mean(debiased) < 0.4 * np.mean(plug_in)


@settings(max_examples=60, deadline=None)
@given(
    probs=arrays(np.float64, st.integers(1, 40), elements=st.floats(0.0, 1.0)),
    seed=st.integers(0, 2**32 - 1),
    n_bins=st.integers(1, 20),
)
def test_new_metrics_in_unit_interval_and_permutation_invariant(
    probs: np.ndarray, seed: int, n_bins: int
) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, probs.shape[0])
    order = rng.permutation(probs.shape[0])
    for metric in (adaptive_calibration_error, classwise_calibration_error, debiased_calibration_error):
        value = metric(labels, probs, n_bins=n_bins)
        assert 0.0 <= value <= 1.0
        assert metric(labels[order], probs[order], n_bins=n_bins) == pytest.approx(value, abs=1e-12)
    assert debiased_calibration_error(labels, probs, n_bins=n_bins) <= _plug_in_l2(labels, probs, n_bins) + 1e-12


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 60),
    n_classes=st.integers(2, 5),
    seed=st.integers(0, 2**32 - 1),
    strategy=st.sampled_from(["uniform", "quantile"]),
)
def test_classwise_ece_multiclass_bounds_and_permutation(n: int, n_classes: int, seed: int, strategy: str) -> None:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(n_classes), size=n)
    labels = rng.integers(0, n_classes, n)
    value = classwise_calibration_error(labels, probs, strategy=strategy)
    assert 0.0 <= value <= 1.0
    order = rng.permutation(n)
    assert classwise_calibration_error(labels[order], probs[order], strategy=strategy) == pytest.approx(
        value, abs=1e-12
    )


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_classes=st.integers(2, 5))
def test_new_metrics_near_zero_when_labels_drawn_from_predictions(seed: int, n_classes: int) -> None:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(n_classes), size=20_000)
    labels = np.minimum((rng.random((20_000, 1)) > probs.cumsum(axis=1)).sum(axis=1), n_classes - 1)
    assert adaptive_calibration_error(labels, probs) < 0.03
    assert classwise_calibration_error(labels, probs) < 0.03
    assert debiased_calibration_error(labels, probs) < 0.03


def test_fast_paths_accept_integer_and_bool_inputs() -> None:
    y_prob = np.array([0.2, 0.7, 0.95, 0.5])
    as_int = expected_calibration_error(np.array([0, 1, 1, 0]), y_prob, n_bins=5)
    assert as_int == expected_calibration_error([0.0, 1.0, 1.0, 0.0], y_prob, n_bins=5)
    assert as_int == expected_calibration_error(np.array([False, True, True, False]), y_prob, n_bins=5)
    bool_curve = reliability_curve_from_confidence([0.8, 0.6], np.array([True, False]), n_bins=5)
    np.testing.assert_array_equal(bool_curve.count, reliability_curve_from_confidence([0.8, 0.6], [1, 0], n_bins=5).count)
    with pytest.raises(CalibrationInputError, match="class indices"):
        expected_calibration_error(np.array([0, 2]), np.array([0.3, 0.6]))
    with pytest.raises(CalibrationInputError, match="class indices"):
        expected_calibration_error(np.array([-1, 1]), np.array([0.3, 0.6]))
