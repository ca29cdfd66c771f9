"""Tests for routing.guard: hand-computed wealth, input checks, anytime validity under the null and power above it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.guard import BET_FRACTIONS, live_error_guard

ALPHA, DELTA = 0.05, 0.1


def test_no_audits_is_no_evidence() -> None:
    result = live_error_guard([], alpha=ALPHA, delta=DELTA)
    assert not result.halted and result.e_value == 1.0 and result.n_audited == 0 and result.observed_error is None


def test_wealth_hand_computed() -> None:
    errors = [False, True, False, False]
    bets = BET_FRACTIONS / ALPHA
    expected = np.mean((1 + bets * (1 - ALPHA)) * (1 - bets * ALPHA) ** 3)
    result = live_error_guard(errors, alpha=ALPHA, delta=DELTA)
    assert result.e_value == pytest.approx(expected, rel=1e-12)
    assert result.n_audited == 4 and result.n_errors == 1 and not result.halted
    # two errors in three audits against a 5% target is already overwhelming evidence
    assert live_error_guard([True, False, True], alpha=ALPHA, delta=DELTA).halted


def test_halts_at_the_first_crossing_and_counts_up_to_it() -> None:
    errors = np.zeros(200, dtype=bool)
    errors[:6] = True  # six errors in a row: wealth of the largest bet (0.7 / alpha) grows 14.3x per error
    result = live_error_guard(errors, alpha=ALPHA, delta=DELTA)
    assert result.halted and result.halted_at is not None and result.halted_at < 6
    assert result.n_audited == result.halted_at + 1 and result.n_errors == result.n_audited
    assert result.e_value >= 1 / DELTA


def test_correct_audits_never_halt() -> None:
    result = live_error_guard(np.zeros(10_000, dtype=bool), alpha=ALPHA, delta=DELTA)
    assert not result.halted and result.e_value < 1.0


@pytest.mark.parametrize("bad", [[0, 2], [[0, 1]], [0.5]])
def test_rejects_bad_errors(bad) -> None:
    with pytest.raises(ValueError, match="errors"):
        live_error_guard(bad, alpha=ALPHA, delta=DELTA)


@pytest.mark.parametrize("level", [0.0, 1.0, float("nan")])
def test_rejects_bad_levels(level: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        live_error_guard([0], alpha=level, delta=DELTA)
    with pytest.raises(ValueError, match="delta"):
        live_error_guard([0], alpha=ALPHA, delta=level)


def test_anytime_false_halt_rate_at_most_delta_at_the_null_boundary() -> None:
    # error exactly alpha, 2,000 audits each, looked at after every audit: Ville bounds the halts by delta
    rng = np.random.default_rng(0)
    runs = 2_000
    halts = sum(live_error_guard(rng.random(2_000) < ALPHA, alpha=ALPHA, delta=DELTA).halted for _ in range(runs))
    # binomial slack: 3 standard errors above delta
    assert halts / runs <= DELTA + 3 * math.sqrt(DELTA * (1 - DELTA) / runs)


def test_halts_with_high_probability_when_the_error_is_twice_the_target() -> None:
    rng = np.random.default_rng(1)
    results = [live_error_guard(rng.random(1_000) < 2 * ALPHA, alpha=ALPHA, delta=DELTA) for _ in range(300)]
    assert np.mean([r.halted for r in results]) >= 0.8
    assert np.median([r.halted_at for r in results if r.halted]) < 600


@settings(max_examples=50, deadline=None)
@given(errors=st.lists(st.booleans(), min_size=1, max_size=200))
def test_halting_is_monotone_in_added_errors(errors: list[bool]) -> None:
    # turning a correct audit into an error never delays a halt
    base = live_error_guard(errors, alpha=ALPHA, delta=DELTA)
    if False in errors:
        worse = list(errors)
        worse[errors.index(False)] = True
        other = live_error_guard(worse, alpha=ALPHA, delta=DELTA)
        assert other.e_value >= base.e_value or other.halted
        if base.halted:
            assert other.halted and other.halted_at <= base.halted_at
