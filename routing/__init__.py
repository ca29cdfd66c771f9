"""Pure routing logic: the policy model, route decisions, risk signals, guaranteed thresholds, what-if curves,
policy previews, audit-sample estimators and active-learning sampling."""

from __future__ import annotations

from routing.active_inference import ErrorInterval, error_interval
from routing.decide import GateLike, Route, RoutingResult, route
from routing.policy import (
    CalibrationLimits,
    CalibrationOverride,
    Policy,
    PolicyRevision,
    RiskRule,
    SegmentOverride,
    SegmentPolicy,
)
from routing.preview import SegmentPreview, preview_segment
from routing.sampling import STRATEGIES, Selection, entropy, least_confidence, margin, select_batch
from routing.signals import (
    LengthOutlier,
    OutOfDistribution,
    RiskFlags,
    Signal,
    TextBatch,
    combine_signals,
    encoded_payload,
    fold_flags,
    mixed_scripts,
    rule_hits,
    text_lengths,
    under_represented_segments,
    zero_width_or_bidi,
)
from routing.thresholds import ThresholdResult, guaranteed_threshold, naive_threshold
from routing.whatif import WhatIfCurve, what_if

__all__ = [
    "STRATEGIES",
    "ErrorInterval",
    "CalibrationLimits",
    "CalibrationOverride",
    "GateLike",
    "LengthOutlier",
    "OutOfDistribution",
    "Policy",
    "PolicyRevision",
    "RiskFlags",
    "RiskRule",
    "Route",
    "RoutingResult",
    "SegmentOverride",
    "SegmentPolicy",
    "SegmentPreview",
    "Selection",
    "Signal",
    "TextBatch",
    "ThresholdResult",
    "WhatIfCurve",
    "error_interval",
    "combine_signals",
    "encoded_payload",
    "fold_flags",
    "entropy",
    "guaranteed_threshold",
    "least_confidence",
    "margin",
    "mixed_scripts",
    "naive_threshold",
    "preview_segment",
    "route",
    "rule_hits",
    "select_batch",
    "text_lengths",
    "under_represented_segments",
    "what_if",
    "zero_width_or_bidi",
]
