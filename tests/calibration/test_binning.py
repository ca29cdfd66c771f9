"""Tests for calibration._binning: the O(1) equal-width assignment equals searchsorted on the same edges."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from calibration._binning import assign_bins


def _searchsorted_bins(confidence: np.ndarray, edges: np.ndarray) -> np.ndarray:
    index = np.searchsorted(edges, confidence, side="right") - 1
    return np.clip(index, 0, edges.shape[0] - 2)


@settings(max_examples=200, deadline=None)
@given(
    values=arrays(np.float64, st.integers(1, 50), elements=st.floats(0.0, 1.0)),
    n_bins=st.integers(1, 200),
)
def test_uniform_fast_path_equals_searchsorted(values: np.ndarray, n_bins: int) -> None:
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    near_edges = np.concatenate([edges, np.nextafter(edges, 0.0), np.nextafter(edges, 1.0)]).clip(0.0, 1.0)
    confidence = np.concatenate([values, near_edges])
    np.testing.assert_array_equal(assign_bins(confidence, edges), _searchsorted_bins(confidence, edges))


def test_every_multiple_of_small_fractions_is_binned_like_searchsorted() -> None:
    for n_bins in (3, 7, 10, 15, 30, 100):
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        for denominator in (3, 6, 7, 10, 15, 30, 45, 60, 100, 1000):
            confidence = np.arange(denominator + 1) / denominator
            np.testing.assert_array_equal(assign_bins(confidence, edges), _searchsorted_bins(confidence, edges))


def test_non_uniform_edges_use_searchsorted() -> None:
    edges = np.array([0.0, 0.1, 0.5, 1.0])
    np.testing.assert_array_equal(assign_bins(np.array([0.0, 0.1, 0.3, 0.5, 1.0]), edges), [0, 1, 1, 2, 2])
