"""Tests for routing.active_inference: coverage of the weighted and doubly robust bounds over repeated Poisson
draws, a wrong weighting that fails the same test, the anytime form at every look, certification, edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.intervals import clopper_pearson_upper
from routing.active_inference import (
    anytime_error_bounds,
    certify_threshold,
    error_bound,
    error_interval,
    error_p_value,
    weighted_error_guard,
)
from routing.probabilistic_review import inclusion_probabilities

DELTA, REPEATS, N_ITEMS = 0.1, 500, 1_000


def _calibrated_population(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    confidence = rng.beta(8, 1, N_ITEMS)
    return confidence, rng.random(N_ITEMS) < 1.0 - confidence


@pytest.fixture(scope="module")
def repeated_bounds() -> dict[str, object]:
    """500 Poisson draws (uncertainty-weighted, floor 0.05, 100 expected labels) from one fixed population."""
    confidence, wrong = _calibrated_population(0)
    pi = inclusion_probabilities(1.0 - confidence, budget=100, floor=0.05)
    draws = np.random.default_rng(1).random((REPEATS, N_ITEMS)) < pi
    uppers = {est: np.array([error_bound(confidence, pi, d, wrong, delta=DELTA, estimator=est).upper for d in draws])
              for est in ("weighted", "doubly_robust")}
    return {"truth": wrong.mean(), "uppers": uppers, "draws": draws, "wrong": wrong, "pi": pi}


@pytest.mark.parametrize("estimator", ["weighted", "doubly_robust"])
def test_upper_bound_covers_the_population_error_rate(repeated_bounds, estimator: str) -> None:
    uppers = repeated_bounds["uppers"][estimator]
    coverage = np.mean(uppers >= repeated_bounds["truth"])
    print(f"{estimator}: coverage {coverage:.3f} over {REPEATS} draws (nominal {1 - DELTA})")
    assert coverage >= 1 - DELTA


def test_doubly_robust_is_tighter_when_the_confidences_are_calibrated(repeated_bounds) -> None:
    truth, uppers = repeated_bounds["truth"], repeated_bounds["uppers"]
    ratio = np.median(uppers["doubly_robust"] - truth) / np.median(uppers["weighted"] - truth)
    print(f"median width ratio doubly robust / weighted: {ratio:.3f}")
    assert ratio < 1.0


def test_treating_uncertainty_sampled_labels_as_uniform_fails_coverage() -> None:
    # A blind spot: 8% of items are confidently wrong half the time; the uncertain items are mostly right. The
    # sampler over-samples the uncertain items, so the plain labelled mean (Clopper-Pearson on the labels, as if
    # they were a uniform sample) under-states the error; the weighted bound, valid for any model, still covers.
    rng = np.random.default_rng(5)
    confidence = rng.uniform(0.8, 0.999, N_ITEMS)
    blind = rng.random(N_ITEMS) < 0.25
    confidence[blind] = 0.999
    wrong = np.where(blind, rng.random(N_ITEMS) < 0.5, rng.random(N_ITEMS) < 0.1 * (1.0 - confidence))
    truth = wrong.mean()
    pi = inclusion_probabilities(1.0 - confidence, budget=100, floor=0.05)
    draws = np.random.default_rng(6).random((REPEATS, N_ITEMS)) < pi
    naive = clopper_pearson_upper((draws & wrong).sum(axis=1), draws.sum(axis=1), delta=DELTA)
    weighted = np.array([error_bound(confidence, pi, d, wrong, delta=DELTA, estimator="weighted").upper
                         for d in draws[:200]])
    print(f"truth {truth:.3f}: naive coverage {np.mean(naive >= truth):.3f}, weighted {np.mean(weighted >= truth):.3f}")
    assert np.mean(naive >= truth) < 0.5
    assert np.mean(weighted >= truth) >= 1 - DELTA


@pytest.mark.parametrize("estimator", ["weighted", "doubly_robust"])
def test_anytime_bound_covers_at_every_look(estimator: str) -> None:
    # a stream: items drawn afresh, pi a fixed function of each item's own uncertainty (scale fixed in advance)
    rng = np.random.default_rng(11 if estimator == "weighted" else 12)
    n_stream, floor = 600, 0.05
    confidence = rng.beta(8, 1, (REPEATS, n_stream))
    wrong = rng.random((REPEATS, n_stream)) < 1.0 - confidence
    truth = 1.0 / 9.0  # E[1 - Beta(8, 1)]
    pi = np.minimum(1.0, np.maximum(floor, 2.0 * (1.0 - confidence)))
    drawn = rng.random((REPEATS, n_stream)) < pi
    looks = np.arange(99, n_stream, 100)
    bounds = np.array([anytime_error_bounds(c, p, d, w, delta=DELTA, floor=floor, estimator=estimator)[looks]
                       for c, p, d, w in zip(confidence, pi, drawn, wrong)])
    always = np.mean((bounds >= truth).all(axis=1))
    print(f"{estimator} anytime: covered at all {looks.size} looks in {always:.3f} of streams; "
          f"median bound at the last look {np.median(bounds[:, -1]):.3f} (truth {truth:.3f})")
    assert always >= 1 - DELTA
    assert np.median(bounds[:, -1]) < 0.5  # and it is informative


def test_two_sided_interval_covers_the_population_error_rate(repeated_bounds) -> None:
    """The audit estimate's interval (both ends betting bounds at delta / 2) over the same 500 draws."""
    confidence, wrong = _calibrated_population(0)
    pi, truth = repeated_bounds["pi"], repeated_bounds["truth"]
    intervals = [error_interval(confidence, pi, d, wrong, confidence=1 - DELTA) for d in repeated_bounds["draws"]]
    coverage = np.mean([i.lower <= truth <= i.upper for i in intervals])
    low_misses = np.mean([truth < i.lower for i in intervals])
    print(f"two-sided coverage {coverage:.3f}, truth below the lower end {low_misses:.3f} (nominal {1 - DELTA})")
    assert coverage >= 1 - DELTA and low_misses <= DELTA / 2
    assert all(i.lower <= i.error_rate <= i.upper for i in intervals)


