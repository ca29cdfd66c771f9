"""Agreement measures against published worked examples, scikit-learn and a slow reference implementation;
Dawid-Skene on simulated crowds; the position bias of pairwise answers against hand-computed exact figures."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import cohen_kappa_score

from labeling.agreement import (
    MISSING, cohen_kappa, dawid_skene, fleiss_kappa, krippendorff_alpha, majority_vote, position_bias,
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


def _reference_alpha(answers: np.ndarray, metric: str) -> float:
    """Krippendorff's alpha straight from its definition (2011, section E): every ordered pair of values within a
    unit, and every ordered pair of pairable values overall, weighed by the metric's delta^2. Slow on purpose."""
    units = [[int(v) for v in row if v != MISSING] for row in answers]
    units = [unit for unit in units if len(unit) >= 2]
    pooled = [v for unit in units for v in unit]
    n, frequency = len(pooled), Counter(pooled)

    def delta2(c: int, k: int) -> float:
        if metric == "nominal":
            return float(c != k)
        if metric == "interval":
            return float((c - k) ** 2)
        low, high = min(c, k), max(c, k)  # ordinal
        return (sum(frequency[g] for g in range(low, high + 1)) - (frequency[c] + frequency[k]) / 2) ** 2

    observed = sum(delta2(a, b) / (len(unit) - 1)
                   for unit in units for i, a in enumerate(unit) for j, b in enumerate(unit) if i != j) / n
    expected = sum(delta2(a, b) for i, a in enumerate(pooled) for j, b in enumerate(pooled) if i != j) / (n * (n - 1))
    return 1.0 if expected == 0 else 1.0 - observed / expected


def _shifted_units() -> np.ndarray:
    return np.where(KRIPPENDORFF_UNITS == MISSING, MISSING, KRIPPENDORFF_UNITS - 1)


@pytest.mark.parametrize(("metric", "published"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_krippendorff_alpha_per_metric_matches_the_worked_example_and_the_reference(metric, published):
    # Krippendorff (2011) reports .743 nominal, .815 ordinal and .849 interval for these data
    alpha = krippendorff_alpha(_shifted_units(), n_classes=5, metric=metric)
    assert alpha == pytest.approx(published, abs=5e-4)
    assert alpha == pytest.approx(_reference_alpha(_shifted_units(), metric), abs=1e-12)


def test_ordinal_alpha_forgives_near_misses_that_nominal_alpha_counts_in_full():
    # two severity raters off by one step on every disagreement (severity 0-5)
    answers = np.array([[0, 0], [1, 2], [2, 2], [3, 4], [4, 4], [5, 5], [1, 1], [4, 3]])
    nominal = krippendorff_alpha(answers, n_classes=6)
    ordinal = krippendorff_alpha(answers, n_classes=6, metric="ordinal")
    interval = krippendorff_alpha(answers, n_classes=6, metric="interval")
    assert nominal < 0.7 < ordinal and interval > 0.9
    # hand-computed interval alpha: D_o = 2 * 3 * 1 / 16, D_e = sum over pooled pairs of (c - k)^2 / (16 * 15)
    pooled = answers.ravel()
    expected = np.sum((pooled[:, None] - pooled[None, :]) ** 2) / (16 * 15)
    assert interval == pytest.approx(1 - (6 / 16) / expected, abs=1e-12)


def test_ordinal_alpha_depends_only_on_the_order_of_the_classes():
    units = _shifted_units()
    spread = np.where(units == MISSING, MISSING, units * 2 + 1)  # empty classes between the used ones
    reversed_ = np.where(units == MISSING, MISSING, 4 - units)
    ordinal = krippendorff_alpha(units, n_classes=5, metric="ordinal")
    assert krippendorff_alpha(spread, n_classes=10, metric="ordinal") == pytest.approx(ordinal, abs=1e-12)
    assert krippendorff_alpha(reversed_, n_classes=5, metric="ordinal") == pytest.approx(ordinal, abs=1e-12)
    # the interval metric sees the wider steps between classes, so the same change moves it
    assert krippendorff_alpha(spread, n_classes=10, metric="interval") == pytest.approx(
        krippendorff_alpha(units, n_classes=5, metric="interval"), abs=1e-12)  # a linear map keeps it
    squared = np.where(units == MISSING, MISSING, units**2)
    assert krippendorff_alpha(squared, n_classes=17, metric="interval") != pytest.approx(
        krippendorff_alpha(units, n_classes=5, metric="interval"), abs=1e-3)


@settings(max_examples=60, deadline=None)
@given(arrays(np.int64, st.tuples(st.integers(2, 8), st.integers(2, 4)), elements=st.integers(-1, 5)),
       st.sampled_from(["nominal", "ordinal", "interval"]))
def test_krippendorff_alpha_equals_the_pairwise_definition(answers, metric):
    if ((answers != MISSING).sum(axis=1) >= 2).sum() == 0:
        with pytest.raises(ValueError, match="two or more answers"):
            krippendorff_alpha(answers, n_classes=6, metric=metric)
        return
    assert krippendorff_alpha(answers, n_classes=6, metric=metric) == pytest.approx(
        _reference_alpha(answers, metric), abs=1e-9)


def test_krippendorff_alpha_names_a_bad_metric_or_input():
    with pytest.raises(ValueError, match="metric must be one of"):
        krippendorff_alpha(np.array([[0, 1]]), n_classes=2, metric="ratio")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="two or more answers"):
        krippendorff_alpha(np.array([[0, MISSING], [MISSING, 1]]), n_classes=2, metric="ordinal")
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 6\)"):
        krippendorff_alpha(np.array([[0, 6]]), n_classes=6, metric="ordinal")


