"""Tests for routing.probabilistic_review: the budget is met exactly, the floor and 1 hold, draws are reproducible,
and the cap never changes the design's probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from routing.probabilistic_review import draw_for_review, inclusion_probabilities, overflow_bound


def test_probabilities_sum_to_the_budget_within_floor_and_one() -> None:
    uncertainty = np.random.default_rng(0).beta(1, 10, 5_000)
    pi = inclusion_probabilities(uncertainty, budget=300, floor=0.02)
    assert pi.sum() == pytest.approx(300, abs=1e-6)
    assert pi.min() >= 0.02 and pi.max() <= 1.0
    assert (pi > 0.02).any() and np.all(np.diff(pi[np.argsort(uncertainty)]) >= -1e-12)  # monotone in uncertainty


def test_hand_computed_scale_and_the_two_limits() -> None:
    # u = (0, 1, 2, 3), floor 0.1, budget 1.6: pi = (0.1, max(0.1, c), 2c, 3c) with 0.1 + 6c = 1.6 -> c = 0.25
    assert inclusion_probabilities([0, 1, 2, 3], budget=1.6, floor=0.1) == pytest.approx([0.1, 0.25, 0.5, 0.75])
    # the floor alone asks for more than the budget: the floor wins (every item must stay drawable)
    assert inclusion_probabilities([0, 1, 2, 3], budget=0.2, floor=0.1) == pytest.approx([0.1] * 4)
    # every uncertain item certain and still under budget: that is all there is
    assert inclusion_probabilities([0, 1, 2, 3], budget=10, floor=0.1) == pytest.approx([0.1, 1, 1, 1])
    assert inclusion_probabilities([], budget=5, floor=0.1).shape == (0,)


def test_power_shapes_the_weights() -> None:
    pi = inclusion_probabilities([1, 4], budget=0.6, floor=0.0, power=0.5)
    assert pi == pytest.approx([0.2, 0.4])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"budget": -1, "floor": 0.1}, "budget"), ({"budget": 1, "floor": 1.5}, "floor"),
    ({"budget": 1, "floor": 0.1, "power": 0}, "power"),
])
def test_bad_design_raises(kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        inclusion_probabilities([0.1, 0.2], **kwargs)
    with pytest.raises(ValueError, match="uncertainty"):
        inclusion_probabilities([0.1, np.nan], budget=1, floor=0.1)


def test_draw_is_deterministic_for_a_seed_and_independent_bernoulli() -> None:
    pi = inclusion_probabilities(np.random.default_rng(1).random(2_000), budget=400, floor=0.05)
    first = draw_for_review(pi, cap=None, rng=np.random.default_rng(7))
    again = draw_for_review(pi, cap=None, rng=np.random.default_rng(7))
    assert np.array_equal(first.drawn, again.drawn) and np.array_equal(first.labelled, first.drawn)
    assert not first.capped and first.expected_count == pytest.approx(400)
    counts = np.array([draw_for_review(pi, cap=None, rng=np.random.default_rng(s)).drawn.sum() for s in range(200)])
    assert abs(counts.mean() - 400) < 4 * np.sqrt((pi * (1 - pi)).sum() / 200)


def test_cap_keeps_the_design_and_marks_the_rest_unlabelled() -> None:
    pi = np.full(1_000, 0.1)
    draw = draw_for_review(pi, cap=50, rng=np.random.default_rng(3))
    assert draw.drawn.sum() > 50 and draw.labelled.sum() == 50 and draw.capped
    assert np.array_equal(draw.inclusion_probability, pi)  # probabilities are never rescaled
    assert not (draw.labelled & ~draw.drawn).any()
    assert draw.overflow_bound == 1.0  # a cap under the expected count binds for sure
    # a cap well above the budget: the Chernoff bound on binding is small, and it bounds the simulated rate
    roomy = overflow_bound(pi, 100 + 4 * 10)
    assert roomy < 0.01
    rates = np.mean([draw_for_review(pi, cap=115, rng=np.random.default_rng(s)).capped for s in range(500)])
    assert rates <= overflow_bound(pi, 115) + 0.02
    assert overflow_bound(pi, None) == 0.0
