"""The live guard of every target segment: an anytime-valid test (``routing.guard``) on the audits of its
auto-accepted items since its last halt, and the halts it recorded. The route flow acts on it; the console shows the
same halts.

Why the test runs on the audited items alone, not on the weighted terms of every automated item
(``routing.active_inference.weighted_error_guard``): route draws every automated item of a batch at that batch's
one audit rate (``routing.decide``), so each audit is a uniform draw of the automated items of its moment, and the
audited-only test is valid and the most powerful. Measured in ``bench/results/guard-forms.md``
(``bench/bench_guard_forms.py``): at three times the target it halts after a median 701 automated items against
1,454 for the doubly robust weighted guard. Were automated items ever drawn with probabilities that vary within a
batch, the audited-only test would be invalid (it halted in every stream at an error below the target when the
draw was dense where the errors were) and the weighted guard would take its place. The review labels of the
``active`` draw are of review items, which are not part of the guard's population."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from routing.guard import live_error_guard
from routing.policy import Policy
from store.figures import audited_automation
from store.models import utcnow
from store.events import record_event
from store.guarantees import HaltRecord, save_guard_halts
from store.guarantees import guard_halts as repo_guard_halts

__all__ = ["check_live_guards", "guard_halts"]


def guard_halts(engine: Engine) -> dict[str, list[HaltRecord]]:
    """Per segment, its halts in order (oldest first)."""
    halts: dict[str, list[HaltRecord]] = {}
    for row in reversed(repo_guard_halts(engine)):
        halts.setdefault(row.segment, []).append(row)
    return halts


def check_live_guards(engine: Engine, policy: Policy) -> dict[str, dict[str, Any]]:
    """Run every target segment's live guard (``routing.guard``) on the audits since its last halt; record a new
    halt (row and audit event) when the evidence says the segment's live error exceeds its target.

    Returns, per segment with audits or halts, the guard's figures and ``halted_model``: the model version whose
    automation is halted (None when none is). A halt binds the model it was found under; a newer model starts a
    fresh test, on its own audits."""
    halts = guard_halts(engine)
    by_segment: dict[str, list[Any]] = {}
    for row in audited_automation(engine):
        by_segment.setdefault(row.segment, []).append(row)
    states: dict[str, dict[str, Any]] = {}
    new_halts = []
    for segment in sorted(set(by_segment) | set(halts)):
        rules = policy.for_segment(segment)
        previous = halts.get(segment, [])
        since = previous[-1].last_decision_id if previous else -1
        audits = [r for r in by_segment.get(segment, []) if r.decision_id > since]
        state: dict[str, Any] = {"halted_model": previous[-1].model_version if previous else None,
                                 "halts": len(previous)}
        if rules.has_target:
            assert rules.max_auto_error is not None and rules.delta is not None  # a target sets both
            result = live_error_guard([r.wrong for r in audits], alpha=rules.max_auto_error, delta=rules.delta)
            state.update(result.to_dict())
            if result.halted:
                assert result.halted_at is not None  # set when halted
                at = audits[result.halted_at]
                state["halted_model"] = at.model_version
                state["halts"] += 1
                new_halts.append({"segment": segment, "model_version": at.model_version,
                                  "last_decision_id": at.decision_id,
                                  "e_value": result.e_value, "n_audited": result.n_audited,
                                  "n_errors": result.n_errors, "alpha": result.alpha, "delta": result.delta,
                                  "created_at": utcnow()})
        states[segment] = state
    if new_halts:
        save_guard_halts(engine, new_halts)
        for halt in new_halts:
            record_event(engine, "live_guard_halt", {
                **{k: v for k, v in halt.items() if k != "created_at"},
                "reason": f"{halt['n_errors']} of {halt['n_audited']} audited auto-accepted items wrong: the "
                          f"e-value {halt['e_value']:.1f} reached 1/delta = {1 / halt['delta']:.0f}, so the live "
                          f"error exceeds the target {halt['alpha']} (anytime-valid test, level {halt['delta']})"})
    return states
