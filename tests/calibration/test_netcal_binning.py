"""Bin assignment agrees with netcal 1.4's ECE, re-implemented from its published algorithm.

netcal clips confidences to [eps, 1 - eps], then bins with ``np.histogramdd`` and
``scipy.stats.binned_statistic_dd`` over ``np.linspace(0, 1, bins + 1)`` and weights |accuracy - confidence|
by bin counts. The tests check our ECE equals that computation, including values lying exactly on edges.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binned_statistic_dd

from calibration import reliability_curve_from_confidence


def _netcal_style_ece(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    samples = np.clip(confidence, np.finfo(float).eps, 1.0 - np.finfo(float).eps).reshape(-1, 1)
    bounds = [np.linspace(0.0, 1.0, n_bins + 1)]
    count, _ = np.histogramdd(samples, bins=bounds)
    accuracy, _, _ = binned_statistic_dd(samples, correct, statistic="mean", bins=bounds)
    mean_conf, _, _ = binned_statistic_dd(samples, samples[:, 0], statistic="mean", bins=bounds)
    gaps = np.nan_to_num(np.abs(accuracy - mean_conf), nan=0.0)
    return float(np.sum(gaps * count / confidence.shape[0]))


def _netcal_style_counts(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    samples = np.clip(confidence, np.finfo(float).eps, 1.0 - np.finfo(float).eps).reshape(-1, 1)
    return np.histogramdd(samples, bins=[np.linspace(0.0, 1.0, n_bins + 1)])[0].astype(int)


@pytest.mark.parametrize("n_bins", [1, 2, 3, 10, 15, 20])
def test_values_on_every_edge_land_in_the_same_bins(n_bins: int) -> None:
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    nudged = np.concatenate([edges, np.nextafter(edges, 0.0), np.nextafter(edges, 1.0)]).clip(0.0, 1.0)
    ours = reliability_curve_from_confidence(nudged, np.ones_like(nudged), n_bins=n_bins).count
    np.testing.assert_array_equal(ours, _netcal_style_counts(nudged, n_bins))


@settings(max_examples=100, deadline=None)
@given(
    grid=st.lists(st.integers(0, 60), min_size=1, max_size=50),
    n_bins=st.sampled_from([2, 3, 4, 5, 6, 10, 12, 15, 20, 30]),
    seed=st.integers(0, 2**32 - 1),
)
def test_ece_matches_netcal_style_computation(grid: list[int], n_bins: int, seed: int) -> None:
    # multiples of 1/60 hit the edges of every listed bin count, in floating point as users produce them
    confidence = np.array(grid) / 60.0
    correct = np.random.default_rng(seed).integers(0, 2, confidence.shape[0]).astype(float)
    ours = reliability_curve_from_confidence(confidence, correct, n_bins=n_bins).expected_calibration_error
    assert ours == pytest.approx(_netcal_style_ece(confidence, correct, n_bins), abs=1e-12)
