"""Tests for routing.preview: hand-computed previews of a fixed threshold, a target and people-only rules, agreement
with what routing.decide.route would do, bad input, and monotonicity in the threshold."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import beta

from routing.decide import route
from routing.policy import SegmentPolicy
from routing.preview import CERTIFIED, FIXED, NO_THRESHOLD, preview_segment
from routing.thresholds import guaranteed_threshold

# ten copies of: 0.95 right, 0.90 wrong, 0.70 right, 0.60 wrong
CONFIDENCE = np.tile([0.95, 0.90, 0.70, 0.60], 10)
CORRECT = np.tile([True, False, True, False], 10)
FIXED_RULES = SegmentPolicy(auto_accept_threshold=0.9, spot_check_rate=0.1, seconds_per_item=36.0,
                            review_budget=10, budget_window_hours=2.0)
# 100 items at 0.99, all right, and 100 at 0.5, half of them wrong
TARGET_CONFIDENCE = np.repeat([0.99, 0.5], 100)
TARGET_CORRECT = np.concatenate([np.ones(100, bool), np.tile([True, False], 50)])
TARGET_RULES = SegmentPolicy(max_auto_error=0.1, confidence=0.9, spot_check_rate=0.05)


@dataclass(frozen=True)
class PassingGate:
    passed: bool = True
    reasons: tuple[str, ...] = ()


def test_a_fixed_threshold_on_hand_counted_labels() -> None:
    preview = preview_segment(CONFIDENCE, CORRECT, rules=FIXED_RULES, arrivals_per_day=1000.0)
    assert (preview.threshold, preview.threshold_kind, preview.reason) == (0.9, FIXED, None)
    assert "no guarantee" in preview.threshold_reason
    # 0.95 and 0.90 reach 0.9: 20 of 40 auto-accepted, the 10 at 0.90 wrong
    assert (preview.n_labels, preview.n_auto, preview.n_errors) == (40, 20, 10)
    assert preview.automation_rate == preview.coverage == 0.5 and preview.expected_error == 0.5
    # exact Clopper-Pearson 95 % interval of 10 in 20, from the beta quantiles
    assert preview.error_low == pytest.approx(beta.ppf(0.025, 10, 11))
    assert preview.error_high == pytest.approx(beta.ppf(0.975, 11, 10))
    assert preview.error_low == pytest.approx(0.2720, abs=1e-4) and preview.error_high == pytest.approx(0.7280, abs=1e-4)
    # 500 not automated + 10 % of the 500 automated spot-checked; 36 s each
    assert preview.review_per_day == pytest.approx(550.0)
    assert preview.reviewer_hours_per_day == pytest.approx(5.5)
    # 10 reviews per 2-hour window: 120 a day; the 500 reviews (spot checks are unbudgeted audits) exceed it by 380
    assert preview.review_budget_per_day == pytest.approx(120.0)
    assert preview.over_budget_per_day == pytest.approx(380.0)
    assert preview.arrivals_per_day == 1000.0


def test_a_fixed_threshold_compares_with_the_calibrated_confidence() -> None:
    calibrated = np.tile([0.92, 0.50, 0.91, 0.40], 10)  # now the 0.95 and 0.70 items (all right) clear 0.9
    preview = preview_segment(CONFIDENCE, CORRECT, rules=FIXED_RULES, arrivals_per_day=100.0, calibrated=calibrated)
    assert (preview.n_auto, preview.n_errors, preview.expected_error) == (20, 0, 0.0)
    # zero errors in 20: the two-sided 95 % upper end is 1 - 0.025 ** (1 / 20)
    assert preview.error_low == 0.0 and preview.error_high == pytest.approx(1 - 0.025 ** (1 / 20))


def test_a_target_is_certified_by_learn_then_test_on_the_raw_confidence() -> None:
    preview = preview_segment(TARGET_CONFIDENCE, TARGET_CORRECT, rules=TARGET_RULES, arrivals_per_day=200.0,
                              calibrated=np.zeros(200))  # a target never reads the calibrated confidence
    # the sequence starts at 0.99 (100 items above it): 0 errors in 100 bound the error by 1 - 0.1 ** (1 / 100)
    # = 0.023 <= 0.1; at 0.5, 50 errors in 200 fail, so 0.99 is the certified threshold
    assert (preview.threshold, preview.threshold_kind) == (0.99, CERTIFIED)
    assert "certified" in preview.threshold_reason and "0.023" in preview.threshold_reason
    assert preview.threshold == guaranteed_threshold(TARGET_CONFIDENCE, TARGET_CORRECT, alpha=0.1, delta=0.1).threshold
    assert (preview.automation_rate, preview.n_auto, preview.expected_error) == (0.5, 100, 0.0)
    assert preview.review_per_day == pytest.approx(100 + 100 * 0.05)
    assert preview.reviewer_hours_per_day == pytest.approx(105 * 30 / 3600)


def test_a_target_too_few_labels_certify_sends_everything_to_review() -> None:
    preview = preview_segment(TARGET_CONFIDENCE[:60], TARGET_CORRECT[:60], rules=TARGET_RULES, arrivals_per_day=80.0)
    assert (preview.threshold, preview.threshold_kind, preview.reason) == (None, NO_THRESHOLD, None)
    assert "no threshold certifies the target" in preview.threshold_reason and "60 held-out labels" in preview.threshold_reason
    assert preview.automation_rate == 0.0 and preview.n_auto == 0 and math.isnan(preview.expected_error)
    assert (preview.error_low, preview.error_high) == (0.0, 1.0)
    assert preview.review_per_day == 80.0 and preview.over_budget_per_day == 0.0  # budget 50 an hour: 1200 a day


@pytest.mark.parametrize(("rules", "words"), [
    (SegmentPolicy(mode="in_the_loop"), "in the loop"),
    (SegmentPolicy(stakes="high", regulated=True), "high stakes, regulated"),
    (SegmentPolicy(regulated=True, max_auto_error=0.1, confidence=0.9), "regulated"),
])
def test_people_only_rules_auto_accept_nothing_and_need_no_labels(rules, words) -> None:
    for confidence, correct in ((CONFIDENCE, CORRECT), (np.empty(0), np.empty(0, bool))):
        preview = preview_segment(confidence, correct, rules=rules, arrivals_per_day=240.0)
        assert (preview.threshold, preview.threshold_kind, preview.reason) == (None, NO_THRESHOLD, None)
        assert preview.threshold_reason == f"people review every item ({words})"
        assert preview.automation_rate == 0.0 and preview.review_per_day == 240.0
        assert preview.reviewer_hours_per_day == pytest.approx(240 * 30 / 3600)


def test_a_fixed_threshold_on_too_few_labels_says_why_instead_of_guessing() -> None:
    preview = preview_segment(CONFIDENCE[:8], CORRECT[:8], rules=FIXED_RULES, arrivals_per_day=100.0)
    assert preview.reason == "8 held-out labels, fewer than the 30 a preview of a fixed threshold needs"
    assert (preview.threshold, preview.threshold_kind, preview.n_labels) == (0.9, FIXED, 8)
    for value in (preview.automation_rate, preview.expected_error, preview.review_per_day,
                  preview.reviewer_hours_per_day, preview.over_budget_per_day):
        assert math.isnan(value)
    assert preview.review_budget_per_day == 120.0
    assert preview_segment(CONFIDENCE[:8], CORRECT[:8], rules=FIXED_RULES, arrivals_per_day=100.0,
                           min_labels=8).reason is None


@pytest.mark.parametrize("rules", [FIXED_RULES, TARGET_RULES, SegmentPolicy(stakes="high")])
def test_the_preview_automates_exactly_what_routing_would(rules) -> None:
    rng = np.random.default_rng(3)
    confidence = rng.uniform(0.4, 1.0, 3000)
    correct = rng.random(3000) < confidence
    calibrated = np.clip(confidence - 0.05, 0.0, 1.0)
    preview = preview_segment(confidence, correct, rules=rules, arrivals_per_day=1.0, calibrated=calibrated)
    # routing as flows/route.py calls it: a target's threshold certified on, and compared with, the raw confidence
    threshold = preview.threshold if rules.has_target else "policy"
    routed = route(calibrated, policy=rules, calibration=PassingGate(), rng=np.random.default_rng(0),
                   threshold=threshold, threshold_scores=confidence if rules.has_target else None)
    automated = np.isin(routed.routes, ["auto_accept", "spot_check"])
    assert preview.n_auto == automated.sum() and preview.n_errors == (automated & ~correct).sum()
    if preview.threshold is not None:  # people-only rules record a nominal threshold that nothing reaches
        assert routed.threshold == preview.threshold
    else:
        assert preview.n_auto == 0


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"confidence": [0.5, np.nan]}, ValueError, "confidence must be in"),
    ({"confidence": [0.5, 1.2]}, ValueError, "confidence must be in"),
    ({"confidence": [[0.5]]}, ValueError, "length mismatch: confidence"),
    ({"correct": [True]}, ValueError, "length mismatch: correct"),
    ({"correct": [1, 2]}, ValueError, "correct must be booleans"),
    ({"calibrated": [0.5]}, ValueError, "length mismatch: calibrated"),
    ({"calibrated": [0.5, -0.1]}, ValueError, "calibrated must be in"),
    ({"arrivals_per_day": -1.0}, ValueError, "arrivals_per_day"),
    ({"arrivals_per_day": math.inf}, ValueError, "arrivals_per_day"),
    ({"arrivals_per_day": math.nan}, ValueError, "arrivals_per_day"),
    ({"rules": {"auto_accept_threshold": 0.9}}, TypeError, "SegmentPolicy"),
    ({"min_labels": 0}, ValueError, "min_labels"),
    ({"interval_confidence": 1.0}, ValueError, "interval_confidence"),
])
def test_bad_input_fails_loudly_naming_the_value(kwargs, error, match) -> None:
    arguments = {"confidence": [0.5, 0.9], "correct": [True, False], "rules": FIXED_RULES, "arrivals_per_day": 10.0,
                 **kwargs}
    confidence, correct = arguments.pop("confidence"), arguments.pop("correct")
    with pytest.raises(error, match=match):
        preview_segment(confidence, correct, **arguments)


@settings(max_examples=80, deadline=None)
@given(confidence=arrays(np.float64, st.integers(30, 80), elements=st.floats(0.0, 1.0)),
       thresholds=st.lists(st.floats(0.01, 1.0), min_size=2, max_size=2, unique=True),
       spot_check_rate=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_automation_never_rises_and_review_never_falls_as_the_fixed_threshold_rises(
        confidence, thresholds, spot_check_rate, seed) -> None:
    correct = np.random.default_rng(seed).random(confidence.shape[0]) < 0.8
    low, high = sorted(thresholds)
    previews = [preview_segment(confidence, correct, arrivals_per_day=500.0,
                                rules=SegmentPolicy(auto_accept_threshold=t, spot_check_rate=spot_check_rate))
                for t in (low, high)]
    assert previews[0].automation_rate >= previews[1].automation_rate
    assert previews[0].review_per_day <= previews[1].review_per_day + 1e-9
    assert all(0.0 <= p.automation_rate <= 1.0 and 0.0 <= p.review_per_day <= 500.0 + 1e-9 for p in previews)
