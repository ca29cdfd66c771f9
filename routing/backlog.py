"""Certifying a backlog: which items people left waiting a better model may now auto-accept, with the guarantee.

The population
--------------
A select run takes a segment's review items ``R`` (new arrivals routed to review, and the backlog re-routed to
it) and draws each for audit with probability ``pi_i`` by a fixed uniform number ``u_i`` per decision
(``routing.draws.AUDIT_SALT``: ``audited = u_i < pi_i``). Its strategy (margin, the active draw, ...) picks reviews
``M`` from all of ``R``, audited or not (a pick the audit took goes out as its audit), so the items it leaves,
``B = R \ M``, are fixed before the audit draw. The rates can differ between route batches: the items of ``B``
with ``u_i < pi_min`` (the smallest rate in ``B``) are a Bernoulli(``pi_min``) sample of ``B``, the same chance
for every item, so given how many there are a simple random sample of ``B`` drawn without regard to any model or
error. Sampled items whose label trains a model (the policy's ``audit_train_share``, a fixed draw per decision
independent of the errors) leave the population and the sample alike, which keeps the sample uniform over what is
left. A run whose review items are all re-routed ones (a pure backlog) holds its audits out whatever that share
(``labeling.resolve.label_split``), so that every one of them can certify it. At the next route run the
unlabelled items of ``B`` come back (the backlog) under the model of that moment,
which never saw the sample's labels.

The test
--------
For a candidate threshold ``t`` on the new model's raw confidence, let ``N_t`` be the items of ``B`` at or above it,
``n_t`` the sample's items among them, ``d_t`` the sample's errors (a sampled item whose label has not come back
counts as an error), ``U_t`` the unlabelled items among them (those a threshold at ``t`` would auto-accept) and
``D_t`` the new model's errors on all ``N_t`` items. The errors among the auto-accepted items are at most ``D_t``,
so if ``D_t <= alpha U_t`` their error rate is at most ``alpha``. The null hypothesis is therefore
``D_t >= D0 = floor(alpha U_t) + 1``; given ``n_t`` the sample's errors are hypergeometric, and the p-value is
``P(Hypergeometric(N_t, D0, n_t) <= d_t)`` (exact for a finite population; the tail decreases in ``D``, so the
smallest null value is the worst case). Fixed-sequence Learn-then-Test
(``routing.thresholds``) walks the candidates down from the highest whose test could pass with no error in its
sample (a choice from counts alone) and stops at the first it cannot reject.

Assumptions
-----------
1. ``B`` is fixed before the audit draw (the strategy picks from every review item; how many it picks may depend on
   how many audits there are, which leaves the sample, given its size, uniform over ``B``), and the draw's
   uniforms are independent of the items' errors.
2. The sample's labels are the truth (annotator error is corrected elsewhere) and never trained the model being
   certified: only held-out audit labels are sampled.
3. One select run's ``B`` is a population, as long as no later select picks reviews from it by a model's
   uncertainty (a second select over the same decisions in a new budget window): the store reads whether one did,
   and such a population certifies nothing. Runs are not pooled: items leave a backlog between runs by review
   picks that depend on a model's uncertainty, so an older run's sample is not uniform over what is left of it.
4. Each candidate's test conditions on its own sample size ``n_t`` (as the uniform certification conditions on the
   labels it holds).
5. The rules routing applies after certification (risk rules, the halt) only remove items from the auto-accepted
   set, as for the segment's own threshold.

What it costs: a backlog certifies once about ``log(1/delta) / alpha`` sampled labels (47 at the default target)
fall among its confident items with almost no error, so a run's audits must reach that many.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import hypergeom

from routing.thresholds import ThresholdResult, candidate_thresholds

__all__ = ["ESTIMATOR", "certify_backlog", "certifying_sample", "remainder_p_value", "remainder_upper_bound"]

ESTIMATOR = "backlog_sample"


def certifying_sample(uniforms: Any, rates: Any) -> np.ndarray:
    """Which items of a backlog population are its uniform sample: audited at the smallest rate any of them had
    (``u_i < min(pi)``), so every item had the same chance. All False when some rate is 0 (nothing certifies)."""
    u, pi = np.asarray(uniforms, dtype=float), np.asarray(rates, dtype=float)
    if u.shape != pi.shape:
        raise ValueError(f"length mismatch: {u.shape} uniforms, {pi.shape} rates")
    if u.size == 0 or not np.isfinite(pi).all() or pi.min() <= 0.0:
        return np.zeros(u.shape, dtype=bool)
    return u < pi.min()


def remainder_p_value(n_population: Any, n_sampled: Any, n_wrong: Any, n_unlabelled: Any, alpha: float) -> np.ndarray:
    """p-values of "the errors among the unlabelled items exceed ``alpha`` times their number": the chance that a
    simple random sample of ``n_sampled`` from ``n_population`` items holding ``floor(alpha n_unlabelled) + 1``
    errors shows at most ``n_wrong``. 1.0 where nothing was sampled, and where nothing is left unlabelled (a
    threshold that would auto-accept nothing claims nothing)."""
    big, sampled, wrong, left = (np.asarray(v, dtype=np.int64) for v in (n_population, n_sampled, n_wrong,
                                                                          n_unlabelled))
    null_errors = np.floor(alpha * left).astype(np.int64) + 1
    feasible = null_errors <= big
    p = np.where(feasible, hypergeom.cdf(wrong, big, np.minimum(null_errors, big), sampled), 0.0)
    p = np.where(sampled > 0, p, 1.0)
    return np.where(left > 0, p, 1.0)


def remainder_upper_bound(n_population: int, n_sampled: int, n_wrong: int, n_unlabelled: int,
                          delta: float) -> float | None:
    """The upper confidence bound at level ``delta`` on the error rate among the unlabelled items: the largest
    population error count the sample does not refute, over the unlabelled count (None when nothing is left)."""
    if n_unlabelled <= 0:
        return None
    if not n_sampled:  # no evidence: every error count is plausible
        return min(1.0, n_population / n_unlabelled)
    most, above = n_wrong, n_population + 1  # the tail decreases in the error count: bisect for the last plausible
    while above - most > 1:
        middle = (most + above) // 2
        most, above = (middle, above) if hypergeom.cdf(n_wrong, n_population, middle, n_sampled) > delta \
            else (most, middle)
    return min(1.0, most / n_unlabelled)


def _at_or_above(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    ordered = np.sort(values)
    return ordered.shape[0] - np.searchsorted(ordered, thresholds, side="left")


def _first_passing(big: np.ndarray, sampled: np.ndarray, wrong: np.ndarray, left: np.ndarray, alpha: float,
                   delta: float, *, passing: bool = True) -> int:
    """The first candidate whose test passes (or, with ``passing=False``, fails), or the number of candidates: the
    p-values are computed in growing chunks, since the answer usually comes long before the grid's end and each
    hypergeometric tail costs."""
    begin, size = 0, 16
    while begin < big.shape[0]:
        end = min(begin + size, big.shape[0])
        passed = remainder_p_value(big[begin:end], sampled[begin:end], wrong[begin:end], left[begin:end],
                                   alpha) <= delta
        hit = passed if passing else ~passed
        if hit.any():
            return begin + int(np.argmax(hit))
        begin, size = end, size * 2
    return int(big.shape[0])


def _walk(big: np.ndarray, sampled: np.ndarray, wrong: np.ndarray, left: np.ndarray, alpha: float,
          delta: float) -> tuple[int, int]:
    """(rejected, tested) of the fixed-sequence walk over the candidates' tests (``routing.thresholds``)."""
    n_passed = _first_passing(big, sampled, wrong, left, alpha, delta, passing=False)
    return n_passed, min(n_passed + 1, int(big.shape[0]))


