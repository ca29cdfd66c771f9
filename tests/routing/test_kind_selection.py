"""routing.kind_selection: the active-learning selectors of generated responses, preference pairs and
extractions (hand-computed cases, sizes, determinism, and diversity that actually spreads a batch)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.kind_selection import (
    EXTRACTION_REASON,
    GENERATION_REASON,
    PAIRWISE_REASON,
    binary_uncertainty,
    document_uncertainty,
    select_documents,
    select_pairs,
    select_responses,
)


def test_binary_uncertainty_hand_computed_and_fails_loud():
    np.testing.assert_allclose(binary_uncertainty([0.0, 0.5, 0.25, 1.0, 0.9]), [0.0, 1.0, 0.5, 0.0, 0.2])
    for bad in ([0.2, np.nan], [1.2], [[0.5]], ["x"]):
        with pytest.raises(ValueError, match="probabilities"):
            binary_uncertainty(bad)


def test_select_responses_takes_those_nearest_one_half_first():
    chosen = select_responses([0.9, 0.52, 0.1, 0.45, 0.7], budget=3, rng=np.random.default_rng(0))
    assert chosen.indices.tolist() == [1, 3, 4]
    assert chosen.reasons == (GENERATION_REASON,) * 3 and (chosen.probabilities == 1.0).all()
    assert len(select_responses([0.3, 0.6], budget=10, rng=np.random.default_rng(0))) == 2
    assert len(select_responses([0.3, 0.6], budget=0, rng=np.random.default_rng(0))) == 0
    for budget in (-1, 2.5, True):
        with pytest.raises(ValueError, match="budget"):
            select_responses([0.3, 0.6], budget=budget, rng=np.random.default_rng(0))


def test_ties_are_broken_by_the_rng_and_reproducibly():
    p = np.full(50, 0.5)
    first = select_responses(p, budget=5, rng=np.random.default_rng(1)).indices
    assert (select_responses(p, budget=5, rng=np.random.default_rng(1)).indices == first).all()
    assert not (select_responses(p, budget=5, rng=np.random.default_rng(2)).indices == first).all()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=40), st.integers(0, 45), st.integers(0, 2**16))
def test_selected_responses_are_never_less_uncertain_than_the_rest(p, budget, seed):
    chosen = select_responses(p, budget=budget, rng=np.random.default_rng(seed)).indices
    assert len(chosen) == min(budget, len(p)) and len(set(chosen.tolist())) == len(chosen)
    uncertainty = binary_uncertainty(p)
    rest = np.setdiff1d(np.arange(len(p)), chosen)
    if len(chosen) and len(rest):
        assert uncertainty[chosen].min() >= uncertainty[rest].max()
    assert (np.diff(uncertainty[chosen]) <= 0).all()  # most uncertain first


def _three_kinds_of_pair(rng: np.random.Generator):
    """Three tight clusters of ten pair descriptions; cluster 0 holds the most uncertain pairs by far."""
    cluster = np.repeat([0, 1, 2], 10)
    features = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])[cluster] + rng.normal(0, 0.05, (30, 2))
    p = np.where(cluster == 0, 0.51, np.where(cluster == 1, 0.7, 0.25)) + rng.uniform(0, 0.01, 30)
    return p, features, cluster


def test_diverse_pairs_spread_over_kinds_of_pair_where_plain_uncertainty_does_not():
    p, features, cluster = _three_kinds_of_pair(np.random.default_rng(0))
    plain = select_pairs(p, features, budget=3, rng=np.random.default_rng(1), diverse=False)
    assert set(cluster[plain.indices]) == {0}
    spread = select_pairs(p, features, budget=3, rng=np.random.default_rng(1))
    assert sorted(cluster[spread.indices]) == [0, 1, 2]
    assert spread.indices[0] == int(np.argmax(binary_uncertainty(p)))  # the most uncertain pair leads
    assert spread.reasons == (PAIRWISE_REASON,) * 3


def test_pair_selection_does_not_depend_on_which_response_is_a():
    p, features, _ = _three_kinds_of_pair(np.random.default_rng(3))
    for diverse in (True, False):
        chosen = select_pairs(p, features, budget=4, rng=np.random.default_rng(5), diverse=diverse).indices
        swapped = select_pairs(1.0 - p, features, budget=4, rng=np.random.default_rng(5), diverse=diverse).indices
        assert chosen.tolist() == swapped.tolist()


def test_pair_selection_sizes_and_feature_shape():
    p, features, _ = _three_kinds_of_pair(np.random.default_rng(0))
    assert len(select_pairs(p, features, budget=0, rng=np.random.default_rng(0))) == 0
    assert len(select_pairs(p[:2], features[:2], budget=5, rng=np.random.default_rng(0))) == 2
    with pytest.raises(ValueError, match="one row per item"):
        select_pairs(p, features[:5], budget=3, rng=np.random.default_rng(0))


def test_document_uncertainty_is_its_most_uncertain_field():
    p = [0.9, 0.5, 0.99, 0.2, 0.7]
    np.testing.assert_allclose(document_uncertainty(p, [0, 0, 1, 2, 2]), [1.0, 0.02, 0.6])
    np.testing.assert_allclose(document_uncertainty(p, [0, 0, 1, 2, 2], n_documents=4), [1.0, 0.02, 0.6, 0.0])
    with pytest.raises(ValueError, match="one integer document number per field"):
        document_uncertainty(p, [0, 0, 1])
    with pytest.raises(ValueError, match="one integer document number per field"):
        document_uncertainty(p, [0.0, 0.0, 1.0, 2.0, 2.0])
    with pytest.raises(ValueError, match=">= 0"):
        document_uncertainty(p, [0, 0, -1, 2, 2])
    with pytest.raises(ValueError, match="n_documents=2"):
        document_uncertainty(p, [0, 0, 1, 2, 2], n_documents=2)


def test_a_document_with_one_doubtful_field_comes_before_one_mildly_unsure_throughout():
    # document 0: a sure field and a doubtful one (uncertainty 0.02 and 0.9, mean 0.46); document 1: two mild
    # doubts (0.6 each, mean 0.6). By the mean, document 1 would come first.
    p, owner = [0.99, 0.55, 0.7, 0.7, 0.98], [0, 0, 1, 1, 2]
    chosen = select_documents(p, owner, budget=3, rng=np.random.default_rng(0))
    assert chosen.indices.tolist() == [0, 1, 2] and chosen.reasons == (EXTRACTION_REASON,) * 3
    assert select_documents(p, owner, budget=1, rng=np.random.default_rng(0)).indices.tolist() == [0]
    assert len(select_documents(p, owner, budget=9, rng=np.random.default_rng(0))) == 3