def test_pending_labels_widen_both_ends_and_leave_the_point_estimate_on_the_returned_ones() -> None:
    rng = np.random.default_rng(8)
    n = 4000
    confidence = rng.beta(30, 1, n)
    wrong, drawn = rng.random(n) < 1.0 - confidence, rng.random(n) < 0.05
    pi = np.full(n, 0.05)
    complete = error_interval(confidence, pi, drawn, wrong)
    labelled = drawn.copy()
    labelled[np.flatnonzero(drawn)[:20]] = False  # twenty audits not back yet
    pending = error_interval(confidence, pi, drawn, wrong, labelled=labelled)
    assert (pending.n_missing, pending.n_labelled) == (20, complete.n_labelled - 20)
    assert pending.lower <= complete.lower and pending.upper > complete.upper
    # the point estimate: f + (e - f) / (pi r) over the returned labels, r the share of draws back
    share = labelled.sum() / drawn.sum()
    f = 1.0 - confidence
    by_hand = (f.sum() + ((wrong - f) / (0.05 * share))[labelled].sum()) / n
    assert pending.error_rate == pytest.approx(by_hand)
    assert complete.error_rate == pytest.approx(error_bound(confidence, pi, drawn, wrong, delta=DELTA).error_rate)
    nothing = error_interval(confidence, pi, np.zeros(n, bool), wrong)
    assert np.isnan(nothing.error_rate) and (nothing.lower, nothing.upper) == (0.0, 1.0) and nothing.reason
    with pytest.raises(ValueError, match="confidence"):
        error_interval(confidence, pi, drawn, wrong, confidence=1.0)


def test_the_point_estimate_stays_within_its_interval() -> None:
    # no error among more audits than expected: the unbiased mean goes below 0
    clean = error_interval(np.full(200, 0.95), np.full(200, 0.05), np.arange(200) < 20, np.zeros(200, bool))
    assert 0.0 <= clean.lower <= clean.error_rate <= clean.upper
    # labels back only where the draw was sparse, five of ten wrong: the unbiased mean goes above 1
    pi = np.concatenate([np.full(500, 0.02), np.ones(500)])
    drawn = np.concatenate([np.arange(500) < 10, np.ones(500, bool)])
    labelled = np.concatenate([np.arange(500) < 10, np.zeros(500, bool)])
    wrong = np.concatenate([np.arange(500) < 5, np.zeros(500, bool)])
    sparse = error_interval(np.full(1000, 0.97), pi, drawn, wrong, labelled=labelled)
    assert 0.0 <= sparse.lower <= sparse.error_rate <= sparse.upper <= 1.0


