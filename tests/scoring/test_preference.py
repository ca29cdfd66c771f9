"""scoring.preference: the preference model is symmetric by construction, leaves ties out, is deterministic, and
learns something on SEMI-SYNTHETIC held-out pairs (real BBC News articles, responses built from them, simulated
Bradley-Terry preferences: see scoring.datasets.semi_synthetic_pairwise)."""

from __future__ import annotations

import numpy as np
import pytest

from scoring.preference import PairwiseExample, PreferenceModel, pair_description, pair_differences

CONTEXT = "The central bank raised interest rates by 25 basis points on Tuesday to curb inflation."
QUOTED = "The central bank raised interest rates by 25 basis points."
INVENTED = "The bank cut rates by 75 points after a strike."


@pytest.fixture(scope="module")
def pairs():
    from scoring.datasets import semi_synthetic_pairwise

    data = semi_synthetic_pairwise(900, seed=4)
    examples = [PairwiseExample(p, a, b, c) for p, a, b, c in
                zip(data.prompt, data.response_a, data.response_b, data.context)]
    return examples, data.label.to_numpy()


def test_pair_features_are_antisymmetric_and_the_description_order_free():
    pair = PairwiseExample("What did the bank do?", QUOTED, INVENTED, CONTEXT)
    forward, backward = pair_differences([pair, pair.swapped()])
    assert np.abs(forward).sum() > 0 and (forward == -backward).all()
    assert forward[0] > 0  # a's words are all in the context, b's mostly not
    description = pair_description([pair, pair.swapped()])
    assert (description[0] == description[1]).all()


def test_swapping_the_responses_gives_one_minus_p(pairs):
    examples, labels = pairs
    model = PreferenceModel().fit(examples[:600], labels[:600])
    p = model.predict_proba(examples[600:])
    p_swapped = model.predict_proba([e.swapped() for e in examples[600:]])
    np.testing.assert_allclose(p + p_swapped, 1.0, atol=1e-12)
    assert p.std() > 0.05  # not symmetric by predicting 0.5 everywhere


def test_ties_are_left_out_of_training(pairs):
    examples, labels = pairs
    decided = np.flatnonzero(labels[:600] != "tie")
    with_ties = PreferenceModel().fit(examples[:600], labels[:600])
    without = PreferenceModel().fit([examples[i] for i in decided], labels[decided])
    assert with_ties.n_ties_ == 600 - decided.shape[0] > 0 and without.n_ties_ == 0
    np.testing.assert_allclose(with_ties.predict_proba(examples[600:]), without.predict_proba(examples[600:]))


def test_fitting_is_deterministic(pairs):
    examples, labels = pairs
    first = PreferenceModel().fit(examples[:300], labels[:300]).predict_proba(examples[600:])
    again = PreferenceModel().fit(examples[:300], labels[:300]).predict_proba(examples[600:])
    assert (first == again).all()


def test_on_semi_synthetic_held_out_pairs_it_beats_a_coin(pairs):
    from sklearn.metrics import roc_auc_score

    examples, labels = pairs
    model = PreferenceModel().fit(examples[:600], labels[:600])
    decided = labels[600:] != "tie"
    p = model.predict_proba([e for e, d in zip(examples[600:], decided) if d])
    auc = roc_auc_score(labels[600:][decided] == "a", p)
    assert auc > 0.7, auc  # measured 0.78 on other seeds: the simulated people are noisy on purpose


def test_bad_answers_and_an_unfitted_model_fail_loud():
    pair = PairwiseExample("q", QUOTED, INVENTED, CONTEXT)
    with pytest.raises(ValueError, match="won by a and pairs won by b"):
        PreferenceModel().fit([pair, pair.swapped(), pair], ["a", "a", "tie"])
    with pytest.raises(ValueError, match="one of"):
        PreferenceModel().fit([pair, pair.swapped()], ["a", "left"])
    with pytest.raises(ValueError, match="length mismatch"):
        PreferenceModel().fit([pair, pair.swapped()], ["a"])
    with pytest.raises(ValueError, match="not fitted"):
        PreferenceModel().predict_proba([pair])
