"""Pure routing logic: the policy model, route decisions and active-learning sampling."""

from __future__ import annotations

from routing.decide import GateLike, Route, RoutingResult, route
from routing.policy import CalibrationLimits, CalibrationOverride, Policy, SegmentOverride, SegmentPolicy
from routing.sampling import STRATEGIES, Selection, entropy, least_confidence, margin, select_batch

__all__ = [
    "STRATEGIES",
    "CalibrationLimits",
    "CalibrationOverride",
    "GateLike",
    "Policy",
    "Route",
    "RoutingResult",
    "SegmentOverride",
    "SegmentPolicy",
    "Selection",
    "entropy",
    "least_confidence",
    "margin",
    "route",
    "select_batch",
]
