"""Contract tests every active-learning strategy must pass, plus exact utility values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing import STRATEGIES, Selection, entropy, least_confidence, margin, select_batch

ALL_STRATEGIES = sorted(STRATEGIES)
UNCERTAINTY_STRATEGIES = [s for s in ALL_STRATEGIES if s not in ("random", "diverse")]


def _pool(n: int, k: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(k), size=n)


def test_utilities_hand_computed() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.4, 0.4, 0.2], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(least_confidence(probs), [0.3, 0.6, 0.0])
    np.testing.assert_allclose(margin(probs), [0.5, 1.0, 0.0])
    expected = [
        -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1)),
        -(2 * 0.4 * np.log(0.4) + 0.2 * np.log(0.2)),
        0.0,
    ]
    np.testing.assert_allclose(entropy(probs), expected)


# ---- the contract: every strategy ---------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_contract_selects_budget_distinct_valid_indices(strategy: str) -> None:
    selection = select_batch(_pool(40), budget=7, strategy=strategy, rng=np.random.default_rng(0))
    assert isinstance(selection, Selection) and len(selection) == 7
    assert selection.indices.dtype.kind == "i" and np.unique(selection.indices).shape == (7,)
    assert ((selection.indices >= 0) & (selection.indices < 40)).all()
    assert selection.reasons == (strategy,) * 7
    assert selection.probabilities.shape == (7,)
    assert ((selection.probabilities > 0) & (selection.probabilities <= 1)).all()


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_contract_empty_pool_gives_empty_selection(strategy: str) -> None:
    selection = select_batch(np.empty((0, 3)), budget=5, strategy=strategy, rng=np.random.default_rng(0))
    assert len(selection) == 0 and selection.reasons == () and selection.probabilities.shape == (0,)


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_contract_zero_budget_gives_empty_selection(strategy: str) -> None:
    assert len(select_batch(_pool(5), budget=0, strategy=strategy, rng=np.random.default_rng(0))) == 0


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
@pytest.mark.parametrize("budget", [10, 11, 100])
def test_contract_budget_at_least_pool_takes_everything_with_certainty(strategy: str, budget: int) -> None:
    selection = select_batch(_pool(10), budget=budget, strategy=strategy, rng=np.random.default_rng(0))
    assert sorted(selection.indices.tolist()) == list(range(10))
    np.testing.assert_array_equal(selection.probabilities, 1.0)


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_contract_same_seed_same_selection(strategy: str) -> None:
    pool = _pool(30)
    first = select_batch(pool, budget=5, strategy=strategy, rng=np.random.default_rng(4))
    second = select_batch(pool, budget=5, strategy=strategy, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(first.indices, second.indices)


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_contract_negative_budget_raises(strategy: str) -> None:
    with pytest.raises(ValueError, match="budget must be >= 0, got -1"):
        select_batch(_pool(5), budget=-1, strategy=strategy, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="budget must be an integer"):
        select_batch(_pool(5), budget=2.5, strategy=strategy, rng=np.random.default_rng(0))  # type: ignore[arg-type]


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
@pytest.mark.parametrize(
    ("probs", "match"),
    [
        (np.array([[0.5, np.nan]]), "finite"),
        (np.array([[1.2, -0.2]]), r"\[0, 1\]"),
        (np.array([[0.5, 0.6]]), "sum to one"),
        (np.array([0.5, 0.5]), "shape"),
        (np.array([[1.0], [1.0]]), "k >= 2"),
    ],
)
def test_contract_bad_probabilities_raise(strategy: str, probs: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        select_batch(probs, budget=1, strategy=strategy, rng=np.random.default_rng(0))


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 60), k=st.integers(2, 6), budget=st.integers(0, 80), seed=st.integers(0, 2**32 - 1))
def test_contract_property_size_and_uniqueness(strategy: str, n: int, k: int, budget: int, seed: int) -> None:
    pool = np.random.default_rng(seed).dirichlet(np.ones(k), size=n) if n else np.empty((0, k))
    selection = select_batch(pool, budget=budget, strategy=strategy, rng=np.random.default_rng(seed))
    assert len(selection) == min(budget, n) == np.unique(selection.indices).shape[0] == len(selection.reasons)


# ---- strategy-specific behaviour -----------------------------------------------------------------------


@pytest.mark.parametrize("strategy", UNCERTAINTY_STRATEGIES)
def test_uncertainty_strategies_pick_the_most_uncertain_first(strategy: str) -> None:
    probs = np.array([[0.98, 0.01, 0.01], [0.34, 0.33, 0.33], [0.6, 0.3, 0.1], [0.9, 0.05, 0.05]])
    selection = select_batch(probs, budget=2, strategy=strategy, rng=np.random.default_rng(0))
    assert selection.indices.tolist() == [1, 2]
    np.testing.assert_array_equal(selection.probabilities, 1.0)


@pytest.mark.parametrize("strategy", UNCERTAINTY_STRATEGIES)
def test_ties_are_broken_by_rng(strategy: str) -> None:
    probs = np.tile([0.5, 0.5], (20, 1))
    picks = {
        tuple(select_batch(probs, budget=3, strategy=strategy, rng=np.random.default_rng(s)).indices)
        for s in range(10)
    }
    assert len(picks) > 1


def test_random_strategy_probability_and_spread() -> None:
    pool = _pool(50)
    selection = select_batch(pool, budget=10, strategy="random", rng=np.random.default_rng(0))
    np.testing.assert_allclose(selection.probabilities, 10 / 50)
    counts = np.zeros(50)
    for seed in range(400):
        counts[select_batch(pool, budget=10, strategy="random", rng=np.random.default_rng(seed)).indices] += 1
    assert counts.min() > 40 and counts.max() < 125  # each item is chosen about 80 times


def test_unknown_strategy_lists_valid_names() -> None:
    with pytest.raises(
        ValueError, match="unknown strategy 'bald'.*entropy.*least_confidence.*margin.*random"
    ):
        select_batch(_pool(5), budget=1, strategy="bald", rng=np.random.default_rng(0))


def test_probability_matrix_spans_the_union_of_classes_and_fills_label_only_items() -> None:
    from routing.sampling import probability_matrix

    matrix = probability_matrix([{"a": 0.7, "b": 0.3}, None, {"c": 1.0}], ["a", "b", "c"], [0.7, 0.9, 1.0])
    # classes sorted: "\0other" (the label-only item's rest), "a", "b", "c"
    assert matrix.tolist() == [[0.0, 0.7, 0.3, 0.0], [pytest.approx(0.1), 0.0, 0.9, 0.0], [0.0, 0.0, 0.0, 1.0]]
    assert probability_matrix([], [], []).shape == (0, 1)
    with pytest.raises(ValueError, match="length mismatch"):
        probability_matrix([None], [], [0.5])
