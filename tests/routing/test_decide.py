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
