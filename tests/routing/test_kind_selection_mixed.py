"""routing.kind_selection.select_by_kind: one review budget over a batch of mixed kinds, each kind choosing by its
own uncertainty (hand-computed cases, the budget shared by one usefulness scale, a pure classification batch
chosen exactly as select_batch chooses it, random staying uniform)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.kind_selection import (
    EXTRACTION_REASON,
    GENERATION_REASON,
    KIND_REASONS,
    PAIRWISE_REASON,
    KindBatch,
    allot_budget,
    kind_uncertainty,
    select_by_kind,
    usefulness,
)
from routing.sampling import select_batch
from store.vocab import Selection

NAN = float("nan")


def mixed_batch() -> KindBatch:
    """0, 1: classifications (margins 0.9 and 0.15); 2, 3: responses at P(accept) 0.55 and 0.95; 4, 5: pairs at
    0.9 and 0.6; 6, 7: documents whose fields are (0.97, 0.5) and (0.8, 0.8, 0.99)."""
    return KindBatch(
        kinds=("classification", "classification", "generation", "generation", "pairwise", "pairwise",
               "extraction", "extraction"),
        class_probs=np.array([[0.55, 0.45, 0.0], [0.05, 0.9, 0.05]]),
        p_outcome=np.array([NAN, NAN, 0.55, 0.95, 0.9, 0.6, NAN, NAN]),
        pair_features=np.array([[0.0, 1.0], [1.0, 0.0]]),
        field_confidence=np.array([0.97, 0.5, 0.8, 0.8, 0.99]),
        field_owner=np.array([6, 6, 7, 7, 7]),
    )


def test_kind_uncertainty_hand_computed():
    u = kind_uncertainty(mixed_batch())
    assert np.isnan(u[:2]).all()
    np.testing.assert_allclose(u[2:], [0.9, 0.1, 0.2, 0.8, 1.0, 0.4])


def test_usefulness_puts_every_kind_on_the_strategy_scale():
    batch = mixed_batch()
    np.testing.assert_allclose(usefulness(batch, strategy="margin"), [0.9, 0.15, 0.9, 0.1, 0.2, 0.8, 1.0, 0.4])
    # least confidence of the binary outcome is half its uncertainty; of a classification, 1 - top probability
    np.testing.assert_allclose(usefulness(batch, strategy="least_confidence"),
                               [0.45, 0.1, 0.45, 0.05, 0.1, 0.4, 0.5, 0.2])
    entropy = usefulness(batch, strategy="entropy")
    assert entropy[6] == pytest.approx(np.log(2)) and entropy[2] > entropy[5] > entropy[7] > entropy[4] > entropy[3]


def test_each_kind_spends_its_share_on_its_own_most_uncertain():
    chosen = select_by_kind(mixed_batch(), budget=4, strategy="margin", rng=np.random.default_rng(0))
    # by margin: document 6 (1.0), classification 0 and response 2 (0.9), pair 5 (0.8)
    assert chosen.indices.tolist()[0] == 6 and set(chosen.indices.tolist()) == {6, 0, 2, 5}
    reasons = dict(zip(chosen.indices.tolist(), chosen.reasons))
    assert reasons == {6: EXTRACTION_REASON, 0: "margin", 2: GENERATION_REASON, 5: PAIRWISE_REASON}
    assert (chosen.probabilities == 1.0).all()


def test_a_document_is_chosen_by_its_worst_field_not_by_its_product():
    """The product of fields (0.8, 0.8, 0.99) is 0.63, near one half; the document's most doubtful field is 0.8,
    less uncertain than the other document's 0.5 field: the kind's uncertainty chooses the latter."""
    batch = KindBatch(kinds=("extraction", "extraction"), class_probs=np.empty((0, 2)), p_outcome=np.array([NAN, NAN]),
                      field_confidence=np.array([0.97, 0.5, 0.8, 0.8, 0.99]), field_owner=np.array([0, 0, 1, 1, 1]))
    assert select_by_kind(batch, budget=1, strategy="margin", rng=np.random.default_rng(0)).indices.tolist() == [0]


def test_pairs_share_is_spent_with_the_diversity_term():
    """Many equally uncertain pairs in two tight clusters: a share of two takes one pair of each cluster."""
    rng = np.random.default_rng(3)
    features = np.vstack([rng.normal(0, 0.01, (10, 2)), rng.normal(5, 0.01, (10, 2))])
    batch = KindBatch(kinds=("pairwise",) * 20, class_probs=np.empty((0, 2)), p_outcome=np.full(20, 0.5),
                      pair_features=features)
    chosen = select_by_kind(batch, budget=2, strategy="margin", rng=np.random.default_rng(0))
    assert sorted(i // 10 for i in chosen.indices.tolist()) == [0, 1]


def test_classifications_alone_are_chosen_as_select_batch_chooses_them():
    probs = np.random.default_rng(1).dirichlet(np.ones(3), size=40)
    for strategy in ("margin", "entropy", "least_confidence", "diverse"):
        batch = KindBatch(kinds=("classification",) * 40, class_probs=probs, p_outcome=np.full(40, NAN))
        mixed = select_by_kind(batch, budget=7, strategy=strategy, rng=np.random.default_rng(5))
        plain = select_batch(probs, budget=7, strategy=strategy, rng=np.random.default_rng(5))
        assert mixed.indices.tolist() == plain.indices.tolist() and mixed.reasons == plain.reasons, strategy


def test_random_is_uniform_over_all_kinds():
    batch = mixed_batch()
    counts = np.zeros(8)
    for seed in range(2000):
        chosen = select_by_kind(batch, budget=2, strategy="random", rng=np.random.default_rng(seed))
        assert chosen.reasons == ("random", "random") and np.allclose(chosen.probabilities, 2 / 8)
        counts[chosen.indices] += 1
    assert np.allclose(counts / 2000, 2 / 8, atol=0.04)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["classification", "generation", "pairwise", "extraction"]), min_size=1,
                max_size=30), st.integers(0, 35), st.integers(0, 10_000))
def test_the_budget_is_spent_exactly_on_the_most_useful_share_per_kind(kinds, budget, seed):
    rng = np.random.default_rng(seed)
    n_cls, n_pairs = kinds.count("classification"), kinds.count("pairwise")
    owners = [row for row, kind in enumerate(kinds) if kind == "extraction" for _ in range(rng.integers(1, 4))]
    batch = KindBatch(kinds=tuple(kinds), class_probs=rng.dirichlet(np.ones(3), size=n_cls),
                      p_outcome=np.where([k in ("generation", "pairwise") for k in kinds], rng.random(len(kinds)),
                                         NAN),
                      pair_features=rng.normal(size=(n_pairs, 3)), field_confidence=rng.random(len(owners)),
                      field_owner=np.array(owners, dtype=np.intp))
    chosen = select_by_kind(batch, budget=budget, strategy="margin", rng=np.random.default_rng(seed))
    assert len(chosen) == min(budget, len(kinds)) == len(set(chosen.indices.tolist()))
    useful = usefulness(batch, strategy="margin")
    assert (np.diff(useful[chosen.indices]) <= 1e-12).all()  # most useful first
    shares = allot_budget(useful, kinds, budget=budget, rng=np.random.default_rng(seed))
    picked = [kinds[i] for i in chosen.indices]
    assert {k: picked.count(k) for k in shares} == shares
    for kind in ("classification", "generation", "extraction"):  # pairs may trade a little for diversity
        rows = np.flatnonzero(np.array(kinds) == kind)
        mine = [i for i in chosen.indices if kinds[i] == kind]
        rest = np.setdiff1d(rows, mine)
        if mine and rest.size:
            assert useful[mine].min() >= useful[rest].max() - 1e-12


def test_allot_budget_hand_computed_and_fails_loud():
    shares = allot_budget([0.9, 0.1, 0.8, 0.7], ["a", "a", "b", "c"], budget=2, rng=np.random.default_rng(0))
    assert shares == {"a": 1, "b": 1, "c": 0}
    with pytest.raises(ValueError, match="one number per candidate"):
        allot_budget([0.9, NAN], ["a", "b"], budget=1, rng=np.random.default_rng(0))


def test_batches_that_do_not_add_up_fail_loud():
    with pytest.raises(ValueError, match="unknown kinds"):
        KindBatch(kinds=("summary",), class_probs=np.empty((0, 2)), p_outcome=np.array([0.5]))
    with pytest.raises(ValueError, match="class_probs"):
        KindBatch(kinds=("classification",), class_probs=np.empty((0, 2)), p_outcome=np.array([NAN]))
    with pytest.raises(ValueError, match="pair_features"):
        KindBatch(kinds=("pairwise",), class_probs=np.empty((0, 2)), p_outcome=np.array([0.5]))
    with pytest.raises(ValueError, match="field_owner"):
        kind_uncertainty(KindBatch(kinds=("generation", "extraction"), class_probs=np.empty((0, 2)),
                                   p_outcome=np.array([0.5, NAN]), field_confidence=np.array([0.5]),
                                   field_owner=np.array([0])))
    with pytest.raises(ValueError, match="probabilities"):  # a response without a confidence is not guessed at
        kind_uncertainty(KindBatch(kinds=("generation",), class_probs=np.empty((0, 2)), p_outcome=np.array([NAN])))


def test_kind_reasons_are_selection_reasons_of_the_store():
    assert {Selection(reason) for reason in KIND_REASONS.values()} == {
        Selection.VERIFIER_UNCERTAINTY, Selection.PREFERENCE_UNCERTAINTY, Selection.FIELD_UNCERTAINTY}
