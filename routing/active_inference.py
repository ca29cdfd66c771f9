"""Active inference: the error rate of a population from human labels drawn with known probabilities.

One estimator serves every unbiased use: certifying an auto-accept threshold (fixed-sequence Learn-then-Test on
its p-values), the live guard (its anytime-valid form), the audit estimate shown to ops. It follows Zrnic and
Candès, "Active Statistical Inference" (ICML 2024): each item was labelled with a known probability ``pi_i``
(``routing.probabilistic_review``), and every label counts, weighted by ``1 / pi_i``.

The population and the estimand
-------------------------------
A population is a finite set of ``N`` routed items: the items at or above a candidate threshold, or the
auto-accepted items of a segment and window. The estimand is its error rate ``theta = mean(e_i)``, where ``e_i``
says whether the model's output on item ``i`` is wrong. Inference is conditional on the items (their confidences
and errors are fixed); the only randomness is the draw.

Per-item terms
--------------
With ``Z_i`` the draw (1 when item ``i`` was drawn for a label) and ``f_i`` a predictor of ``e_i`` fixed before
the labels (``1 -`` the calibrated confidence):

* ``"weighted"`` (Horvitz-Thompson): ``X_i = Z_i e_i / pi_i``;
* ``"doubly_robust"`` (prediction-powered; Angelopoulos et al., "Prediction-powered inference", Science 2023):
  ``X_i = f_i + Z_i (e_i - f_i) / pi_i``.

Both have ``E[X_i] = e_i`` whatever ``f`` is, so ``mean(X)`` is unbiased for ``theta``. When ``f`` is calibrated
the doubly robust terms vary far less (an unlabelled item contributes its predicted error instead of 0), which is
where its tighter bound comes from. (The Hajek ratio estimator is not offered: it is not a mean of independent
terms, so the bound below would not apply to it.)

The bound: betting with a constant bet
--------------------------------------
The terms are independent with known ranges ``X_i <= hi_i = f_i + (1 - f_i) / pi_i <= 1 / pi_i`` but *different*
means ``e_i``. For a bet ``lam`` in ``[0, 1 / (hi - m))`` fixed before the labels, the wealth
``K(m) = prod_i (1 + lam (m - X_i))`` has ``E[K(m)] = prod_i (1 + lam (m - e_i)) <= (1 + lam (m - theta)) ** N``
by the inequality of arithmetic and geometric means, which is ``<= 1`` whenever ``theta >= m``. Markov's
inequality then gives ``P(K(m) >= 1 / delta) <= delta``: a valid test of "error rate >= m" for any finite ``N``
(Waudby-Smith and Ramdas, "Estimating means of bounded random variables by betting", JRSSB 2024, use the same
wealth; their predictable bets need a common mean, which a finite population with fixed errors does not have, so
the bet here is one constant). ``K`` increases in ``m``, so the upper confidence bound
``inf {m : K(m) >= 1 / delta}`` is found by bisection, and ``min(1, 1 / K(alpha))`` is a p-value for
"error rate > alpha" that Learn-then-Test can consume.

The bet is planned from the design alone (the predictor ``f`` and the probabilities ``pi``, never the labels): the
bet on a fixed grid with the largest expected log-wealth if the calibrated confidences were right. A good plan
makes the bound tight; a wrong one (a miscalibrated model) only loosens it, and a model whose calibrated
confidences predict an error at or above the tested rate gets no bet at all (p-value 1: it fails closed, even
when it is in fact under-confident).

What it costs: the bet must keep every factor positive, so it is at most ``1 / hi`` with ``hi ~ 1 / floor`` (a
confident item drawn at the floor and found wrong). The bound is therefore driven by the floor: with the floor at
half the budget's uniform share it needed about 1.9x the labels of uniform review with a Clopper-Pearson bound for
the same width (tests/routing/test_active_inference.py prints the measurement). The labels are the ones active
learning asks for anyway; the doubly robust terms help little above a high threshold, where ``f`` is near 0.

Assumptions, written where they are used
----------------------------------------
1. Draws are independent given the items (Poisson sampling), each with its known probability ``pi_i``.
2. ``pi_i > 0`` for every item of the population; an item that could not be drawn makes the population
   uncertifiable (the result says so; it never returns a number).
3. A label is the truth. Annotator error is corrected separately (``routing.audit.correct_for_annotator_error``).
4. A drawn item without a label (the review cap bound, or the label never came back) is counted as wrong in the
   bound and the point estimate: the bound stays valid whatever those labels would have said.
5. The predictor ``f`` is fixed before the certifying labels are seen. Labels that trained the routing model (or
   fitted its calibrator) must not certify it: the caller cross-fits, or holds out a fixed draw of the labels,
   and says which. This module cannot see where a label has been.

The anytime-valid form (the live guard)
---------------------------------------
Across cycles the auto-accepted items arrive as a stream. Under the stream model (each item, given everything
before it, is drawn from the traffic of its moment, whose error rate is at most ``alpha`` under the guard's null)
and with ``pi_i`` fixed before the item's label and at least the policy floor, the wealth with bets that depend
only on the past is a non-negative supermartingale, and Ville's inequality makes the test and the confidence
sequence valid at every look, however often the console looks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from routing.guard import BET_FRACTIONS, GuardResult
from routing.thresholds import (
    DEFAULT_GRID_SIZE,
    ThresholdResult,
    candidate_thresholds,
    default_start_count,
    fixed_sequence,
)

__all__ = [
    "ESTIMATORS", "ErrorBound", "ErrorInterval", "Estimator", "anytime_error_bounds", "certify_threshold",
    "error_bound", "error_interval", "error_p_value", "weighted_error_guard",
]

Estimator = Literal["weighted", "doubly_robust"]
ESTIMATORS: tuple[str, ...] = ("weighted", "doubly_robust")

MAX_BET_FRACTION = 0.5  # anytime bets: at most half what the range allows (Fan et al.'s inequality holds from -1/2)
MAX_PLANNED_FRACTION = 0.95  # a planned bet may go near the range limit: the plan weighs the rare worst-case term
BET_GRID = np.geomspace(1e-3, 1.0, 40) * MAX_PLANNED_FRACTION
BISECTION_STEPS = 50
DEFAULT_MIN_LABELS = 1
PRIOR_VARIANCE = 0.25  # the variance a predictable bet assumes before any term is seen (Waudby-Smith and Ramdas)


@dataclass(frozen=True)
class ErrorBound:
    """The estimated error rate of ``n_population`` items and its one-sided ``1 - delta`` upper bound.

    ``upper`` is None (and ``error_rate`` NaN) when the population cannot be certified; ``reason`` then says why.
    ``n_missing`` counts drawn items without a label (counted as wrong), ``n_errors`` the labelled items that
    were wrong, ``effective_sample_size`` Kish's ``(sum w) ** 2 / sum w ** 2`` over the labels (``w = 1 / pi``).
    """

    estimator: str
    error_rate: float
    upper: float | None
    delta: float
    n_population: int
    n_labelled: int
    n_missing: int
    n_errors: int
    effective_sample_size: float
    reason: str | None = None

    @property
    def certifiable(self) -> bool:
        return self.upper is not None


@dataclass(frozen=True, eq=False)
class _Population:
    """Validated inputs: the predictor of error ``f``, ``pi``, the draw, the labels, and the worst-case outcome."""

    predicted_error: np.ndarray
    probability: np.ndarray
    drawn: np.ndarray
    labelled: np.ndarray
    outcome: np.ndarray  # e_i where labelled, 1 (worst case) where drawn without a label, 0 elsewhere (unused)

    @property
    def missing(self) -> np.ndarray:
        return self.drawn & ~self.labelled


def _flags(name: str, values: Any, n_items: int) -> np.ndarray:
    flags = np.asarray(values)
    if flags.shape != (n_items,):
        raise ValueError(f"length mismatch: {name} has shape {flags.shape}, expected ({n_items},)")
    if flags.size and flags.dtype != bool and not np.isin(flags, (0, 1)).all():
        raise ValueError(f"{name} must be booleans (or 0/1), got values {np.unique(flags)[:5].tolist()}")
    return flags.astype(bool)


def _unit_interval(name: str, values: Any) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be numeric, got {values!r}") from error
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    bad = ~((array >= 0.0) & (array <= 1.0))  # NaN fails both
    if bad.any():
        raise ValueError(f"{name} must be in [0, 1]; {int(bad.sum())} bad values, e.g. {array[bad][:5].tolist()}")
    return array


def _population(predicted_correct: Any, inclusion_probability: Any, drawn: Any, wrong: Any,
                labelled: Any) -> _Population:
    predicted = _unit_interval("predicted_correct", predicted_correct)
    n_items = predicted.shape[0]
    probability = _unit_interval("inclusion_probability", inclusion_probability)
    if probability.shape != (n_items,):
        raise ValueError(f"length mismatch: inclusion_probability has shape {probability.shape}, expected ({n_items},)")
    drawn_flags = _flags("drawn", drawn, n_items)
    labelled_flags = drawn_flags.copy() if labelled is None else _flags("labelled", labelled, n_items)
    if (labelled_flags & ~drawn_flags).any():
        raise ValueError(f"{int((labelled_flags & ~drawn_flags).sum())} items are labelled but were not drawn: "
                         "only labels drawn with a known probability count")
    if (drawn_flags & (probability <= 0.0)).any():
        raise ValueError("an item was drawn with inclusion probability 0: the probabilities are not the design's")
    wrong_flags = _flags("wrong", np.where(labelled_flags, np.asarray(wrong), False), n_items)
    outcome = np.where(labelled_flags, wrong_flags, drawn_flags).astype(float)
    return _Population(1.0 - predicted, probability, drawn_flags, labelled_flags, outcome)


def _predictor(population: _Population, estimator: str) -> np.ndarray:
    if estimator == "doubly_robust":
        return population.predicted_error
    if estimator == "weighted":
        return np.zeros_like(population.predicted_error)
    raise ValueError(f"unknown estimator {estimator!r}; valid estimators are {list(ESTIMATORS)}")


def _terms(population: _Population, predictor: np.ndarray) -> np.ndarray:
    """``X_i = f_i + Z_i (e_i - f_i) / pi_i`` (``f = 0`` for the weighted estimator)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        correction = np.where(population.drawn, (population.outcome - predictor) / population.probability, 0.0)
    return predictor + correction


