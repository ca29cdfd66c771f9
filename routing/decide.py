"""Route decisions: which items are auto-accepted, spot-checked, reviewed or escalated, and why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import numpy as np

from routing.policy import SegmentPolicy

__all__ = ["GateLike", "Route", "RoutingResult", "route"]

REASON_CONFIDENCE_INVALID = "confidence_invalid"
REASON_RISK_RULE = "risk_rule"
REASON_CALIBRATION_MISSING = "calibration_missing"
REASON_CALIBRATION_FAILED = "calibration_gate_failed"
REASON_HUMAN_REQUIRED = "human_in_the_loop_required"
REASON_ABOVE_THRESHOLD = "confidence_above_threshold"
REASON_SPOT_CHECK = "spot_check_sample"
REASON_BELOW_THRESHOLD = "confidence_below_threshold"


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
    cleared the threshold and could be drawn for audit (auto_accept or spot_check), NaN for the rest."""

    routes: np.ndarray
    reasons: tuple[tuple[str, ...], ...]
    threshold: float
    inclusion_probability: np.ndarray


def _as_confidence(calibrated_confidence: Any) -> np.ndarray:
    try:
        confidence = np.asarray(calibrated_confidence, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"calibrated_confidence must be numeric, got {calibrated_confidence!r}") from error
    if confidence.ndim != 1:
        raise ValueError(f"calibrated_confidence must be 1-D, got shape {confidence.shape}")
    return confidence


def _as_risk_flags(risk_escalate: Any, n_items: int) -> np.ndarray:
    if risk_escalate is None:
        return np.zeros(n_items, dtype=bool)
    flags = np.asarray(risk_escalate)
    if flags.ndim != 1 or flags.shape[0] != n_items:
        raise ValueError(f"length mismatch: risk_escalate has shape {flags.shape}, expected ({n_items},)")
    if flags.dtype != bool and not np.isin(flags, (0, 1)).all():
        raise ValueError(
            f"risk_escalate must be booleans (or 0/1), got values {np.unique(flags)[:5].tolist()}"
        )
    return flags.astype(bool)


def _gate_reasons(calibration: GateLike | None) -> tuple[str, ...]:
    """Empty when the gate passed; otherwise the reasons the segment must fail closed."""
    if calibration is None:
        return (REASON_CALIBRATION_MISSING,)
    if calibration.passed:
        return ()
    return tuple(str(reason) for reason in calibration.reasons) or (REASON_CALIBRATION_FAILED,)


def _human_required(policy: SegmentPolicy) -> bool:
    # Human-in-the-loop means a person approves every item; high stakes and regulation demand people whatever
    # the confidence (design principles 4 and 6). Any one of the three sends the whole segment to review.
    return policy.mode == "in_the_loop" or policy.stakes == "high" or policy.regulated


def _reason_table(gate_reasons: tuple[str, ...]) -> np.ndarray:
    """Reasons of each rule, indexed like ``_ROUTE_OF_RULE``; an object array so items can index it."""
    rows = (
        (REASON_CONFIDENCE_INVALID,),
        (REASON_RISK_RULE,),
        gate_reasons,
        (REASON_HUMAN_REQUIRED,),
        (REASON_ABOVE_THRESHOLD, REASON_SPOT_CHECK),
        (REASON_ABOVE_THRESHOLD,),
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
        Route.SPOT_CHECK,
        Route.AUTO_ACCEPT,
        Route.REVIEW,
    ],
    dtype=str,
)

_AUDITABLE_RULES = (4, 5)  # spot_check and auto_accept: cleared the threshold, so the audit draw applies


def route(
    calibrated_confidence: Any,
    *,
    policy: SegmentPolicy,
    calibration: GateLike | None,
    rng: np.random.Generator,
    risk_escalate: np.ndarray | None = None,
) -> RoutingResult:
    """Route every item by the first rule that applies: invalid confidence -> escalate, risk rule -> escalate,
    failed or missing calibration gate -> review, human required -> review, confidence >= threshold ->
    auto_accept (a Bernoulli(spot_check_rate) share of them spot_check), otherwise review.

    One uniform draw per item is taken whatever the other items hold, so for a fixed rng state the routes are
    monotone in confidence. An empty batch gives an empty result.
    """
    confidence = _as_confidence(calibrated_confidence)
    n_items = confidence.shape[0]
    risky = _as_risk_flags(risk_escalate, n_items)
    audit_draw = rng.random(n_items)
    gate_reasons = _gate_reasons(calibration)
    threshold = float(policy.auto_accept_threshold)
    invalid = ~np.isfinite(confidence) | (confidence < 0.0) | (confidence > 1.0)
    above = ~invalid & (confidence >= threshold)
    blocked = np.full(n_items, bool(gate_reasons))
    human = np.full(n_items, _human_required(policy))
    sampled = audit_draw < policy.spot_check_rate
    rule = np.select(
        [invalid, risky, blocked, human, above & sampled, above],
        list(range(6)),
        default=6,
    )
    return RoutingResult(
        routes=_ROUTE_OF_RULE[rule],
        reasons=tuple(_reason_table(gate_reasons)[rule].tolist()),
        threshold=threshold,
        inclusion_probability=np.where(
            np.isin(rule, _AUDITABLE_RULES), float(policy.spot_check_rate), np.nan
        ),
    )
