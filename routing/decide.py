"""Route decisions: which items are auto-accepted, spot-checked, reviewed or escalated, and why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Protocol

import numpy as np

from routing.audit import DEFAULT_EXPECTED_ERROR, sized_audit_rate
from routing.policy import SegmentPolicy

__all__ = ["GateLike", "Route", "RoutingResult", "human_required", "route"]

REASON_CONFIDENCE_INVALID = "confidence_invalid"
REASON_RISK_RULE = "risk_rule"
REASON_RISK_REVIEW = "risk_review"
REASON_NO_GUARANTEED_THRESHOLD = "no_guaranteed_threshold"
REASON_BELOW_REVIEW_THRESHOLD = "confidence_below_review_threshold"
REASON_CALIBRATION_MISSING = "calibration_missing"
REASON_CALIBRATION_FAILED = "calibration_gate_failed"
REASON_HUMAN_REQUIRED = "human_in_the_loop_required"
REASON_ABOVE_THRESHOLD = "confidence_above_threshold"
REASON_SPOT_CHECK = "spot_check_sample"
REASON_BELOW_THRESHOLD = "confidence_below_threshold"
REASON_LIVE_GUARD_HALTED = "live_guard_halted"
REASON_REROUTED_BACKLOG = "rerouted_backlog"


class Route(StrEnum):
    """Where an item goes, from most to least automated: auto_accept, spot_check, review, escalate."""

    AUTO_ACCEPT = "auto_accept"
    SPOT_CHECK = "spot_check"
    REVIEW = "review"
    ESCALATE = "escalate"


class GateLike(Protocol):
    """A calibration gate outcome (``calibration.GateResult`` or anything shaped like it)."""

    @property
    def passed(self) -> bool: ...

    @property
    def reasons(self) -> Sequence[str]: ...


@dataclass(frozen=True, eq=False)
class RoutingResult:
    """One route and its reasons per item. ``inclusion_probability`` is the spot-check rate for items that
    cleared the threshold and could be drawn for audit (auto_accept or spot_check), NaN for the rest.
    ``threshold`` is the auto-accept threshold applied, None when there was none (nothing auto-accepted);
    ``audit_rate`` the spot-check share applied to this batch (the policy's, or one sized for the live estimate)."""

    routes: np.ndarray
    reasons: tuple[tuple[str, ...], ...]
    threshold: float | None
    inclusion_probability: np.ndarray
    audit_rate: float = 0.0


def _as_confidence(calibrated_confidence: Any) -> np.ndarray:
    try:
        confidence = np.asarray(calibrated_confidence, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"calibrated_confidence must be numeric, got {calibrated_confidence!r}") from error
    if confidence.ndim != 1:
        raise ValueError(f"calibrated_confidence must be 1-D, got shape {confidence.shape}")
    return confidence


def _as_risk_flags(flags_in: Any, n_items: int, name: str = "risk_escalate") -> np.ndarray:
    if flags_in is None:
        return np.zeros(n_items, dtype=bool)
    flags = np.asarray(flags_in)
    if flags.ndim != 1 or flags.shape[0] != n_items:
        raise ValueError(f"length mismatch: {name} has shape {flags.shape}, expected ({n_items},)")
    if flags.dtype != bool and not np.isin(flags, (0, 1)).all():
        raise ValueError(f"{name} must be booleans (or 0/1), got values {np.unique(flags)[:5].tolist()}")
    return flags.astype(bool)


def _check_risk_reasons(risk_reasons: Sequence[tuple[str, ...]] | None, n_items: int) -> None:
    if risk_reasons is not None and len(risk_reasons) != n_items:
        raise ValueError(f"length mismatch: risk_reasons has {len(risk_reasons)} entries, expected {n_items}")


def _resolve_threshold(policy: SegmentPolicy, threshold: float | None | Literal["policy"]) -> float | None:
    """The threshold to apply: the caller's derived one, else the policy's fixed one. A policy with a target and no
    derived threshold has none, so it auto-accepts nothing (fail closed)."""
    if threshold == "policy":
        return None if policy.has_target else float(policy.auto_accept_threshold)
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not (0.0 <= float(threshold) <= 1.0):
        raise ValueError(f"threshold must be a number in [0, 1], None or 'policy', got {threshold!r}")
    return float(threshold)


def _gate_reasons(calibration: GateLike | None) -> tuple[str, ...]:
    """Empty when the gate passed; otherwise the reasons the segment must fail closed."""
    if calibration is None:
        return (REASON_CALIBRATION_MISSING,)
    if calibration.passed:
        return ()
    return tuple(str(reason) for reason in calibration.reasons) or (REASON_CALIBRATION_FAILED,)


def human_required(policy: SegmentPolicy) -> bool:
    """Whether the segment's rules send every item to people whatever the confidence."""
    # Human-in-the-loop means a person approves every item; high stakes and regulation demand people whatever
    # the confidence (design principles 4 and 6). Any one of the three sends the whole segment to review.
    return policy.mode == "in_the_loop" or policy.stakes == "high" or policy.regulated


def _reason_table(gate_reasons: tuple[str, ...], halt_reasons: tuple[str, ...]) -> np.ndarray:
    """Reasons of each rule, indexed like ``_ROUTE_OF_RULE``; an object array so items can index it."""
    rows = (
        (REASON_CONFIDENCE_INVALID,),
        (REASON_RISK_RULE,),
        (REASON_RISK_REVIEW,),
        gate_reasons,
        (REASON_HUMAN_REQUIRED,),
        halt_reasons,
        (REASON_REROUTED_BACKLOG,),
        (REASON_ABOVE_THRESHOLD, REASON_SPOT_CHECK),
        (REASON_ABOVE_THRESHOLD,),
        (REASON_BELOW_REVIEW_THRESHOLD,),
        (REASON_NO_GUARANTEED_THRESHOLD,),
        (REASON_BELOW_THRESHOLD,),
    )
    table = np.empty(len(rows), dtype=object)
    for position, reasons in enumerate(rows):  # element-wise, so numpy never reads the tuples as a 2-D array
        table[position] = reasons
    return table


_ROUTE_OF_RULE = np.array(
    [
        Route.ESCALATE,
        Route.ESCALATE,
        Route.REVIEW,
        Route.REVIEW,
        Route.REVIEW,
        Route.REVIEW,
        Route.REVIEW,
        Route.SPOT_CHECK,
        Route.AUTO_ACCEPT,
        Route.ESCALATE,
        Route.REVIEW,
        Route.REVIEW,
    ],
    dtype=str,
)

_RISK_RULES = (1, 2)  # risk escalate, risk review: their reasons are the item's own codes when given
_SPOT_CHECK_RULE, _AUTO_ACCEPT_RULE = 7, 8  # cleared the threshold: the audit draw splits them
_DEFAULT_RULE = len(_ROUTE_OF_RULE) - 1


def route(
    calibrated_confidence: Any,
    *,
    policy: SegmentPolicy,
    calibration: GateLike | None,
    rng: np.random.Generator,
    risk_escalate: np.ndarray | None = None,
    risk_review: np.ndarray | None = None,
    risk_reasons: Sequence[tuple[str, ...]] | None = None,
    threshold: float | None | Literal["policy"] = "policy",
    threshold_scores: Any = None,
    halt_reasons: Sequence[str] = (),
    rerouted: np.ndarray | None = None,
    max_audits: float | None = None,
    backlog_threshold: np.ndarray | None = None,
) -> RoutingResult:
    """Route every item by the first rule that applies: invalid confidence -> escalate, risk hit -> escalate
    (``risk_escalate``) or review (``risk_review``), failed or missing calibration gate -> review, human required
    -> review, live guard halted -> review, above the threshold but rerouted from the backlog -> review,
    confidence >= threshold -> auto_accept (a Bernoulli(spot_check_rate) share of them spot_check),
    confidence below the policy's ``review_threshold`` -> escalate, otherwise review.

    ``threshold`` is the auto-accept threshold: ``"policy"`` (default) takes the policy's fixed
    ``auto_accept_threshold``, a number is a derived guaranteed threshold, and None means no threshold meets the
    target, so nothing auto-accepts (reason ``no_guaranteed_threshold``); a policy with a target and no derived
    threshold behaves as None. ``risk_reasons`` gives each risky item its reason codes (e.g. the detectors and
    rules that hit); without them the reason is ``risk_rule`` / ``risk_review``.

    ``threshold_scores`` are the scores the auto-accept threshold is compared with (default: the calibrated
    confidence). A derived threshold is certified on raw confidences (see ``routing.thresholds``), so the caller
    passes those: the auto-accepted set is then exactly the set whose error was tested. ``halt_reasons``, when not
    empty, send the whole segment to review with those reasons (the live guard halted it). ``rerouted`` marks items
    that people already had in their backlog under an earlier decision: they are a selected population that no
    certification of the segment stands for, so they are auto-accepted only above their own ``backlog_threshold``
    (one per item, NaN where no certified backlog covers it: ``routing.backlog``), else reviewed (reason
    ``rerouted_backlog``). With the policy's
    ``audit_interval_width`` the spot-check share of this batch is sized for the live estimate from the number of
    items that clear every rule (``routing.audit.sized_audit_rate``); ``RoutingResult.audit_rate`` holds the share
    applied, so review items can be audited at the same share.

    ``max_audits`` is what is left of the segment's label budget in its window (the budget covers audits too): the
    share is lowered so that the audits expected of this batch (the automated items here, and the review items the
    select flow audits at the same share) fit it, but never below the policy's ``min_review_probability``, the floor
    that keeps every automated item drawable for the audit estimate.

    One uniform draw per item is taken whatever the other items hold, so for a fixed rng state the routes are
    monotone in confidence. An empty batch gives an empty result.
    """
    confidence = _as_confidence(calibrated_confidence)
    n_items = confidence.shape[0]
    escalate = _as_risk_flags(risk_escalate, n_items)
    review = _as_risk_flags(risk_review, n_items, "risk_review")
    _check_risk_reasons(risk_reasons, n_items)
    audit_draw = rng.random(n_items)
    gate_reasons = _gate_reasons(calibration)
    halted = tuple(str(reason) for reason in halt_reasons)
    earlier = _as_risk_flags(rerouted, n_items, "rerouted")
    applied = _resolve_threshold(policy, threshold)
    scores = confidence if threshold_scores is None else _as_confidence(threshold_scores)
    if scores.shape != confidence.shape:
        raise ValueError(f"length mismatch: threshold_scores has shape {scores.shape}, expected ({n_items},)")
    invalid = ~np.isfinite(confidence) | (confidence < 0.0) | (confidence > 1.0)
    with np.errstate(invalid="ignore"):
        above = ~invalid & (scores >= (np.inf if applied is None else applied))
        settled = earlier & ~invalid & (scores >= _as_thresholds(backlog_threshold, n_items))
    floor = -np.inf if policy.review_threshold is None else policy.review_threshold
    rule = np.select(
        [
            invalid,
            escalate,
            review,
            np.full(n_items, bool(gate_reasons)),
            np.full(n_items, human_required(policy)),
            np.full(n_items, bool(halted)),
            above & earlier & ~settled,
            above | settled,
            confidence < floor,
            np.full(n_items, applied is None),
        ],
        [*range(_SPOT_CHECK_RULE), *range(_SPOT_CHECK_RULE + 1, _DEFAULT_RULE)],
        default=_DEFAULT_RULE,
    )
    automated = rule == _AUTO_ACCEPT_RULE  # every item that cleared every rule, before the audit draw
    rate = sized_audit_rate(policy.audit_interval_width, n_automated=int(automated.sum()),
                            expected_error=policy.max_auto_error or DEFAULT_EXPECTED_ERROR,
                            floor=policy.spot_check_rate)
    if max_audits is not None:
        candidates = int(automated.sum()) + int((_ROUTE_OF_RULE[rule] == Route.REVIEW).sum())
        if candidates:
            rate = min(rate, max(max(max_audits, 0.0) / candidates, policy.min_review_probability))
    rule = np.where(automated & (audit_draw < rate), _SPOT_CHECK_RULE, rule)
    return RoutingResult(
        routes=_ROUTE_OF_RULE[rule],
        reasons=_item_reasons(_reason_table(gate_reasons, halted)[rule], rule, risk_reasons),
        threshold=applied,
        inclusion_probability=np.where(automated, rate, np.nan),
        audit_rate=rate,
    )


def _as_thresholds(values: np.ndarray | None, n_items: int) -> np.ndarray:
    """Per-item thresholds (NaN: none, which nothing clears)."""
    if values is None:
        return np.full(n_items, np.inf)
    thresholds = np.asarray(values, dtype=float)
    if thresholds.shape != (n_items,):
        raise ValueError(f"length mismatch: backlog_threshold has shape {thresholds.shape}, expected ({n_items},)")
    return np.where(np.isnan(thresholds), np.inf, thresholds)


def _item_reasons(
    reasons: np.ndarray, rule: np.ndarray, risk_reasons: Sequence[tuple[str, ...]] | None
) -> tuple[tuple[str, ...], ...]:
    """The rule's reasons per item, with each risky item's own codes where it has any (only risky items are read,
    so a batch with few hits costs little)."""
    if risk_reasons is not None:
        for position in np.flatnonzero(np.isin(rule, _RISK_RULES)).tolist():
            if len(risk_reasons[position]) > 0:
                reasons[position] = tuple(risk_reasons[position])
    return tuple(reasons.tolist())