def test_pending_audits_of_a_batch_drawn_at_another_rate_do_not_bias_the_point_estimate() -> None:
    """Old batches audited at 0.02 with every label back, the newest at 0.5 with none back yet: each rate's
    returned labels stand for its own draws only (one share for all of them doubled the estimate)."""
    rng = np.random.default_rng(21)
    n_old, n_new = 10_000, 1_000
    confidence = np.full(n_old + n_new, 0.97)
    pi = np.concatenate([np.full(n_old, 0.02), np.full(n_new, 0.5)])
    estimates, truths = [], []
    for _ in range(200):
        wrong = rng.random(n_old + n_new) < 0.03
        drawn = rng.random(n_old + n_new) < pi
        labelled = drawn & (np.arange(n_old + n_new) < n_old)
        estimates.append(error_interval(confidence, pi, drawn, wrong, labelled=labelled).error_rate)
        truths.append(wrong.mean())
    bias, spread = np.mean(estimates) - np.mean(truths), np.std(estimates) / np.sqrt(len(estimates))
    print(f"mean point estimate {np.mean(estimates):.4f} against {np.mean(truths):.4f} (se {spread:.4f})")
    assert abs(bias) < 4 * spread + 0.002


def test_edge_cases_say_they_cannot_certify() -> None:
    empty = error_bound([], [], [], [], delta=DELTA)
    assert not empty.certifiable and "empty" in (empty.reason or "") and np.isnan(empty.error_rate)
    none_drawn = error_bound([0.9] * 50, [0.1] * 50, [False] * 50, [False] * 50, delta=DELTA)
    assert none_drawn.upper is None and "0 labels" in (none_drawn.reason or "")
    blind = error_bound([0.9, 0.99], [0.5, 0.0], [True, False], [False, False], delta=DELTA)
    assert blind.upper is None and "could not be drawn" in (blind.reason or "")
    assert error_p_value([0.9, 0.99], [0.5, 0.0], [True, False], [False, False], alpha=0.05) == 1.0
    result = certify_threshold([0.9, 0.99], [0.5, 0.0], [True, False], [False, False], alpha=0.05, delta=DELTA,
                               min_count=0)
    assert result.threshold is None
    with pytest.raises(ValueError, match="labelled but were not drawn"):
        error_bound([0.9], [0.5], [False], [False], labelled=[True], delta=DELTA)
    with pytest.raises(ValueError, match="estimator"):
        error_bound([0.9], [0.5], [True], [False], delta=DELTA, estimator="hajek")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="below the floor"):
        anytime_error_bounds([0.9], [0.01], [True], [False], delta=DELTA, floor=0.05)


def test_missing_labels_count_as_wrong() -> None:
    confidence = np.full(200, 0.95)
    pi, drawn = np.full(200, 0.5), np.arange(200) % 2 == 0
    full = error_bound(confidence, pi, drawn, np.zeros(200, bool), delta=DELTA, estimator="weighted")
    labelled = drawn.copy()
    labelled[:10] = False  # five drawn items never came back
    partial = error_bound(confidence, pi, drawn, np.zeros(200, bool), labelled=labelled, delta=DELTA,
                          estimator="weighted")
    assert partial.n_missing == 5 and partial.error_rate == pytest.approx(5 / 0.5 / 200)
    assert partial.upper > full.upper


def test_hand_computed_terms_and_counts() -> None:
    # weighted: (1 / 0.5) / 4 = 0.5; doubly robust: mean f + (1 - 0.2) / 0.5 / 4 + (0 - 0.1) / 0.5 / 4
    confidence, pi = [0.8, 0.9, 0.9, 0.6], [0.5, 0.5, 1.0, 1.0]
    drawn, wrong = [True, True, False, False], [True, False, False, False]
    weighted = error_bound(confidence, pi, drawn, wrong, delta=DELTA, estimator="weighted")
    assert weighted.error_rate == pytest.approx(0.5) and weighted.n_errors == 1 and weighted.n_labelled == 2
    robust = error_bound(confidence, pi, drawn, wrong, delta=DELTA)
    assert robust.error_rate == pytest.approx((0.2 + 0.1 + 0.1 + 0.4) / 4 + (0.8 / 0.5 - 0.1 / 0.5) / 4)
    assert weighted.effective_sample_size == pytest.approx(2.0)