def certify_backlog(
    confidence: Any, sampled: Any, wrong: Any, unlabelled: Any, *, alpha: float, delta: float,
    grid_size: int = 1000,
) -> ThresholdResult:
    """The lowest candidate threshold on ``confidence`` (every item of the population, the new model's raw
    confidence) certified by the fixed-sequence hypergeometric test above. ``sampled`` marks the uniform sample
    (``certifying_sample``), ``wrong`` whether each sampled item's label disagrees with the model (or never came
    back), ``unlabelled`` the items a threshold would auto-accept. ``n`` in the result counts the population,
    ``n_accepted`` the unlabelled items at the threshold, ``n_labelled`` the sample there."""
    values = np.asarray(confidence, dtype=float)
    flags = [np.asarray(v, dtype=bool) for v in (sampled, wrong, unlabelled)]
    if any(f.shape != values.shape for f in flags):
        raise ValueError("confidence, sampled, wrong and unlabelled must have the same length")
    if values.size and not ((values >= 0.0) & (values <= 1.0)).all():
        raise ValueError("confidence must be finite and in [0, 1]")
    sample, errors, left = flags
    empty = ThresholdResult(None, 0.0, None, int(values.size), 0, 0, alpha, delta, estimator=ESTIMATOR,
                            n_labelled=int(sample.sum()))
    if not sample.any():
        return empty
    candidates = candidate_thresholds(None, np.sort(values), grid_size)
    big, n_sampled, n_wrong, n_left = (_at_or_above(values[mask], candidates)
                                       for mask in (slice(None), sample, sample & errors, left))
    # the walk starts at the highest candidate whose test could pass with no error at all: a choice made from
    # counts alone, never the errors, so it leaves the guarantee as it is
    start = _first_passing(big, n_sampled, np.zeros_like(n_sampled), n_left, alpha, delta)
    n_passed, tested = _walk(big[start:], n_sampled[start:], n_wrong[start:], n_left[start:], alpha, delta)
    if n_passed == 0:
        return ThresholdResult(None, 0.0, None, int(values.size), 0, tested, alpha, delta, estimator=ESTIMATOR,
                               n_labelled=int(sample.sum()))
    last = start + n_passed - 1
    return ThresholdResult(
        threshold=float(candidates[last]), coverage=float(n_left[last] / max(int(left.sum()), 1)),
        error_upper_bound=remainder_upper_bound(int(big[last]), int(n_sampled[last]), int(n_wrong[last]),
                                                int(n_left[last]), delta),
        n=int(values.size), n_accepted=int(n_left[last]), tested=tested, alpha=alpha, delta=delta,
        empirical_error=float(n_wrong[last] / n_sampled[last]), n_errors=int(n_wrong[last]),
        estimator=ESTIMATOR, n_labelled=int(n_sampled[last]),
    )
