"""Review selection with known probabilities: uncertainty-weighted Poisson sampling with a floor, sized to a budget.

Why known probabilities
-----------------------
A deterministic top-k pick (margin sampling) gives a confident item no chance of review, so its labels say nothing
unbiased about the confident items that get auto-accepted. Zrnic and Candès ("Active Statistical Inference", ICML
2024) label each item with a known probability ``pi(x)`` that grows with the model's uncertainty, mixed with a
uniform floor; inverse-probability weights then make every label count for the error estimate
(``routing.active_inference``), while the draws still favour the items that teach the model most.

The design
----------
``pi_i = min(1, max(floor, c * u_i ** power))`` for uncertainty ``u_i >= 0`` (e.g. ``1 -`` calibrated confidence of
the predicted class, or ``1 -`` margin); ``c`` is found by bisection so that ``sum(pi) == budget``: the expected
number of reviews is the budget. Two limits are reported, not hidden: when the floor alone asks for more than the
budget (``n * floor > budget``) every item gets the floor, because the floor is the policy's promise that every
item can be drawn (the estimators need ``pi_i > 0``); when even ``pi = 1`` for every uncertain item stays under
the budget, that is what is returned (``sum(pi) < budget``).

Each item is then drawn independently, ``drawn_i = U_i < pi_i`` (Poisson sampling): the probabilities are exactly
known and draws are independent given the items, which is what the estimators assume.

The hard cap, and why it cannot bias
------------------------------------
Poisson sampling has a random count; a hard cap on reviews must not silently change the probabilities. Thinning
the drawn items down to the cap and rescaling ``pi`` by ``cap / count`` would use a factor that depends on the
draw itself, so the rescaled ``pi`` is not the probability of being labelled and the weighted estimate is biased
(slightly, but unboundedly so under adversarial errors). Here the design never changes: ``drawn`` is the exact
Poisson draw with the stated ``pi``; when more than ``cap`` items are drawn, a uniformly random ``cap`` of them
are ``labelled`` and the rest are *drawn but not labelled*. The estimators treat a drawn item without a label as
a missing outcome and bound it by its worst case (counted as wrong in the upper bound), which keeps the bound
valid whatever the missing labels would have said; the cost is a looser bound when the cap binds. The same rule
covers drawn items whose labels never come back. ``overflow_bound`` is a Chernoff bound, known before the draw,
on the chance that the cap binds at all; size ``cap`` well above the budget (e.g. budget + 4 sqrt(budget)) to
make it negligible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ReviewDraw", "draw_for_review", "inclusion_probabilities", "overflow_bound"]

BISECTION_STEPS = 200


@dataclass(frozen=True, eq=False)
class ReviewDraw:
    """One Poisson draw for review.

    ``inclusion_probability`` is each item's designed probability of being drawn (the one the estimators use),
    ``drawn`` the exact Poisson draw, ``labelled`` the drawn items sent to people (all of them unless the cap
    bound), ``overflow_bound`` a bound, computed before the draw, on the chance that the cap binds.
    """

    inclusion_probability: np.ndarray
    drawn: np.ndarray
    labelled: np.ndarray
    cap: int | None
    overflow_bound: float

    @property
    def expected_count(self) -> float:
        return float(self.inclusion_probability.sum())

    @property
    def capped(self) -> bool:
        """Whether the cap bound: some drawn items were not sent for review (missing labels to the estimators)."""
        return bool(self.drawn.sum() > self.labelled.sum())


def _as_uncertainty(uncertainty: Any) -> np.ndarray:
    try:
        values = np.asarray(uncertainty, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"uncertainty must be numeric, got {uncertainty!r}") from error
    if values.ndim != 1:
        raise ValueError(f"uncertainty must be 1-D, got shape {values.shape}")
    bad = ~(np.isfinite(values) & (values >= 0.0))
    if bad.any():
        raise ValueError(
            f"uncertainty must be finite and >= 0; {int(bad.sum())} bad values, e.g. {values[bad][:5].tolist()}"
        )
    return values


def _check_design(budget: float, floor: float, power: float) -> None:
    if not (np.isfinite(budget) and budget >= 0.0):
        raise ValueError(f"budget must be finite and >= 0, got {budget!r}")
    if not (0.0 <= floor <= 1.0):
        raise ValueError(f"floor (min_review_probability) must be in [0, 1], got {floor!r}")
    if not (np.isfinite(power) and power > 0.0):
        raise ValueError(f"power must be finite and > 0, got {power!r}")


def _probabilities(weights: np.ndarray, scale: float, floor: float) -> np.ndarray:
    return np.minimum(1.0, np.maximum(floor, scale * weights))


def _exact_scale(weights: np.ndarray, scale: float, floor: float, budget: float) -> float:
    """The scale solving ``sum(pi) == budget`` on the linear piece that ``scale`` (from bisection) lies on."""
    raw = scale * weights
    middle = (raw > floor) & (raw < 1.0)
    fixed = float((raw >= 1.0).sum()) + floor * float((raw <= floor).sum())
    slope = float(weights[middle].sum())
    return (budget - fixed) / slope if slope > 0.0 else scale


def inclusion_probabilities(uncertainty: Any, *, budget: float, floor: float, power: float = 1.0) -> np.ndarray:
    """``pi_i = min(1, max(floor, c * u_i ** power))`` with ``c`` sized so that ``sum(pi) == budget`` (see the
    module docstring for the two limits: the floor wins over the budget, and the sum stays under the budget when
    every uncertain item is already certain to be drawn). ``floor`` is the policy's ``min_review_probability``."""
    _check_design(budget, floor, power)
    values = _as_uncertainty(uncertainty)
    n_items = values.shape[0]
    weights = values**power
    if n_items == 0 or n_items * floor >= budget:
        return np.full(n_items, floor)
    if not (weights > 0.0).any():
        return np.full(n_items, floor)
    top = 1.0 / float(weights[weights > 0.0].min())
    if _probabilities(weights, top, floor).sum() <= budget:
        return _probabilities(weights, top, floor)
    low, high = 0.0, top
    for _ in range(BISECTION_STEPS):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if _probabilities(weights, middle, floor).sum() < budget else (low, middle)
    return _probabilities(weights, _exact_scale(weights, high, floor, budget), floor)


