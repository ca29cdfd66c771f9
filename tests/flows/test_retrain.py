"""The retrain gate's decisions: the regression verdict per segment and the reasons it gives (without a store), and the
regression set of a family model's kind (on a real store)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.retrain import SegmentRegression, gate_reasons, regression_verdicts
from tests.items import insert_items


def _verdicts(rows, *, tolerance=0.05, min_items=5):
    """rows: (segment, candidate right, incumbent right) per corrected item."""
    segments, candidate, incumbent = zip(*rows)
    return regression_verdicts(segments, candidate, incumbent, tolerance=tolerance, min_items=min_items)


def test_a_segment_regresses_once_the_candidate_loses_more_than_the_tolerance():
    # 40 items in "news": the promoted model gets 30 right; 5% of 40 allows the candidate 2 fewer
    incumbent = [True] * 30 + [False] * 10
    keeps_28 = [True] * 28 + [False] * 12
    keeps_27 = [True] * 27 + [False] * 13
    assert _verdicts(list(zip(["news"] * 40, keeps_28, incumbent))) == [
        SegmentRegression("news", 40, 28, 30, 2, True, False)]
    assert _verdicts(list(zip(["news"] * 40, keeps_27, incumbent))) == [
        SegmentRegression("news", 40, 27, 30, 2, True, True)]
    # the same 27 of 40 under a tolerance of 0 or 0.29 (floor(0.29 * 40) = 11): no slack, then plenty
    assert _verdicts(list(zip(["news"] * 40, keeps_28, incumbent)), tolerance=0.0)[0].regressed
    assert not _verdicts(list(zip(["news"] * 40, keeps_27, incumbent)), tolerance=0.29)[0].regressed


def test_only_segments_with_enough_items_are_judged_and_each_on_its_own():
    rows = ([("big", False, True)] * 5 + [("big", True, True)] * 20  # loses 5 of 25, 1 allowed
            + [("small", False, True)] * 4  # loses all 4: too few to judge
            + [("better", True, False)] * 6)  # the candidate fixed what the promoted model got wrong
    verdicts = {v.segment: v for v in _verdicts(rows)}
    assert verdicts["big"] == SegmentRegression("big", 25, 20, 25, 1, True, True)
    assert verdicts["small"] == SegmentRegression("small", 4, 0, 4, 0, False, False)
    assert verdicts["better"] == SegmentRegression("better", 6, 6, 0, 0, True, False)
    assert not any(v.regressed for v in _verdicts(rows, min_items=26))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.booleans(), st.booleans()), min_size=1, max_size=80),
       st.floats(0.0, 0.5), st.integers(1, 10), st.randoms(use_true_random=False))
def test_verdicts_ignore_item_order_and_never_refuse_a_candidate_right_wherever_the_incumbent_is(
        rows, tolerance, min_items, random):
    verdicts = _verdicts(rows, tolerance=tolerance, min_items=min_items)
    shuffled = random.sample(rows, len(rows))
    assert _verdicts(shuffled, tolerance=tolerance, min_items=min_items) == verdicts
    assert sum(v.n for v in verdicts) == len(rows)
    keeps_all = [(segment, candidate or incumbent, incumbent) for segment, candidate, incumbent in rows]
    assert not any(v.regressed for v in _verdicts(keeps_all, tolerance=tolerance, min_items=min_items))


def test_no_corrected_items_is_no_verdict_and_bad_input_is_named():
    assert regression_verdicts([], [], [], tolerance=0.05, min_items=5) == []
    with pytest.raises(ValueError, match="equal-length"):
        regression_verdicts(["a", "a"], [True], [True, False], tolerance=0.05, min_items=5)
    with pytest.raises(ValueError, match="tolerance must lie in"):
        regression_verdicts(["a"], [True], [True], tolerance=float("nan"), min_items=5)
    with pytest.raises(ValueError, match="min_items must be at least 1"):
        regression_verdicts(["a"], [True], [True], tolerance=0.05, min_items=0)


def test_gate_reasons_name_each_failed_check():
    fine = {"worse": False, "p_value": 0.4}
    forgot = SegmentRegression("news", 12, 7, 12, 0, True, True)
    kept = SegmentRegression("sport", 9, 9, 9, 0, True, False)
    assert gate_reasons(fine, [kept], alpha=0.05) == []
    assert gate_reasons(fine, [forgot, kept], alpha=0.05) == [
        "regression set of segment 'news': 7 of 12 corrected items right, the promoted model 12 "
        "(at most 0 fewer allowed)"]
    worse = gate_reasons({"worse": True, "p_value": 0.001}, [], alpha=0.05)
    assert len(worse) == 1 and worse[0].startswith("held-out labels: worse") and "p = 0.001" in worse[0]
    assert gate_reasons(None, [], alpha=0.05)[0].startswith("no held-out evaluation labels")
    assert len(gate_reasons({"worse": True, "p_value": 0.01}, [forgot], alpha=0.05)) == 2


def _corrected_generation(engine, n: int) -> None:
    """`n` SEMI-SYNTHETIC wrong responses routed as "accept" and rejected by people (corrections), and one
    classification item corrected in the same segment."""
    from scoring.datasets import semi_synthetic_generation
    from store.decision_batches import record_decisions
    from store.models import Label, PolicyVersion, utcnow

    data = semi_synthetic_generation(2 * n, seed=31)
    wrong = data[~data["accepted"]].head(n)
    now = utcnow()
    items = [{"id": r.id, "segment": "answers", "state": "resolved", "kind": "generation", "text": r.response,
              "payload": {"prompt": r.prompt, "response": r.response, "context": r.context}, "received_at": now,
              "updated_at": now} for r in wrong.itertuples()]
    items.append({"id": "c1", "segment": "answers", "state": "resolved", "kind": "classification",
                  "text": "a match report", "payload": None, "received_at": now, "updated_at": now})
    with engine.begin() as conn:
        conn.execute(PolicyVersion.__table__.insert(), [{"version": "p1", "name": "p", "document": "",
                                                         "created_at": now}])
        insert_items(conn, items)
        record_decisions(conn, [
            {"item_id": i["id"], "segment": "answers", "route": "auto_accept", "model_version": "v0",
             "predicted_label": "sport" if i["id"] == "c1" else "accept", "policy_version": "p1", "reasons": [],
             "created_at": now} for i in items])
        conn.execute(Label.__table__.insert(), [
            {"item_id": i["id"], "label": "weather" if i["id"] == "c1" else "reject", "split": "holdout",
             "source": "annotation", "selection_reason": "audit", "created_at": now} for i in items])


def test_a_verifier_that_accepts_rejected_responses_again_regresses(engine):
    from flows.retrain import GateSettings, family_regression
    from scoring.datasets import semi_synthetic_generation
    from scoring.verifier import GenerationExample, Verifier
    from store.vocab import ModelFamily

    _corrected_generation(engine, 30)
    train = semi_synthetic_generation(200, seed=32)
    examples = [GenerationExample(r.prompt, r.response, r.context) for r in train.itertuples()]
    right = Verifier().fit(examples, train["accepted"].to_numpy())
    backwards = Verifier().fit(examples, ~train["accepted"].to_numpy())  # learnt the verdicts the wrong way round
    gate = GateSettings(alpha=0.05, tolerance=0.05, min_items=5)
    [forgets] = family_regression(engine, ModelFamily.VERIFIER, backwards, right, gate=gate)
    assert forgets.segment == "answers" and forgets.n == 30  # the classification correction is not the verifier's
    assert forgets.regressed and forgets.incumbent_right >= 28 and forgets.candidate_right <= 2
    [keeps] = family_regression(engine, ModelFamily.VERIFIER, right, backwards, gate=gate)
    assert not keeps.regressed and keeps.candidate_right >= 28
    assert family_regression(engine, ModelFamily.PREFERENCE, right, right, gate=gate) == []  # no pairs corrected
