"""Agreement measures against published worked examples and scikit-learn; Dawid-Skene on simulated crowds."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from labeling.agreement import (
    MISSING, cohen_kappa, dawid_skene, fleiss_kappa, krippendorff_alpha, majority_vote,
)

# Fleiss (1971) as worked on Wikipedia: 10 items, 14 raters, 5 categories; kappa = 0.210.
FLEISS_COUNTS = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]

# Krippendorff, "Computing Krippendorff's alpha-reliability" (2011): 4 coders, 12 units, nominal alpha = 0.743.
_ = MISSING
KRIPPENDORFF_UNITS = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, _, _, _],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, _, 3],
    [_, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, _],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, _],
]).T


def test_fleiss_kappa_matches_the_worked_example():
    answers = np.array([np.repeat(np.arange(5), row) for row in FLEISS_COUNTS])
    assert fleiss_kappa(answers, n_classes=5) == pytest.approx(0.2099, abs=5e-4)


def test_krippendorff_alpha_matches_the_worked_example():
    shifted = np.where(KRIPPENDORFF_UNITS == MISSING, MISSING, KRIPPENDORFF_UNITS - 1)
    assert krippendorff_alpha(shifted, n_classes=5) == pytest.approx(0.743, abs=5e-4)


def test_cohen_kappa_agrees_with_scikit_learn():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, 300)
    b = np.where(rng.random(300) < 0.7, a, rng.integers(0, 4, 300))
    assert cohen_kappa(a, b, n_classes=4) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)


def test_perfect_agreement_is_one_and_bad_input_is_named():
    answers = np.array([[0, 0], [1, 1], [2, 2]])
    assert fleiss_kappa(answers, n_classes=3) == pytest.approx(1.0)
    assert krippendorff_alpha(answers, n_classes=3) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="class indices"):
        fleiss_kappa(np.array([[0, 7]]), n_classes=3)
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa(np.array([[0, 1], [0, MISSING]]), n_classes=2)
    with pytest.raises(ValueError, match="empty"):
        majority_vote(np.zeros((0, 2), dtype=int), n_classes=2)


def test_majority_vote_and_agreement_share():
    labels, agreement = majority_vote(np.array([[0, 0, 1], [2, MISSING, 2], [MISSING, MISSING, MISSING]]),
                                      n_classes=3)
    assert labels.tolist() == [0, 2, MISSING]
    assert agreement[:2].tolist() == pytest.approx([2 / 3, 1.0]) and np.isnan(agreement[2])


def test_dawid_skene_sees_through_a_spammer():
    rng = np.random.default_rng(1)
    n_items, n_classes = 600, 3
    truth = rng.integers(0, n_classes, n_items)
    accuracies = [0.9, 0.85, 0.0, 0.0]  # two careful annotators, two who always answer class 0
    answers = np.empty((n_items, len(accuracies)), dtype=int)
    for j, accuracy in enumerate(accuracies):
        careful = np.where(rng.random(n_items) < accuracy, truth, rng.integers(0, n_classes, n_items))
        answers[:, j] = careful if accuracy > 0 else 0
    majority, _ = majority_vote(answers, n_classes=n_classes)
    result = dawid_skene(answers, n_classes=n_classes)
    assert np.mean(result.labels == truth) > np.mean(majority == truth) + 0.1
    assert result.confusion[2, 1, 0] > 0.9  # the spammer answers 0 whatever the truth
    assert np.allclose(result.posteriors.sum(axis=1), 1.0)
