"""Cross-checks against netcal 1.4 itself (the optional ``netcal`` extra) and the BBQ/ENIR adapter.

Skipped, with the reason shown, only when netcal cannot be imported.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibration import (
    expected_calibration_error,
    maximum_calibration_error,
    reliability_curve,
    reliability_curve_from_confidence,
    top_label,
)

pytestmark = pytest.mark.netcal

netcal_metrics = pytest.importorskip(
    "netcal.metrics", reason="netcal extra not installed (pip install -e '.[netcal]'); cross-checks skipped"
)

from calibration.netcal_adapter import (  # noqa: E402
    BBQCalibrator,
    ENIRCalibrator,
    netcal_calibrator_from_dict,
)

TOLERANCE = 1e-9


def _netcal_ece(confidence: np.ndarray, correct: np.ndarray, n_bins: int, *, equal_intervals: bool = True) -> float:
    return float(netcal_metrics.ECE(bins=n_bins, equal_intervals=equal_intervals).measure(confidence, correct))


def _netcal_curve(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> tuple[np.ndarray, ...]:
    ece = netcal_metrics.ECE(bins=n_bins)
    samples, matched, _, bounds, _ = ece.prepare(confidence, correct)
    (accuracy, mean_conf), counts, _, _ = ece.binning(bounds[0], samples[0], matched[0], samples[0][:, 0])
    return accuracy, mean_conf, counts


def _overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.5, 1.0, n)
    return confidence, (rng.random(n) < confidence**3).astype(float)


@pytest.mark.parametrize("n_bins", [1, 5, 10, 15, 20])
def test_ece_equals_netcal_on_continuous_confidence(n_bins: int) -> None:
    confidence, correct = _overconfident(5_000, seed=n_bins)
    ours = reliability_curve_from_confidence(confidence, correct, n_bins=n_bins).expected_calibration_error
    assert ours == pytest.approx(_netcal_ece(confidence, correct, n_bins), abs=TOLERANCE)


@settings(max_examples=60, deadline=None)
@given(
    grid=st.lists(st.integers(0, 60), min_size=3, max_size=80),
    n_bins=st.sampled_from([2, 3, 4, 5, 6, 10, 12, 15, 20, 30]),
    seed=st.integers(0, 2**32 - 1),
)
def test_ece_equals_netcal_with_confidences_on_bin_edges(grid: list[int], n_bins: int, seed: int) -> None:
    confidence = np.array(grid) / 60.0  # multiples of 1/60 lie on the edges of every listed bin count
    correct = np.random.default_rng(seed).integers(0, 2, confidence.shape[0]).astype(float)
    correct[:2] = [0.0, 1.0]  # netcal decides "binary" from the labels it sees; keep both present
    ours = reliability_curve_from_confidence(confidence, correct, n_bins=n_bins).expected_calibration_error
    assert ours == pytest.approx(_netcal_ece(confidence, correct, n_bins), abs=TOLERANCE)


def test_every_edge_and_its_neighbours_binned_like_netcal() -> None:
    edges = np.linspace(0.0, 1.0, 16)
    confidence = np.concatenate([edges, np.nextafter(edges, 0.0), np.nextafter(edges, 1.0)]).clip(0.0, 1.0)
    correct = np.tile([1.0, 0.0, 1.0], confidence.shape[0] // 3 + 1)[: confidence.shape[0]]
    curve = reliability_curve_from_confidence(confidence, correct, n_bins=15)
    accuracy, mean_conf, counts = _netcal_curve(confidence, correct, 15)
    np.testing.assert_array_equal(curve.count, counts.astype(int))
    assert curve.expected_calibration_error == pytest.approx(_netcal_ece(confidence, correct, 15), abs=TOLERANCE)


def test_reliability_curve_equals_netcal_binning() -> None:
    confidence, correct = _overconfident(3_000, seed=4)
    curve = reliability_curve_from_confidence(confidence, correct, n_bins=15)
    accuracy, mean_conf, counts = _netcal_curve(confidence, correct, 15)
    np.testing.assert_array_equal(curve.count, counts.astype(int))
    filled = ~curve.empty
    np.testing.assert_allclose(curve.accuracy[filled], accuracy[filled], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(curve.mean_confidence[filled], mean_conf[filled], rtol=0, atol=TOLERANCE)
    assert np.all(accuracy[~filled] == 0.0)  # netcal fills empty bins with 0; ours keeps NaN and flags them


def test_multiclass_top_label_ece_and_mce_equal_netcal() -> None:
    rng = np.random.default_rng(8)
    logits = rng.normal(0, 2, (4_000, 6))
    y_prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y_true = rng.integers(0, 6, 4_000)
    assert expected_calibration_error(y_true, y_prob) == pytest.approx(
        float(netcal_metrics.ECE(bins=15).measure(y_prob, y_true)), abs=TOLERANCE
    )
    assert maximum_calibration_error(y_true, y_prob) == pytest.approx(
        float(netcal_metrics.MCE(bins=15).measure(y_prob, y_true)), abs=TOLERANCE
    )


@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_binary_vector_equals_netcal_on_the_same_input(n_bins: int) -> None:
    # both read a (n,) input as P(y = 1) against y == 1
    rng = np.random.default_rng(2 + n_bins)
    y_prob = rng.uniform(0, 1, 4_000)
    y_true = (rng.random(4_000) < y_prob**1.4).astype(int)
    assert expected_calibration_error(y_true, y_prob, n_bins=n_bins) == pytest.approx(
        float(netcal_metrics.ECE(bins=n_bins).measure(y_prob, y_true)), abs=TOLERANCE
    )
    assert maximum_calibration_error(y_true, y_prob, n_bins=n_bins) == pytest.approx(
        float(netcal_metrics.MCE(bins=n_bins).measure(y_prob, y_true)), abs=TOLERANCE
    )
    np.testing.assert_array_equal(reliability_curve(y_true, y_prob, n_bins=n_bins).count,
                                  _netcal_curve(y_prob, y_true.astype(float), n_bins)[2])


def test_binary_top_label_matrix_equals_netcal_on_confidence_and_hit() -> None:
    rng = np.random.default_rng(3)
    y_prob = rng.uniform(0, 1, 4_000)
    y_true = (rng.random(4_000) < y_prob).astype(int)
    confidence, predicted = top_label(y_prob)
    correct = (predicted == y_true).astype(float)
    matrix = np.column_stack([1 - y_prob, y_prob])
    assert expected_calibration_error(y_true, matrix) == pytest.approx(
        _netcal_ece(confidence, correct, 15), abs=TOLERANCE
    )


@pytest.mark.parametrize("n_bins", [5, 10, 15])
def test_quantile_ece_equals_netcal_equal_mass(n_bins: int) -> None:
    confidence, correct = _overconfident(5_000, seed=20 + n_bins)
    ours = reliability_curve_from_confidence(confidence, correct, n_bins=n_bins, strategy="quantile")
    netcal = _netcal_ece(confidence, correct, n_bins, equal_intervals=False)
    assert ours.expected_calibration_error == pytest.approx(netcal, abs=TOLERANCE)


@pytest.mark.parametrize("cls", [BBQCalibrator, ENIRCalibrator])
def test_adapter_calibrators_fit_predict_and_round_trip(cls: type) -> None:
    confidence, correct = _overconfident(1_500, seed=1)
    calibrator = cls()
    assert calibrator.fit(confidence, correct) is calibrator
    calibrated = calibrator.predict(confidence)
    assert calibrated.shape == confidence.shape and np.all((calibrated >= 0) & (calibrated <= 1))
    before = reliability_curve_from_confidence(confidence, correct).expected_calibration_error
    after = reliability_curve_from_confidence(calibrated, correct).expected_calibration_error
    assert after < before
    restored = netcal_calibrator_from_dict(json.loads(json.dumps(calibrator.to_dict())))
    grid = np.linspace(0, 1, 2001)
    np.testing.assert_allclose(restored.predict(grid), calibrator.predict(grid), atol=1e-12)
