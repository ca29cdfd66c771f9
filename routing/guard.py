"""The live guard: an anytime-valid test, over the spot-check audits of what was actually auto-accepted, that the
live error of auto-accepted items stays at or below the segment's target.

Why a guard
-----------
A guaranteed threshold (``routing.thresholds``) is certified on unbiased labels that stand for the traffic of the
day they were drawn. The loop then routes other traffic: newer items, items under a newer model, items the drift
watch has not yet flagged. The spot-check audits are the one sample of exactly what was automated: each
auto-accepted item was drawn for audit independently with a known probability, so an audited item is, given
everything before it, a uniform draw from the auto-accepted items of its moment.

The test
--------
Null hypothesis H0: at every moment, the error rate of the auto-accepted items is at most ``alpha`` (so each
audited item is wrong with conditional probability at most ``alpha``). For a bet ``lam`` in ``[0, 1 / alpha]`` the
wealth ``K_t = prod_{i <= t} (1 + lam * (e_i - alpha))`` (``e_i`` = 1 when audit ``i`` found an error) is a
non-negative supermartingale under H0, and so is the average of such products over a fixed grid of bets (a
mixture; no bet is tuned on the data). Ville's inequality bounds the chance that the mixture ever reaches
``1 / delta`` under H0 by ``delta``, whenever and however often it is looked at: the guard may be checked after
every cycle, with no alpha spending. When the wealth reaches ``1 / delta`` the segment halts automation (fail
closed) until a new model routes it, whose audits start a fresh test.

Assumptions, written where they are used: audits are drawn independently of whether the item is wrong (the route
flow's Poisson draw); the human verdict on an audited item is the truth (annotator error on gold items is
reported beside the guard, not corrected in it); audits are ordered by their routing decision, fixed before any
of them was answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BET_FRACTIONS", "GuardResult", "live_error_guard"]

# Bets as fractions of the largest allowed, lam = c / alpha: a mixture from "error a little above target"
# (c ~ 0.02-0.05 is the growth-optimal bet for an error of 1.1-2x alpha at alpha = 0.05) to "far above".
BET_FRACTIONS = np.array([0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.7])


@dataclass(frozen=True)
class GuardResult:
    """The state of one segment's live guard.

    ``e_value`` is the mixture wealth after the last audit (1.0 before any), ``halted`` whether it ever reached
    ``1 / delta``, ``halted_at`` the index of the audit at which it first did (None when not halted), and
    ``n_audited`` / ``n_errors`` count the audits tested (up to and including ``halted_at`` when halted).
    """

    halted: bool
    e_value: float
    n_audited: int
    n_errors: int
    halted_at: int | None
    alpha: float
    delta: float

    @property
    def observed_error(self) -> float | None:
        return None if self.n_audited == 0 else self.n_errors / self.n_audited

    def to_dict(self) -> dict[str, Any]:
        return {"halted": self.halted, "e_value": self.e_value, "n_audited": self.n_audited,
                "n_errors": self.n_errors, "halted_at": self.halted_at, "alpha": self.alpha, "delta": self.delta,
                "observed_error": self.observed_error}


def _as_errors(errors: Any) -> np.ndarray:
    flags = np.asarray(errors)
    if flags.ndim != 1:
        raise ValueError(f"errors must be 1-D, got shape {flags.shape}")
    if flags.size and flags.dtype != bool and not np.isin(flags, (0, 1)).all():
        raise ValueError(f"errors must be booleans (or 0/1), got values {np.unique(flags)[:5].tolist()}")
    return flags.astype(bool)


def _check_level(name: str, value: float) -> float:
    if not (0.0 < value < 1.0):  # NaN fails too
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return float(value)


def live_error_guard(errors: Any, *, alpha: float, delta: float) -> GuardResult:
    """Run the guard over ``errors`` (one flag per audited auto-accepted item, in decision order: True when the
    audit found the model wrong). See the module docstring for the test and its guarantee.

    Vectorised: the log-wealth of every bet after every audit is a cumulative sum, so the first crossing is found
    without a loop over audits.
    """
    alpha, delta = _check_level("alpha", alpha), _check_level("delta", delta)
    flags = _as_errors(errors)
    if flags.size == 0:
        return GuardResult(False, 1.0, 0, 0, None, alpha, delta)
    bets = BET_FRACTIONS / alpha
    step = np.where(flags[:, None], np.log1p(bets * (1.0 - alpha)), np.log1p(-bets * alpha))
    log_wealth = np.cumsum(step, axis=0)
    peak = log_wealth.max(axis=1, keepdims=True)
    mixture = np.exp(peak[:, 0]) * np.exp(log_wealth - peak).mean(axis=1)  # stable log-mean-exp
    crossed = mixture >= 1.0 / delta
    if crossed.any():
        at = int(np.argmax(crossed))
        return GuardResult(True, float(mixture[at]), at + 1, int(flags[: at + 1].sum()), at, alpha, delta)
    return GuardResult(False, float(mixture[-1]), int(flags.size), int(flags.sum()), None, alpha, delta)