def _outcomes(population: _Population, predictor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The three values each term can take (not drawn, drawn and wrong, drawn and right) as an (n, 3) matrix, and
    their probabilities if the calibrated confidences were right. Needs ``pi > 0``."""
    pi, f = population.probability, predictor
    values = np.stack([f, f + (1.0 - f) / pi, f - f / pi], axis=1)
    error = population.predicted_error
    chances = np.stack([1.0 - pi, pi * error, pi * (1.0 - error)], axis=1)
    return values, chances


def _expected_log_growth(values: np.ndarray, chances: np.ndarray, bets: np.ndarray, at: float) -> np.ndarray:
    """Per item and bet, ``E log(1 + lam (at - X_i))`` under the calibrated model: an (n, n_bets) matrix."""
    steps = np.log1p(bets[None, None, :] * (at - values[:, :, None]))
    return (chances[:, :, None] * steps).sum(axis=1)


PLAN_CHUNK = 20_000  # items per step of a plan's sum: its (items, 3, bets) array stays near 20 MB


def _planned_bet(values: np.ndarray, chances: np.ndarray, bets: np.ndarray, at: float) -> float:
    growth = np.zeros(bets.shape[0])
    for start in range(0, values.shape[0], PLAN_CHUNK):
        end = start + PLAN_CHUNK
        growth += _expected_log_growth(values[start:end], chances[start:end], bets, at).sum(axis=0)
    return float(bets[int(np.argmax(growth))]) if growth.max() > 0.0 else 0.0


def _log_wealth(terms: np.ndarray, bet: float, at: float) -> float:
    return float(np.log1p(bet * (at - terms)).sum())


def _upper_bound(terms: np.ndarray, bet: float, delta: float) -> float:
    """``inf {m in [0, 1] : K(m) >= 1 / delta}`` by bisection (``K`` increases in ``m``), rounded up; 1.0 when no
    ``m`` in [0, 1] is rejected."""
    target = -np.log(delta)
    if bet <= 0.0 or _log_wealth(terms, bet, 1.0) < target:
        return 1.0
    low, high = 0.0, 1.0
    if _log_wealth(terms, bet, 0.0) >= target:
        return 0.0
    for _ in range(BISECTION_STEPS):
        middle = 0.5 * (low + high)
        low, high = (low, middle) if _log_wealth(terms, bet, middle) >= target else (middle, high)
    return high


def _planning_point(values: np.ndarray, chances: np.ndarray, delta: float, range_top: float) -> float:
    """Where the bound should land if the calibrated confidences were right (a Bernstein-style guess from the
    design alone): the bet is planned for a test there."""
    mean = (chances * values).sum(axis=1)
    variance = (chances * values**2).sum(axis=1) - mean**2
    n_items, log_term = values.shape[0], -np.log(delta)
    guess = mean.mean() + np.sqrt(2.0 * variance.mean() * log_term / n_items) + range_top * log_term / (3 * n_items)
    return float(np.clip(guess, 1e-6, 1.0))


def _effective_sample_size(population: _Population) -> float:
    weights = 1.0 / population.probability[population.labelled]
    return float(weights.sum() ** 2 / (weights**2).sum()) if weights.size else 0.0


def _refusal(population: _Population, min_labels: int) -> str | None:
    n_items, n_labelled = population.probability.shape[0], int(population.labelled.sum())
    if n_items == 0:
        return "the population is empty"
    if (population.probability <= 0.0).any():
        return (f"{int((population.probability <= 0.0).sum())} items of the population could not be drawn "
                "(inclusion probability 0): their errors are unseen")
    if n_labelled < min_labels:
        return f"{n_labelled} labels drawn from the population, fewer than the {min_labels} required"
    return None


def error_bound(
    predicted_correct: Any,
    inclusion_probability: Any,
    drawn: Any,
    wrong: Any,
    *,
    delta: float,
    estimator: Estimator = "doubly_robust",
    labelled: Any = None,
    plan_at: float | None = None,
    min_labels: int = DEFAULT_MIN_LABELS,
) -> ErrorBound:
    """The error rate of a population of items and its ``1 - delta`` upper bound (see the module docstring).

    One entry per item of the population: ``predicted_correct`` its calibrated confidence (the doubly robust
    predictor, and the plan of the bet), ``inclusion_probability`` its ``pi_i``, ``drawn`` whether it was drawn,
    ``wrong`` for labelled items whether the model was wrong (read only where labelled), ``labelled`` which drawn
    items have a label (default: all of them; the rest count as wrong). ``plan_at`` is the error rate the bet is
    planned for (default: where the bound would land if the confidences were calibrated; pass the target to
    certify it). Fewer than ``min_labels`` labels, an empty population or an item with ``pi = 0`` give a result
    with ``upper=None`` and the reason.
    """
    _check_delta(delta)
    population = _population(predicted_correct, inclusion_probability, drawn, wrong, labelled)
    predictor = _predictor(population, estimator)
    counts = _counts(population)
    refusal = _refusal(population, min_labels)
    if refusal is not None:
        return ErrorBound(estimator, np.nan, None, delta, *counts, _effective_sample_size(population), refusal)
    terms = _terms(population, predictor)
    values, chances = _outcomes(population, predictor)
    range_top = float(values[:, 1].max())
    bets = BET_GRID / range_top
    at = _planning_point(values, chances, delta, range_top) if plan_at is None else float(plan_at)
    bound = _upper_bound(terms, _planned_bet(values, chances, bets, at), delta)
    return ErrorBound(estimator, float(terms.mean()), bound, delta, *counts, _effective_sample_size(population))


@dataclass(frozen=True)
class ErrorInterval:
    """The estimated error rate of ``n_population`` items with a two-sided ``confidence`` interval: each end is a
    :func:`error_bound` at ``(1 - confidence) / 2``, so the interval holds whatever the pending labels say.

    ``error_rate`` is the point estimate from the labels that are back, kept within the interval; it is NaN without
    any label back, and NaN with the interval [0, 1] where the population cannot be estimated at all (``reason``
    says why). ``n_labelled`` counts the labels back, ``n_missing`` the drawn items still without a label (the upper
    end counts them wrong, the lower end right), ``n_errors`` the wrong labels.
    """

    estimator: str
    error_rate: float
    lower: float
    upper: float
    confidence: float
    n_population: int
    n_labelled: int
    n_missing: int
    n_errors: int
    effective_sample_size: float
    reason: str | None = None


def error_interval(
    predicted_correct: Any,
    inclusion_probability: Any,
    drawn: Any,
    wrong: Any,
    *,
    confidence: float = 0.95,
    estimator: Estimator = "doubly_robust",
    labelled: Any = None,
) -> ErrorInterval:
    """The error rate of a population (one entry per item, as for :func:`error_bound`) with a two-sided interval.

    Upper end: :func:`error_bound` at ``delta = (1 - confidence) / 2``. Lower end: the same bound on the rate of
    *right* outputs (the predictor ``1 - f``, each label's verdict flipped, a missing label counted right), taken
    from 1. The ends need no assumption about the labels still missing.

    The point estimate alone makes one: among the items drawn at one inclusion probability (one route batch's audit
    rate, or batches that share it), the labels back stand for the ones still missing. Each label is weighted by
    ``1 / (pi_i r)``, ``r`` the share of its stratum's draws that are back; a stratum with none back contributes its
    predictor only. With every label back this is the plain estimator's mean. It is kept within [lower, upper]: an
    unbiased mean can stray outside (below 0 when a run of audits finds no error where some were predicted), and a
    figure shown beside its interval should not."""
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    delta = (1.0 - confidence) / 2.0
    population = _population(predicted_correct, inclusion_probability, drawn, wrong, labelled)
    flipped = np.where(population.labelled, population.outcome < 0.5, False)
    high = error_bound(1.0 - population.predicted_error, population.probability, population.drawn,
                       population.outcome > 0.5, delta=delta, estimator=estimator, labelled=population.labelled)
    low = error_bound(population.predicted_error, population.probability, population.drawn, flipped,
                      delta=delta, estimator=estimator, labelled=population.labelled)
    counts = _counts(population)
    size = _effective_sample_size(population)
    if high.upper is None or low.upper is None:
        return ErrorInterval(estimator, np.nan, 0.0, 1.0, confidence, *counts, size, high.reason or low.reason)
    lower, upper = max(0.0, 1.0 - low.upper), high.upper
    point = _point_estimate(population, estimator)
    return ErrorInterval(estimator, float(np.clip(point, lower, upper)) if np.isfinite(point) else point, lower,
                         upper, confidence, *counts, size)


def _point_estimate(population: _Population, estimator: str) -> float:
    """The estimator's mean with each label weighted by ``1 / (pi_i r)``, ``r`` the share of the draws at its
    ``pi_i`` that are back (see :func:`error_interval`); NaN without any label back."""
    if not population.labelled.any():
        return float("nan")
    # one stratum per distinct pi (a route batch's audit rate): its share of draws back, in one pass
    values, stratum = np.unique(population.probability, return_inverse=True)
    drawn = np.bincount(stratum, weights=population.drawn, minlength=values.shape[0])
    back = np.bincount(stratum, weights=population.labelled, minlength=values.shape[0])
    share = np.divide(back, drawn, out=np.ones_like(back), where=back > 0)
    probability = population.probability * share[stratum]
    returned = _Population(population.predicted_error, probability, population.labelled, population.labelled,
                           population.outcome)
    return float(_terms(returned, _predictor(returned, estimator)).mean())


def _counts(population: _Population) -> tuple[int, int, int, int]:
    n_errors = int((population.labelled & (population.outcome > 0.5)).sum())
    return (int(population.probability.shape[0]), int(population.labelled.sum()), int(population.missing.sum()),
            n_errors)


def _check_delta(delta: float) -> None:
    if not (0.0 < delta < 1.0):
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")


def error_p_value(
    predicted_correct: Any,
    inclusion_probability: Any,
    drawn: Any,
    wrong: Any,
    *,
    alpha: float,
    estimator: Estimator = "doubly_robust",
    labelled: Any = None,
    min_labels: int = DEFAULT_MIN_LABELS,
) -> float:
    """A p-value for the null "the population's error rate is at least ``alpha``": ``min(1, 1 / K(alpha))`` with
    the bet planned at ``alpha``. 1.0 when the population cannot be certified (see :func:`error_bound`)."""
    _check_delta(alpha)
    population = _population(predicted_correct, inclusion_probability, drawn, wrong, labelled)
    predictor = _predictor(population, estimator)
    if _refusal(population, min_labels) is not None:
        return 1.0
    values, chances = _outcomes(population, predictor)
    bet = _planned_bet(values, chances, BET_GRID / float(values[:, 1].max()), alpha)
    return float(min(1.0, np.exp(-_log_wealth(_terms(population, predictor), bet, alpha))))


def _prefix_p_values(population: _Population, predictor: np.ndarray, ends: np.ndarray, alpha: float,
                     range_top: float) -> np.ndarray:
    """p-values of "error >= alpha" for the prefixes ``[:end]`` of items sorted by descending confidence, each
    with its own bet planned from the design (prefix sums over a fixed bet grid: no loop over candidates)."""
    values, chances = _outcomes(population, predictor)
    bets = BET_GRID / range_top
    planned = np.cumsum(_expected_log_growth(values, chances, bets, alpha), axis=0)[ends - 1]
    realised = np.cumsum(np.log1p(bets[None, :] * (alpha - _terms(population, predictor)[:, None])), axis=0)
    best = np.argmax(planned, axis=1)
    log_wealth = np.where(planned.max(axis=1) > 0.0, realised[ends - 1, best], 0.0)
    return np.minimum(1.0, np.exp(-log_wealth))


def certify_threshold(
    confidence: Any,
    inclusion_probability: Any,
    drawn: Any,
    wrong: Any,
    *,
    alpha: float,
    delta: float,
    predicted_correct: Any = None,
    estimator: Estimator = "doubly_robust",
    labelled: Any = None,
    grid: Any = None,
    min_count: int | None = None,
    grid_size: int = DEFAULT_GRID_SIZE,
    min_labels: int = DEFAULT_MIN_LABELS,
) -> ThresholdResult:
    """The lowest candidate threshold at which the error rate of the routed items at or above it is certified
    ``<= alpha`` with probability ``1 - delta``: Learn-then-Test over the p-values of :func:`error_p_value`, with
    the candidate grid and the fixed-sequence walk of ``routing.thresholds``.

    One entry per routed item (the whole population, labelled or not): ``confidence`` is the score the threshold
    applies to, ``predicted_correct`` its calibrated value (default: ``confidence``). The walk starts at the
    highest candidate whose population expects at least ``min_count`` labels (``sum(pi)``, the design, never the
    draw; default ``default_start_count``); a candidate with fewer than ``min_labels`` labels is not rejected,
    which can only make the walk stop earlier. ``n`` and ``n_accepted`` count routed items, ``n_errors`` the
    labelled errors at the threshold, ``empirical_error`` is the point estimate there.
    """
    _check_delta(alpha)
    _check_delta(delta)
    scores = _unit_interval("confidence", confidence)
    predicted = scores if predicted_correct is None else predicted_correct
    population = _population(predicted, inclusion_probability, drawn, wrong, labelled)
    if population.probability.shape != scores.shape:
        raise ValueError(f"length mismatch: confidence has shape {scores.shape}, expected {population.probability.shape}")
    need = default_start_count(alpha=alpha, delta=delta) if min_count is None else int(min_count)
    n_items = scores.shape[0]
    empty = ThresholdResult(None, 0.0, None, n_items, 0, 0, alpha, delta, estimator=estimator, n_labelled=0)
    if n_items == 0 or not (population.probability > 0.0).any():
        return empty
    order = np.argsort(-scores, kind="stable")
    ranked = _reorder(population, order)
    predictor = _predictor(ranked, estimator)
    candidates = candidate_thresholds(grid, scores[order][::-1], grid_size)
    ends = n_items - np.searchsorted(scores[order][::-1], candidates, side="left")
    expected = np.concatenate([[0.0], np.cumsum(ranked.probability)])[ends]
    start = int(np.argmax(expected >= need)) if (expected >= need).any() else candidates.shape[0]
    ends, candidates = ends[start:], candidates[start:]
    if ends.size == 0:
        return empty
    undrawable = np.cumsum(ranked.probability <= 0.0)[ends - 1] > 0
    n_labelled = np.cumsum(ranked.labelled)[ends - 1]
    positive = ranked.probability > 0.0
    range_top = float(np.max(predictor[positive] + (1.0 - predictor[positive]) / ranked.probability[positive]))
    safe = _reorder(ranked, slice(None), probability=np.where(positive, ranked.probability, 1.0))
    p_values = _prefix_p_values(safe, predictor, ends, alpha, range_top)
    n_passed, tested = fixed_sequence((p_values <= delta) & ~undrawable & (n_labelled >= min_labels))
    if n_passed == 0:
        return ThresholdResult(None, 0.0, None, n_items, 0, tested, alpha, delta, estimator=estimator, n_labelled=0)
    end = int(ends[n_passed - 1])
    return _certified(_reorder(safe, slice(0, end)), predictor[:end], float(candidates[n_passed - 1]), n_items,
                      tested, alpha, delta, estimator, range_top)


def _reorder(population: _Population, index: Any, *, probability: np.ndarray | None = None) -> _Population:
    return _Population(population.predicted_error[index],
                       (population.probability if probability is None else probability)[index],
                       population.drawn[index], population.labelled[index], population.outcome[index])


def _certified(population: _Population, predictor: np.ndarray, threshold: float, n_items: int, tested: int,
               alpha: float, delta: float, estimator: str, range_top: float) -> ThresholdResult:
    """The evidence at the certified threshold: the bound with the same bet as its test (so it is ``<= alpha``
    exactly when the test rejected)."""
    terms = _terms(population, predictor)
    values, chances = _outcomes(population, predictor)
    bet = _planned_bet(values, chances, BET_GRID / range_top, alpha)
    n_accepted = int(terms.shape[0])
    return ThresholdResult(
        threshold=threshold,
        coverage=n_accepted / n_items,
        error_upper_bound=_upper_bound(terms, bet, delta),
        n=n_items,
        n_accepted=n_accepted,
        tested=tested,
        alpha=alpha,
        delta=delta,
        empirical_error=float(terms.mean()),
        n_errors=int((population.labelled & (population.outcome > 0.5)).sum()),
        estimator=estimator,
        n_labelled=int(population.labelled.sum()),
    )


def _stream_terms(predicted_correct: Any, inclusion_probability: Any, drawn: Any, wrong: Any, labelled: Any,
                  estimator: str, floor: float) -> tuple[_Population, np.ndarray]:
    if not (0.0 < floor <= 1.0):
        raise ValueError(f"floor must be in (0, 1] for an anytime bound (every item drawable), got {floor!r}")
    population = _population(predicted_correct, inclusion_probability, drawn, wrong, labelled)
    below = population.probability < floor
    if below.any():
        raise ValueError(f"{int(below.sum())} items have inclusion probability below the floor {floor}, e.g. "
                         f"{population.probability[below][:5].tolist()}: the terms' range assumes the floor")
    return population, _terms(population, _predictor(population, estimator))


def anytime_error_bounds(
    predicted_correct: Any,
    inclusion_probability: Any,
    drawn: Any,
    wrong: Any,
    *,
    delta: float,
    floor: float,
    estimator: Estimator = "doubly_robust",
    labelled: Any = None,
) -> np.ndarray:
    """A ``1 - delta`` upper confidence sequence for the error rate of a stream of items (in decision order): the
    bound after each item, valid at every look at once (see the module docstring's stream model).

    Every ``pi_i`` must be at least ``floor``, so every term is at most ``1 / floor`` before its label is seen. The
    bets are predictable (Waudby-Smith and Ramdas' plug-in, from the terms before each item), at most half the
    range allows; ``log(1 + x) >= x + psi x ** 2`` for ``x >= -1/2`` (Fan, Grama and Liu 2015) turns the wealth
    into a quadratic in the tested rate, solved in closed form at every look. The running minimum is reported.
    """
    _check_delta(delta)
    _, terms = _stream_terms(predicted_correct, inclusion_probability, drawn, wrong, labelled, estimator, floor)
    if terms.size == 0:
        return np.empty(0)
    bets = _predictable_bets(terms, delta, MAX_BET_FRACTION * floor)
    psi = (np.log1p(-MAX_BET_FRACTION) + MAX_BET_FRACTION) / MAX_BET_FRACTION**2
    # log K_t(m) >= a m^2 + b m + c, with sums over the items so far
    a = psi * np.cumsum(bets**2)
    b = np.cumsum(bets) - 2.0 * psi * np.cumsum(bets**2 * terms)
    c = -np.cumsum(bets * terms) + psi * np.cumsum(bets**2 * terms**2) + np.log(delta)
    return np.minimum.accumulate(_smallest_root(a, b, c))


def _smallest_root(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The smallest ``m`` in [0, 1] with ``a m^2 + b m + c >= 0`` (``a < 0``), 1.0 where there is none. The log
    wealth increases in ``m``, so every larger ``m`` is rejected too."""
    with np.errstate(divide="ignore", invalid="ignore"):
        discriminant = b**2 - 4.0 * a * c
        root = (-b + np.sqrt(np.maximum(discriminant, 0.0))) / (2.0 * a)
    # c < 0: m = 0 is not rejected, so both roots lie on one side of 0; only a root in [0, 1] is a bound
    feasible = (discriminant >= 0.0) & np.isfinite(root) & (root >= 0.0) & (root <= 1.0)
    return np.where(c >= 0.0, 0.0, np.where(feasible, root, 1.0))


def _predictable_bets(terms: np.ndarray, delta: float, largest: float) -> np.ndarray:
    """Waudby-Smith and Ramdas' predictable plug-in bets: ``sqrt(2 log(1/delta) / (sigma2 t log(1 + t)))`` with
    ``sigma2`` the variance of the terms before item ``t`` (a prior of ``PRIOR_VARIANCE`` first), capped."""
    t = np.arange(1, terms.shape[0] + 1, dtype=float)
    running_mean = np.cumsum(terms) / t
    before = np.concatenate([[0.0], running_mean[:-1]])
    spread = np.cumsum((terms - before) ** 2)
    variance = (PRIOR_VARIANCE + np.concatenate([[0.0], spread[:-1]])) / t
    return np.minimum(np.sqrt(2.0 * np.log(1.0 / delta) / (variance * t * np.log1p(t))), largest)


def weighted_error_guard(
    predicted_correct: Any,
    inclusion_probability: Any,
    drawn: Any,
    wrong: Any,
    *,
    alpha: float,
    delta: float,
    floor: float,
    estimator: Estimator = "doubly_robust",
    labelled: Any = None,
) -> GuardResult:
    """``routing.guard.live_error_guard`` on the weighted terms of every auto-accepted item (in decision order),
    not only the audited ones: halts when the mixture wealth ``mean_k prod_i (1 + lam_k (X_i - alpha))`` reaches
    ``1 / delta``. Bets are fractions ``BET_FRACTIONS`` of ``1 / (alpha - lo)``, with ``lo`` the smallest term the
    floor allows (0 weighted, ``1 - 1 / floor`` doubly robust). A drawn item without a label counts as wrong: the
    guard fails closed. ``n_audited`` and ``n_errors`` count labels up to the halt.
    """
    alpha, delta = float(alpha), float(delta)
    _check_delta(alpha)
    _check_delta(delta)
    population, terms = _stream_terms(predicted_correct, inclusion_probability, drawn, wrong, labelled, estimator,
                                      floor)
    lowest = 0.0 if estimator == "weighted" else 1.0 - 1.0 / floor
    if terms.size == 0:
        return GuardResult(False, 1.0, 0, 0, None, alpha, delta)
    bets = BET_FRACTIONS / (alpha - lowest)
    log_wealth = np.cumsum(np.log1p(bets[None, :] * (terms[:, None] - alpha)), axis=0)
    peak = log_wealth.max(axis=1, keepdims=True)
    mixture = np.exp(peak[:, 0]) * np.exp(log_wealth - peak).mean(axis=1)
    errors = np.cumsum(population.labelled & (population.outcome > 0.5))
    audited = np.cumsum(population.labelled)
    crossed = mixture >= 1.0 / delta
    at = int(np.argmax(crossed)) if crossed.any() else terms.shape[0] - 1
    return GuardResult(bool(crossed.any()), float(mixture[at]), int(audited[at]), int(errors[at]),
                       at if crossed.any() else None, alpha, delta)