def test_position_bias_matches_hand_computed_exact_figures():
    bias = position_bias(np.array([True] * 9 + [False]))
    assert (bias.n, bias.n_left, bias.left_share) == (10, 9, 0.9)
    assert bias.p_value == pytest.approx(2 * 11 / 1024, abs=1e-12)  # 2 * P(X >= 9), X ~ Bin(10, 1/2)
    # Clopper-Pearson 95% for 9 of 10: beta quantiles, 0.5550 and 0.9975
    assert (bias.ci_low, bias.ci_high) == pytest.approx((0.55498, 0.99747), abs=5e-5)
    none_left = position_bias(np.zeros(10, dtype=int))
    assert none_left.ci_low == 0.0 and none_left.ci_high == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-12)
    assert none_left.p_value == pytest.approx(2 / 1024, abs=1e-12)
    fair = position_bias(np.array([1, 0] * 50))
    assert fair.left_share == 0.5 and fair.p_value == pytest.approx(1.0) and fair.ci_low < 0.5 < fair.ci_high


@settings(max_examples=60, deadline=None)
@given(arrays(bool, st.integers(1, 300)), st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_position_bias_interval_holds_the_share_and_mirrors_left_and_right(left, confidence):
    bias = position_bias(left, confidence=confidence)
    mirrored = position_bias(~left, confidence=confidence)
    assert 0.0 <= bias.ci_low <= bias.left_share <= bias.ci_high <= 1.0
    assert 0.0 < bias.p_value <= 1.0 and mirrored.p_value == pytest.approx(bias.p_value, rel=1e-9)
    assert (mirrored.ci_low, mirrored.ci_high) == pytest.approx((1 - bias.ci_high, 1 - bias.ci_low), abs=1e-9)
    assert position_bias(left, confidence=0.5).ci_high <= bias.ci_high + 1e-12  # narrower at lower confidence


@pytest.mark.parametrize(("values", "message"), [
    (np.array([], dtype=bool), "non-empty 1-D"),
    (np.array([[True, False]]), "non-empty 1-D"),
    (np.array([1, 0, 2]), r"booleans or 0/1 .*\[2\]"),
    (np.array([1.0, np.nan]), "booleans or 0/1"),
    (np.array(["left", "right"]), "booleans or 0/1"),
])
def test_position_bias_names_bad_answers(values, message):
    with pytest.raises(ValueError, match=message):
        position_bias(values)


def test_position_bias_names_a_bad_confidence():
    with pytest.raises(ValueError, match="confidence must lie in"):
        position_bias(np.array([True, False]), confidence=1.0)


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
