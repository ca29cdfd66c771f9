"""The backlog certification (routing.backlog): exact finite-population coverage, and a wrong sample shown to fail."""

from __future__ import annotations

import numpy as np
import pytest

from routing.backlog import certify_backlog, certifying_sample, remainder_p_value, remainder_upper_bound

ALPHA, DELTA = 0.05, 0.1


def _population(rng: np.random.Generator, n: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    """A backlog the new model scores: most items easy, a third hard, and errors at 1.6x what the confidence says
    (the model is over-confident), so the truth crosses alpha inside the population (at about 84% of it) and a
    loose test over-accepts."""
    hard = rng.random(n) < 0.35
    confidence = np.where(hard, 1.0 - rng.beta(2.0, 10.0, size=n), 1.0 - rng.beta(1.0, 80.0, size=n))
    wrong = rng.random(n) < np.minimum(1.0, 1.6 * (1.0 - confidence))
    return confidence, wrong


def _violations(draw, repetitions: int = 500, seed: int = 7) -> tuple[float, int]:
    """Share of repetitions whose certified threshold auto-accepts unlabelled items above alpha, and how many
    repetitions certified anything at all."""
    rng = np.random.default_rng(seed)
    bad = certified = 0
    for _ in range(repetitions):
        confidence, wrong = _population(rng)
        sampled = draw(rng, confidence)
        result = certify_backlog(confidence, sampled, wrong & sampled, ~sampled, alpha=ALPHA, delta=DELTA)
        if result.threshold is None:
            continue
        certified += 1
        accepted = ~sampled & (confidence >= result.threshold)
        bad += bool(accepted.any() and wrong[accepted].mean() > ALPHA)
    return bad / repetitions, certified


def test_the_uniform_sample_certifies_a_backlog_whose_auto_accepted_error_stays_within_alpha_in_1_minus_delta_of_runs():
    share, certified = _violations(lambda rng, c: rng.random(c.shape[0]) < 0.06)
    print(f"uniform 6% sample: {certified}/500 certified, violation share {share:.3f}")
    assert certified >= 350  # the test is not vacuous: it certifies almost every time
    assert share <= DELTA


def test_a_sample_that_favours_confident_items_breaks_the_same_guarantee():
    # audits that reached mostly confident items (as audits of auto-accepted items do): 30% above 0.97, 0.5% below
    share, certified = _violations(lambda rng, c: rng.random(c.shape[0]) < np.where(c > 0.97, 0.3, 0.005))
    print(f"confidence-favouring sample: {certified}/500 certified, violation share {share:.3f}")
    assert share > 3 * DELTA


def test_the_sample_is_the_audits_below_the_smallest_rate():
    uniforms = np.array([0.01, 0.04, 0.06, 0.09, 0.5])
    assert certifying_sample(uniforms, [0.05, 0.1, 0.1, 0.1, 0.1]).tolist() == [True, True, False, False, False]
    assert not certifying_sample(uniforms, [0.0, 0.1, 0.1, 0.1, 0.1]).any()  # a zero rate: nothing certifies
    assert certifying_sample([], []).shape == (0,)
    with pytest.raises(ValueError, match="length"):
        certifying_sample([0.1], [0.1, 0.2])


def test_the_p_value_is_exact_at_its_edges():
    # nothing sampled: no evidence; nothing left: nothing to claim
    assert remainder_p_value(100, 0, 0, 100, ALPHA).item() == 1.0
    assert remainder_p_value(100, 100, 0, 0, ALPHA).item() == 1.0
    # 45 clean draws from 1000 items: the smallest error count in the null (48 of 955 unlabelled) shows 0 errors
    # with chance (1 - 0.048)^45 or so: about 0.1
    p = remainder_p_value(1000, 45, 0, 955, ALPHA).item()
    assert 0.09 < p < 0.12
    assert remainder_p_value(1000, 45, 3, 955, ALPHA).item() > 0.5
    assert remainder_upper_bound(1000, 100, 0, 900, DELTA) < remainder_upper_bound(1000, 100, 3, 900, DELTA)


def test_a_sampled_item_whose_label_never_came_back_counts_as_an_error():
    rng = np.random.default_rng(3)
    confidence, wrong = _population(rng)
    confidence = np.maximum(confidence, 0.99)  # an easy backlog: certifies at once with its labels back
    wrong[:] = False
    sampled = rng.random(confidence.shape[0]) < 0.05
    assert certify_backlog(confidence, sampled, np.zeros_like(sampled), ~sampled, alpha=ALPHA,
                           delta=DELTA).threshold is not None
    assert certify_backlog(confidence, sampled, sampled, ~sampled, alpha=ALPHA, delta=DELTA).threshold is None


def test_without_a_sample_nothing_is_certified_and_the_result_says_so():
    result = certify_backlog(np.full(50, 0.99), np.zeros(50, bool), np.zeros(50, bool), np.ones(50, bool),
                             alpha=ALPHA, delta=DELTA)
    assert result.threshold is None and result.estimator == "backlog_sample" and result.n_labelled == 0