def test_p_value_and_bound_agree_and_certify_a_clean_population() -> None:
    confidence, wrong = _calibrated_population(3)
    confidence = 0.9 + 0.1 * confidence  # a confident population, error about 1%
    wrong = np.random.default_rng(4).random(N_ITEMS) < 1.0 - confidence
    pi = inclusion_probabilities(1.0 - confidence, budget=400, floor=0.3)
    drawn = np.random.default_rng(5).random(N_ITEMS) < pi
    bound = error_bound(confidence, pi, drawn, wrong, delta=DELTA, plan_at=0.05)
    p_value = error_p_value(confidence, pi, drawn, wrong, alpha=0.05)
    assert (p_value <= DELTA) == (bound.upper <= 0.05)
    result = certify_threshold(confidence, pi, drawn, wrong, alpha=0.05, delta=DELTA)
    assert result.threshold is not None and result.estimator == "doubly_robust"
    assert result.error_upper_bound <= 0.05 and result.n_accepted == (confidence >= result.threshold).sum()
    assert result.n_labelled == (drawn & (confidence >= result.threshold)).sum()


def test_certified_thresholds_hold_over_repetitions() -> None:
    # calibrated: error grows as confidence falls; the certified population's true error stays <= alpha in
    # >= 1 - delta of the draws (the bet is planned from the calibrated confidences: see the module docstring)
    rng = np.random.default_rng(21)
    confidence = rng.uniform(0.85, 1.0, N_ITEMS)
    wrong = rng.random(N_ITEMS) < 1.0 - confidence
    pi = inclusion_probabilities(1.0 - confidence, budget=500, floor=0.4)
    grid = np.linspace(0.995, 0.85, 40)
    violations, certified = 0, 0
    for seed in range(200):
        drawn = np.random.default_rng(seed).random(N_ITEMS) < pi
        result = certify_threshold(confidence, pi, drawn, wrong, alpha=0.1, delta=DELTA, grid=grid, min_count=50)
        if result.threshold is not None:
            certified += 1
            violations += wrong[confidence >= result.threshold].mean() > 0.1
    print(f"certified in {certified} of 200 draws; true error above target in {violations}")
    assert certified > 100 and violations / 200 <= DELTA


def test_guard_halts_on_weighted_evidence_and_not_on_a_clean_stream() -> None:
    rng = np.random.default_rng(9)
    n_stream, floor = 3_000, 0.1
    confidence = np.full(n_stream, 0.97)
    pi = np.full(n_stream, floor)
    drawn = rng.random(n_stream) < pi
    bad = weighted_error_guard(confidence, pi, drawn, rng.random(n_stream) < 0.2, alpha=0.05, delta=DELTA,
                               floor=floor, estimator="weighted")
    assert bad.halted and bad.n_audited <= drawn.sum()
    clean = weighted_error_guard(confidence, pi, drawn, np.zeros(n_stream, bool), alpha=0.05, delta=DELTA,
                                 floor=floor)
    assert not clean.halted and clean.n_audited == drawn.sum()


def test_measure_labels_for_the_same_width_against_uniform_review() -> None:
    """A measurement, not a claim: expected labels the doubly robust bound (uncertainty-weighted draw, floor half
    the budget's uniform share) needs for the median upper-bound width that uniform review + Clopper-Pearson gets
    with 100 labels on the same population."""
    confidence, wrong = _calibrated_population(8)
    truth = wrong.mean()
    uniform_width = np.median(clopper_pearson_upper(np.random.default_rng(9).binomial(100, truth, 4_000), 100,
                                                    delta=DELTA)) - truth
    rows = []
    for budget in (100, 150, 200, 300):
        pi = inclusion_probabilities(1.0 - confidence, budget=budget, floor=budget / N_ITEMS / 2)
        draws = np.random.default_rng(budget).random((40, N_ITEMS)) < pi
        widths = [error_bound(confidence, pi, d, wrong, delta=DELTA).upper - truth for d in draws]
        rows.append((budget, float(np.median(widths))))
    print(f"uniform 100 labels: width {uniform_width:.4f}; doubly robust: "
          + ", ".join(f"{b} labels {w:.4f}" for b, w in rows))
    assert all(np.isfinite(w) for _, w in rows)