def overflow_bound(inclusion_probability: Any, cap: int | None) -> float:
    """A Chernoff bound on ``P(count > cap)`` for independent draws with these probabilities:
    ``exp(-mu) (e mu / k) ** k`` with ``mu = sum(pi)`` and ``k = cap + 1`` (1.0 when ``k <= mu``; 0.0 without a
    cap or when fewer than ``k`` items can be drawn)."""
    probability = np.asarray(inclusion_probability, dtype=float)
    if cap is None or int((probability > 0.0).sum()) <= cap:
        return 0.0
    mu, k = float(probability.sum()), cap + 1
    if k <= mu:
        return 1.0
    return float(math.exp(-mu + k * (1.0 + math.log(mu / k)))) if mu > 0.0 else 0.0


def draw_for_review(inclusion_probability: Any, *, cap: int | None, rng: np.random.Generator | None = None,
                    uniforms: Any = None, cap_order: Any = None) -> ReviewDraw:
    """An independent (Poisson) draw of each item with its probability, and at most ``cap`` of the drawn items
    labelled (a uniformly random ``cap`` when more are drawn; see the module docstring on why the probabilities
    stay exact). The draw is ``uniforms < pi`` and the cap keeps the drawn items lowest in ``cap_order``, both
    independent uniforms per item; the flows pass fixed numbers per routing decision (``routing.draws``) so that a
    retried step draws the same. Without them, ``rng`` draws both."""
    probability = np.asarray(inclusion_probability, dtype=float)
    if probability.ndim != 1 or not ((probability >= 0.0) & (probability <= 1.0)).all():
        raise ValueError(f"inclusion_probability must be a 1-D array in [0, 1], got {probability[:5].tolist()}")
    if cap is not None and (isinstance(cap, bool) or cap < 0):
        raise ValueError(f"cap must be None or an integer >= 0, got {cap!r}")
    bound = overflow_bound(probability, cap)
    if uniforms is None or cap_order is None:
        if rng is None:
            raise ValueError("give rng, or both uniforms and cap_order")
        uniforms, cap_order = rng.random(probability.shape[0]), rng.random(probability.shape[0])
    uniforms, cap_order = np.asarray(uniforms, dtype=float), np.asarray(cap_order, dtype=float)
    if uniforms.shape != probability.shape or cap_order.shape != probability.shape:
        raise ValueError("uniforms and cap_order need one number per item")
    drawn = uniforms < probability
    labelled = drawn.copy()
    if cap is not None and int(drawn.sum()) > cap:
        chosen = np.flatnonzero(drawn)
        dropped = chosen[np.argsort(cap_order[chosen], kind="stable")][cap:]
        labelled[dropped] = False
    return ReviewDraw(probability, drawn, labelled, cap, bound)
