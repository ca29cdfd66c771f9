"""One Wilson and one Clopper-Pearson for the whole project, checked against scipy's binomtest intervals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from calibration.intervals import clopper_pearson, clopper_pearson_upper, wilson_interval, wilson_width


@pytest.mark.parametrize("k, n", [(0, 10), (1, 10), (5, 10), (10, 10), (3, 200), (57, 1000)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_both_intervals_equal_scipys(k: int, n: int, confidence: float) -> None:
    wilson = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    exact = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    low, high = wilson_interval(k, n, confidence=confidence)
    assert (float(low), float(high)) == pytest.approx((wilson.low, wilson.high), abs=1e-12)
    low, high = clopper_pearson(k, n, confidence=confidence)
    assert (float(low), float(high)) == pytest.approx((exact.low, exact.high), abs=1e-9)


def test_edges_are_exact_and_empty_counts_fail_closed() -> None:
    low, high = wilson_interval([0, 4, 2], [4, 4, 0])
    assert low[0] == 0.0 and high[1] == 1.0 and np.isnan(low[2]) and np.isnan(high[2])
    assert clopper_pearson_upper([0, 3], [0, 3], delta=0.1).tolist() == [1.0, 1.0]
    assert clopper_pearson(0, 0) == (0.0, 1.0)
    assert wilson_width(0.05, 0) == float("inf")
    # a fractional effective sample size is allowed and sits between its integer neighbours
    assert wilson_width(0.05, 100) > wilson_width(0.05, 100.5) > wilson_width(0.05, 101)
