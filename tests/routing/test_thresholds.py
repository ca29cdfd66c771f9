"""Tests for routing.thresholds: exact small cases, input checks, and the statistical validity check."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from routing.thresholds import (
    ThresholdResult,
    clopper_pearson_upper,
    guaranteed_threshold,
    default_start_count,
    minimum_count,
    naive_threshold,
)

ALPHA, DELTA = 0.05, 0.1


def test_minimum_count_matches_the_zero_error_bound() -> None:
    assert minimum_count(alpha=ALPHA, delta=DELTA) == 45
    assert (
        clopper_pearson_upper(0, 45, delta=DELTA)[()] <= ALPHA < clopper_pearson_upper(0, 44, delta=DELTA)[()]
    )
    assert clopper_pearson_upper(0, 45, delta=DELTA)[()] == pytest.approx(1 - DELTA ** (1 / 45))
    assert (
        clopper_pearson_upper(3, 3, delta=DELTA)[()] == 1.0
        and clopper_pearson_upper(0, 0, delta=DELTA)[()] == 1.0
    )


def test_all_correct_items_certify_the_lowest_candidate() -> None:
    confidence = np.linspace(0.5, 1.0, 45)
    result = guaranteed_threshold(confidence, np.ones(45, bool), alpha=ALPHA, delta=DELTA, min_count=45)
    assert (
        result.threshold == 0.5 and result.coverage == 1.0 and result.n_accepted == 45 and result.tested == 1
    )
    assert result.error_upper_bound == pytest.approx(1 - DELTA ** (1 / 45))
    assert result.empirical_error == 0.0


def test_too_few_items_certify_nothing() -> None:
    result = guaranteed_threshold(np.linspace(0.5, 1, 44), np.ones(44, bool), alpha=ALPHA, delta=DELTA)
    assert result == ThresholdResult(None, 0.0, None, 44, 0, 0, ALPHA, DELTA)
    empty = guaranteed_threshold([], [], alpha=ALPHA, delta=DELTA)
    assert empty.threshold is None and empty.n == 0 and empty.coverage == 0.0


def test_sequence_stops_at_first_failure_even_if_lower_candidates_would_pass() -> None:
    # 100 correct items at the top, 30 wrong ones in the middle, then 10,000 correct ones at the bottom:
    # the full set has error 30/10130 < alpha, but the walk down fails inside the wrong band and stops there.
    confidence = np.concatenate([np.full(100, 0.99), np.full(30, 0.8), np.full(10_000, 0.6)])
    correct = np.concatenate([np.ones(100, bool), np.zeros(30, bool), np.ones(10_000, bool)])
    result = guaranteed_threshold(confidence, correct, alpha=ALPHA, delta=DELTA, grid=[0.99, 0.8, 0.6])
    assert result.threshold == 0.99 and result.n_accepted == 100 and result.tested == 2
    assert naive_threshold(confidence, correct, alpha=ALPHA) == 0.6


def test_start_skips_candidates_with_too_few_items_above() -> None:
    confidence = np.concatenate([np.full(10, 0.999), np.full(200, 0.9)])
    correct = np.concatenate([np.zeros(1, bool), np.ones(209, bool)])  # one error in the top ten
    result = guaranteed_threshold(confidence, correct, alpha=ALPHA, delta=DELTA, grid=[0.999, 0.9])
    assert result.threshold == 0.9 and result.tested == 1  # 0.999 has 10 < 45 items: never tested
    strict = guaranteed_threshold(
        confidence, correct, alpha=ALPHA, delta=DELTA, grid=[0.999, 0.9], min_count=5
    )
    assert strict.threshold is None and strict.tested == 1


def test_grid_thresholds_are_inclusive_and_counts_exact() -> None:
    confidence = np.repeat([0.7, 0.8, 0.9], 100)
    correct = np.ones(300, bool)
    correct[:20] = False  # all errors at 0.7
    result = guaranteed_threshold(confidence, correct, alpha=ALPHA, delta=DELTA)
    assert result.threshold == 0.8 and result.n_accepted == 200 and result.coverage == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("confidence", "correct", "kwargs", "match"),
    [
        ([0.5, np.nan], [1, 1], {}, "confidence"),
        ([0.5, 1.2], [1, 1], {}, "confidence"),
        ([[0.5]], [1], {}, "1-D"),
        ([0.5, 0.6], [1], {}, "length mismatch"),
        ([0.5, 0.6], [1, 2], {}, "correct"),
        ([0.5], [1], {"alpha": 0.0}, "alpha"),
        ([0.5], [1], {"delta": 1.0}, "delta"),
        ([0.5], [1], {"grid": [np.nan]}, "grid"),
        ([0.5], [1], {"min_count": 0}, "min_count"),
    ],
)
def test_bad_input_raises(confidence, correct, kwargs, match: str) -> None:
    options = {"alpha": ALPHA, "delta": DELTA, **kwargs}
    with pytest.raises(ValueError, match=match):
        guaranteed_threshold(confidence, correct, **options)


# --- validity check -------------------------------------------------------------------------------------------
# Calibrated scores with known truth: confidence c = 1 - 0.5 * Beta(1, 3), and the output is correct with
# probability c. The realised error of a threshold is measured on one large test draw, fresh with respect to
# every calibration draw. Monte-Carlo slack: if the true violation probability were exactly delta = 0.1, the
# count of violating draws out of 200 is Binomial(200, 0.1); we fail only above its 99.9% quantile (34), so a
# valid method fails this test with probability < 0.1%.

N_DRAWS, N_CALIBRATION, N_TEST = 200, 1000, 1_000_000


def _draw(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    confidence = 1.0 - 0.5 * rng.beta(1.0, 3.0, size)
    return confidence, rng.random(size) < confidence


def _realised_error(test_confidence: np.ndarray, test_correct: np.ndarray):
    order = np.argsort(test_confidence)
    ordered = test_confidence[order]
    errors_below = np.concatenate([[0], np.cumsum(~test_correct[order])])

    def error_and_coverage(thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cut = np.searchsorted(ordered, thresholds, side="left")
        accepted = ordered.shape[0] - cut
        errors = errors_below[-1] - errors_below[cut]
        return errors / np.maximum(accepted, 1), accepted / ordered.shape[0]

    return error_and_coverage


def test_guaranteed_threshold_is_valid_and_naive_is_not() -> None:
    rng = np.random.default_rng(20240604)
    measure = _realised_error(*_draw(rng, N_TEST))
    guaranteed = np.full(N_DRAWS, np.inf)  # inf: nothing auto-accepted, which never violates
    naive = np.full(N_DRAWS, np.inf)
    for draw in range(N_DRAWS):
        confidence, correct = _draw(rng, N_CALIBRATION)
        result = guaranteed_threshold(confidence, correct, alpha=ALPHA, delta=DELTA)
        guaranteed[draw] = np.inf if result.threshold is None else result.threshold
        naive[draw] = naive_threshold(confidence, correct, alpha=ALPHA) or np.inf
    g_error, g_coverage = measure(guaranteed)
    n_error, _ = measure(naive)
    oracle_grid = np.linspace(0.5, 1.0, 5001)
    oracle_error, oracle_coverage = measure(oracle_grid)
    oracle = float(oracle_coverage[np.argmax(oracle_error <= ALPHA)])
    g_violations, n_violations = int((g_error > ALPHA).sum()), int((n_error > ALPHA).sum())
    slack = int(binom.ppf(0.999, N_DRAWS, DELTA))
    print(
        f"violations guaranteed {g_violations}/{N_DRAWS}, naive {n_violations}/{N_DRAWS}; "
        f"mean coverage {g_coverage.mean():.3f} (oracle {oracle:.3f})"
    )
    assert g_violations <= slack
    assert n_violations >= 0.3 * N_DRAWS and n_violations >= 4 * max(g_violations, 1)
    assert 0.1 < g_coverage.mean() < oracle


def test_min_count_default_is_the_ceiling_formula() -> None:
    for alpha, delta in [(0.05, 0.1), (0.01, 0.05), (0.2, 0.2)]:
        assert minimum_count(alpha=alpha, delta=delta) == math.ceil(math.log(delta) / math.log(1 - alpha))


def test_by_default_fewer_items_than_the_start_count_certify_nothing() -> None:
    confidence = np.linspace(0.5, 1.0, 99)
    result = guaranteed_threshold(confidence, np.ones(99, bool), alpha=ALPHA, delta=DELTA)
    assert result.threshold is None and result.coverage == 0.0
    assert default_start_count(alpha=ALPHA, delta=DELTA) == 100
    assert default_start_count(alpha=0.01, delta=DELTA) == 2 * minimum_count(alpha=0.01, delta=DELTA)


def test_result_counts_the_errors_at_the_threshold() -> None:
    confidence = np.linspace(0.5, 1.0, 400)
    correct = np.ones(400, bool)
    correct[[250, 300]] = False  # two errors in the upper half
    result = guaranteed_threshold(confidence, correct, alpha=0.05, delta=DELTA)
    above = confidence >= result.threshold
    assert result.n_errors == int((~correct[above]).sum()) == 2 and result.n_accepted == int(above.sum())
