"""Tests for routing.decide: each precedence rule, fail-closed gates, totality and monotonicity."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from routing import Route, SegmentPolicy, route


@dataclass(frozen=True)
class FakeGate:
    passed: bool
    reasons: tuple[str, ...] = ()


PASSING_GATE = FakeGate(True)
LOW_STAKES = SegmentPolicy(auto_accept_threshold=0.9, spot_check_rate=0.0)
AUTOMATION_ORDER = {Route.ESCALATE: 0, Route.REVIEW: 1, Route.SPOT_CHECK: 2, Route.AUTO_ACCEPT: 2}


def _route(confidence, *, policy=LOW_STAKES, gate=PASSING_GATE, seed=0, risk=None):
    return route(
        np.asarray(confidence, dtype=float),
        policy=policy,
        calibration=gate,
        rng=np.random.default_rng(seed),
        risk_escalate=risk,
    )


def test_threshold_rule_auto_accepts_at_or_above_and_reviews_below() -> None:
    result = _route([0.95, 0.9, 0.89])
    assert result.routes.tolist() == ["auto_accept", "auto_accept", "review"]
    assert result.reasons == (("confidence_above_threshold",),) * 2 + (("confidence_below_threshold",),)
    assert result.threshold == 0.9
    assert result.inclusion_probability[0] == 0.0 and np.isnan(result.inclusion_probability[2])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, -0.01, 1.01])
def test_invalid_confidence_escalates_before_everything(bad: float) -> None:
    result = _route([bad], gate=None, risk=np.array([True]))
    assert result.routes.tolist() == ["escalate"] and result.reasons == (("confidence_invalid",),)


def test_risk_rule_escalates_even_above_threshold() -> None:
    result = _route(
        [0.99, 0.99], gate=FakeGate(False, ("calibration_too_few_samples",)), risk=np.array([True, False])
    )
    assert result.routes.tolist() == ["escalate", "review"]
    assert result.reasons == (("risk_rule",), ("calibration_too_few_samples",))


def test_missing_calibration_fails_closed() -> None:
    result = _route([0.99, 1.0], gate=None)
    assert result.routes.tolist() == ["review", "review"]
    assert result.reasons == (("calibration_missing",),) * 2
    assert np.isnan(result.inclusion_probability).all()


def test_failed_gate_routes_to_review_with_its_reasons() -> None:
    gate = FakeGate(False, ("calibration_too_few_samples", "calibration_ece_above_limit"))
    result = _route([0.999], gate=gate)
    assert result.routes.tolist() == ["review"] and result.reasons == (gate.reasons,)
    assert _route([0.999], gate=FakeGate(False)).reasons == (("calibration_gate_failed",),)


@pytest.mark.parametrize(
    "policy",
    [
        SegmentPolicy(stakes="high"),
        SegmentPolicy(regulated=True),
        SegmentPolicy(mode="in_the_loop"),
        SegmentPolicy(stakes="high", regulated=True, mode="in_the_loop"),
    ],
)
def test_human_required_reviews_whatever_the_confidence(policy: SegmentPolicy) -> None:
    result = _route([1.0, 0.2], policy=policy)
    assert result.routes.tolist() == ["review", "review"]
    assert result.reasons == (("human_in_the_loop_required",),) * 2


def test_medium_stakes_on_the_loop_is_automated() -> None:
    assert _route([0.95], policy=SegmentPolicy(stakes="medium")).routes[0] in ("auto_accept", "spot_check")


def test_spot_check_share_follows_rate_and_records_inclusion_probability() -> None:
    policy = SegmentPolicy(auto_accept_threshold=0.5, spot_check_rate=0.2)
    result = _route(np.full(20_000, 0.8), policy=policy, seed=3)
    spot = result.routes == "spot_check"
    assert spot.mean() == pytest.approx(0.2, abs=0.015)
    assert set(result.reasons[int(np.flatnonzero(spot)[0])]) == {
        "confidence_above_threshold",
        "spot_check_sample",
    }
    np.testing.assert_array_equal(result.inclusion_probability, 0.2)
    assert (
        _route(np.full(100, 0.8), policy=SegmentPolicy(auto_accept_threshold=0.5, spot_check_rate=1.0)).routes
        == "spot_check"
    ).all()


def test_same_seed_same_routes() -> None:
    policy = SegmentPolicy(auto_accept_threshold=0.5, spot_check_rate=0.3)
    first = _route(np.linspace(0, 1, 50), policy=policy, seed=9)
    second = _route(np.linspace(0, 1, 50), policy=policy, seed=9)
    np.testing.assert_array_equal(first.routes, second.routes)


def test_empty_batch_gives_empty_result() -> None:
    result = _route([])
    assert result.routes.shape == (0,) and result.reasons == () and result.inclusion_probability.shape == (0,)


@pytest.mark.parametrize(
    ("confidence", "risk", "match"),
    [
        ([[0.5, 0.6]], None, "1-D"),
        ([0.5, 0.6], np.array([True]), "length mismatch"),
        ([0.5], np.array([2]), "risk_escalate"),
    ],
)
def test_bad_input_raises(confidence, risk, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _route(confidence, risk=risk)
    with pytest.raises(ValueError, match="numeric"):
        route(["high"], policy=LOW_STAKES, calibration=PASSING_GATE, rng=np.random.default_rng(0))


confidences = arrays(
    np.float64,
    st.integers(0, 30),
    elements=st.one_of(st.floats(0.0, 1.0), st.floats(allow_nan=True, allow_infinity=True)),
)
policies = st.builds(
    SegmentPolicy,
    mode=st.sampled_from(["in_the_loop", "on_the_loop"]),
    stakes=st.sampled_from(["low", "medium", "high"]),
    regulated=st.booleans(),
    auto_accept_threshold=st.floats(0.01, 1.0),
    spot_check_rate=st.floats(0.0, 1.0),
)
gates = st.one_of(st.none(), st.builds(FakeGate, st.booleans(), st.just(("calibration_ece_above_limit",))))


@settings(max_examples=150, deadline=None)
@given(confidence=confidences, policy=policies, gate=gates, seed=st.integers(0, 2**32 - 1), data=st.data())
def test_routing_is_total(confidence, policy, gate, seed, data) -> None:
    risk = data.draw(arrays(np.bool_, confidence.shape[0]))
    result = _route(confidence, policy=policy, gate=gate, seed=seed, risk=risk)
    assert result.routes.shape == confidence.shape and len(result.reasons) == confidence.shape[0]
    assert set(result.routes.tolist()) <= {r.value for r in Route}
    assert all(reasons for reasons in result.reasons)
    automated = np.isin(result.routes, ["auto_accept", "spot_check"])
    assert np.isnan(result.inclusion_probability[~automated]).all()
    if gate is None or not gate.passed:
        assert not automated.any()


@settings(max_examples=150, deadline=None)
@given(
    confidence=arrays(np.float64, st.integers(1, 30), elements=st.floats(0.0, 1.0)),
    bump=st.floats(0.0, 1.0),
    policy=policies,
    gate=gates,
    seed=st.integers(0, 2**32 - 1),
)
def test_routing_is_monotone_in_confidence(confidence, bump, policy, gate, seed) -> None:
    higher = np.minimum(confidence + bump, 1.0)
    low = _route(confidence, policy=policy, gate=gate, seed=seed).routes
    high = _route(higher, policy=policy, gate=gate, seed=seed).routes
    low_rank = np.array([AUTOMATION_ORDER[Route(r)] for r in low])
    high_rank = np.array([AUTOMATION_ORDER[Route(r)] for r in high])
    assert (high_rank >= low_rank).all()
    same_tier = (low_rank == 2) & (high_rank == 2)
    np.testing.assert_array_equal(
        low[same_tier], high[same_tier]
    )  # the audit draw does not depend on confidence


# --- derived thresholds, review threshold, risk review and reason codes ------------------------------------------

TARGET = SegmentPolicy(max_auto_error=0.05, confidence=0.9, spot_check_rate=0.0)


def test_derived_threshold_overrides_the_fixed_one() -> None:
    result = route(
        np.array([0.75, 0.69]),
        policy=LOW_STAKES,
        calibration=PASSING_GATE,
        rng=np.random.default_rng(0),
        threshold=0.7,
    )
    assert result.routes.tolist() == ["auto_accept", "review"] and result.threshold == 0.7


def test_no_guaranteed_threshold_auto_accepts_nothing() -> None:
    for policy, threshold in [(LOW_STAKES, None), (TARGET, None), (TARGET, "policy")]:
        result = route(
            np.array([1.0, 0.99, 0.2]),
            policy=policy,
            calibration=PASSING_GATE,
            rng=np.random.default_rng(0),
            threshold=threshold,
        )
        assert result.routes.tolist() == ["review"] * 3 and result.threshold is None
        assert result.reasons == (("no_guaranteed_threshold",),) * 3
        assert np.isnan(result.inclusion_probability).all()


def test_target_policy_with_a_derived_threshold_routes_normally() -> None:
    result = route(
        np.array([0.96, 0.5]),
        policy=TARGET,
        calibration=PASSING_GATE,
        rng=np.random.default_rng(0),
        threshold=0.95,
    )
    assert result.routes.tolist() == ["auto_accept", "review"]


@pytest.mark.parametrize("bad", [1.5, -0.1, np.nan, True])
def test_bad_threshold_override_raises(bad) -> None:
    with pytest.raises(ValueError, match="threshold"):
        route(
            np.array([0.5]),
            policy=LOW_STAKES,
            calibration=PASSING_GATE,
            rng=np.random.default_rng(0),
            threshold=bad,
        )


def test_below_review_threshold_escalates() -> None:
    policy = SegmentPolicy(auto_accept_threshold=0.9, review_threshold=0.4, spot_check_rate=0.0)
    result = _route([0.95, 0.5, 0.4, 0.39], policy=policy)
    assert result.routes.tolist() == ["auto_accept", "review", "review", "escalate"]
    assert result.reasons[3] == ("confidence_below_review_threshold",)


def test_risk_review_and_reason_codes_follow_precedence() -> None:
    gate = FakeGate(False, ("calibration_stale",))
    result = route(
        np.array([0.99, 0.99, 0.99, 0.99, np.nan]),
        policy=LOW_STAKES,
        calibration=gate,
        rng=np.random.default_rng(0),
        risk_escalate=np.array([True, True, False, False, True]),
        risk_review=np.array([False, True, True, False, True]),
        risk_reasons=[("zero_width_or_bidi",), ("amount_over_limit", "out_of_distribution"), (), (), ("x",)],
    )
    assert result.routes.tolist() == ["escalate", "escalate", "review", "review", "escalate"]
    assert result.reasons == (
        ("zero_width_or_bidi",),
        ("amount_over_limit", "out_of_distribution"),
        ("risk_review",),
        ("calibration_stale",),
        ("confidence_invalid",),
    )


def test_risk_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="risk_review"):
        route(
            np.array([0.5]),
            policy=LOW_STAKES,
            calibration=PASSING_GATE,
            rng=np.random.default_rng(0),
            risk_review=np.array([True, False]),
        )
    with pytest.raises(ValueError, match="risk_reasons"):
        route(
            np.array([0.5]),
            policy=LOW_STAKES,
            calibration=PASSING_GATE,
            rng=np.random.default_rng(0),
            risk_reasons=[(), ()],
        )


extended_policies = st.builds(
    lambda base, review: base.model_copy(update={"review_threshold": review * base.auto_accept_threshold}),
    policies,
    st.one_of(st.none(), st.floats(0.0, 1.0)).map(lambda v: 0.0 if v is None else v),
)
thresholds = st.one_of(st.just("policy"), st.none(), st.floats(0.0, 1.0))


@settings(max_examples=150, deadline=None)
@given(
    confidence=arrays(np.float64, st.integers(1, 30), elements=st.floats(0.0, 1.0)),
    bump=st.floats(0.0, 1.0),
    policy=extended_policies,
    gate=gates,
    threshold=thresholds,
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_extended_routing_is_total_and_monotone(
    confidence, bump, policy, gate, threshold, seed, data
) -> None:
    n = confidence.shape[0]
    escalate, review = data.draw(arrays(np.bool_, n)), data.draw(arrays(np.bool_, n))

    def run(values):
        return route(
            values,
            policy=policy,
            calibration=gate,
            rng=np.random.default_rng(seed),
            risk_escalate=escalate,
            risk_review=review,
            threshold=threshold,
        )

    low, high = run(confidence), run(np.minimum(confidence + bump, 1.0))
    assert all(low.reasons) and set(low.routes.tolist()) <= {r.value for r in Route}
    low_rank = np.array([AUTOMATION_ORDER[Route(r)] for r in low.routes])
    high_rank = np.array([AUTOMATION_ORDER[Route(r)] for r in high.routes])
    assert (high_rank >= low_rank).all()
    assert (low.routes[escalate] == "escalate").all() and (low.routes[review & ~escalate] == "review").all()
    if threshold is None:
        assert not np.isin(low.routes, ["auto_accept", "spot_check"]).any()


def test_threshold_scores_decide_who_clears_a_derived_threshold() -> None:
    # the derived threshold is certified on raw scores: the calibrated confidence does not move the set
    calibrated, raw = np.array([0.99, 0.99, 0.5]), np.array([0.7, 0.6, 0.8])
    result = route(calibrated, policy=LOW_STAKES, calibration=PASSING_GATE, rng=np.random.default_rng(0),
                   threshold=0.65, threshold_scores=raw)
    assert result.routes.tolist() == ["auto_accept", "review", "auto_accept"]
    with pytest.raises(ValueError, match="threshold_scores"):
        route(calibrated, policy=LOW_STAKES, calibration=PASSING_GATE, rng=np.random.default_rng(0),
              threshold=0.65, threshold_scores=raw[:2])


def test_halted_segment_sends_everything_valid_to_review() -> None:
    result = route(np.array([0.99, 0.2, np.nan]), policy=LOW_STAKES, calibration=PASSING_GATE,
                   rng=np.random.default_rng(0), halt_reasons=("live_guard_halted",))
    assert result.routes.tolist() == ["review", "review", "escalate"]
    assert result.reasons[:2] == (("live_guard_halted",),) * 2
    assert np.isnan(result.inclusion_probability).all()


def test_rerouted_backlog_items_are_never_auto_accepted() -> None:
    policy = SegmentPolicy(auto_accept_threshold=0.9, spot_check_rate=1.0)
    result = route(np.array([0.99, 0.99, 0.5]), policy=policy, calibration=PASSING_GATE,
                   rng=np.random.default_rng(0), rerouted=np.array([True, False, True]))
    assert result.routes.tolist() == ["review", "spot_check", "review"]
    assert result.reasons[0] == ("rerouted_backlog",) and result.reasons[2] == ("confidence_below_threshold",)
    assert np.isnan(result.inclusion_probability[0]) and result.inclusion_probability[1] == 1.0


def test_rerouted_items_are_auto_accepted_only_above_their_own_certified_backlog_threshold() -> None:
    policy = SegmentPolicy(auto_accept_threshold=0.9, spot_check_rate=0.0)
    confidence = np.array([0.99, 0.8, 0.99, 0.8, 0.7])
    rerouted = np.array([True, True, True, False, True])
    # the first two belong to a certified backlog (threshold 0.75); the third to none; the fourth is new traffic
    backlog = np.array([0.75, 0.75, np.nan, 0.75, 0.75])
    result = route(confidence, policy=policy, calibration=PASSING_GATE, rng=np.random.default_rng(0),
                   rerouted=rerouted, backlog_threshold=backlog)
    assert result.routes.tolist() == ["auto_accept", "auto_accept", "review", "review", "review"]
    assert result.reasons[2] == ("rerouted_backlog",)
    halted = route(confidence, policy=policy, calibration=PASSING_GATE, rng=np.random.default_rng(0),
                   rerouted=rerouted, backlog_threshold=backlog, halt_reasons=("live_guard_halted",))
    assert set(halted.routes.tolist()) == {"review"}  # the halt still comes first
    with pytest.raises(ValueError, match="backlog_threshold"):
        route(confidence, policy=policy, calibration=PASSING_GATE, rng=np.random.default_rng(0),
              rerouted=rerouted, backlog_threshold=backlog[:2])


def test_audit_share_sized_from_the_items_that_clear_every_rule() -> None:
    from routing.audit import audits_for_width

    policy = SegmentPolicy(auto_accept_threshold=0.9, spot_check_rate=0.01, audit_interval_width=0.1)
    confidence = np.concatenate([np.full(2000, 0.95), np.full(500, 0.5)])
    risky = np.zeros(2500, dtype=bool)
    risky[:400] = True  # above the threshold but escalated: never automated, so not counted
    result = route(confidence, policy=policy, calibration=PASSING_GATE, rng=np.random.default_rng(0),
                   risk_escalate=risky)
    assert result.audit_rate == pytest.approx(audits_for_width(0.1, expected_error=0.05) / 1600)
    automated = np.isin(result.routes, ["auto_accept", "spot_check"])
    assert automated.sum() == 1600 and np.all(result.inclusion_probability[automated] == result.audit_rate)
    assert abs((result.routes == "spot_check").sum() - 1600 * result.audit_rate) < 4 * np.sqrt(1600 * 0.05)
    assert _route([0.95, 0.5]).audit_rate == 0.0  # no width: the policy's spot-check rate


def test_audits_fit_what_is_left_of_the_label_budget_but_never_fall_below_the_floor() -> None:
    """The budget covers audits: the spot-check share is lowered so the audits expected of the automated items
    and of the review items (audited at the same share by select) fit `max_audits`, down to the policy's
    min_review_probability, which keeps every automated item drawable."""
    policy = SegmentPolicy(auto_accept_threshold=0.5, spot_check_rate=0.2, min_review_probability=0.01)
    confidence = np.r_[np.full(3_000, 0.8), np.full(1_000, 0.3)]  # 3,000 automated, 1,000 to review
    roomy = route(confidence, policy=policy, calibration=PASSING_GATE, rng=np.random.default_rng(1),
                  max_audits=10_000)
    assert roomy.audit_rate == 0.2
    tight = route(confidence, policy=policy, calibration=PASSING_GATE, rng=np.random.default_rng(1), max_audits=100)
    assert tight.audit_rate == pytest.approx(100 / 4_000)
    assert (tight.routes == "spot_check").sum() == pytest.approx(0.025 * 3_000, abs=25)
    np.testing.assert_array_equal(tight.inclusion_probability[:3_000], 100 / 4_000)
    spent = route(confidence, policy=policy, calibration=PASSING_GATE, rng=np.random.default_rng(1), max_audits=0)
    assert spent.audit_rate == 0.01  # the floor: the audit estimate needs every automated item drawable
    assert _route(np.full(10, 0.8), policy=policy).audit_rate == 0.2  # no allowance given: the policy's share
