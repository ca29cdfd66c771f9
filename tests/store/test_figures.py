"""store.figures and store.outbox on both databases: hand-counted figures over a small routing record."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from store import figures, outbox
from store.decision_batches import record_decisions
from store.models import Annotation, Label, PolicyVersion, ReviewTask, RoutingDecision, utcnow
from tests.items import insert_items

NOW = utcnow()


def _record(engine) -> None:
    """Segment s: a1 auto-accepted then re-routed to review (latest: review), a2 auto-accepted and audited right, a3
    spot-checked and audited wrong, a4 auto-accepted without a predicted label and audited (wrong: fail closed);
    segment t: b1 reviewed, its task open, b2 a gold item answered right by ann and wrong by bob."""
    items = [("a1", "s"), ("a2", "s"), ("a3", "s"), ("a4", "s"), ("b1", "t"), ("b2", "t")]
    decisions = [  # (item, route, predicted, cycle); ids increase in this order
        ("a1", "auto_accept", "x", 1), ("a2", "auto_accept", "x", 1), ("a3", "spot_check", "x", 1),
        ("a4", "auto_accept", None, 2), ("b1", "review", "x", 2), ("a1", "review", "x", 2),
    ]
    with engine.begin() as conn:
        conn.execute(PolicyVersion.__table__.insert(), [
            {"version": "p1", "name": "p", "document": "", "created_at": NOW}])
        insert_items(conn, [
            {"id": i, "segment": s, "state": "routed", "received_at": NOW, "updated_at": NOW} for i, s in items])
        record_decisions(conn, [
            {"item_id": i, "segment": dict(items)[i], "route": r, "predicted_label": p, "cycle": c,
             "policy_version": "p1", "model_version": f"m{k}", "inclusion_probability": 0.5, "reasons": [],
             "created_at": NOW} for k, (i, r, p, c) in enumerate(decisions)])
        conn.execute(Label.__table__.insert(), [
            {"item_id": i, "label": truth, "split": split, "source": source, "selection_reason": reason,
             "cycle": cycle, "created_at": NOW}
            for i, truth, split, source, reason, cycle in [
                ("a2", "x", "holdout", "annotation", "audit", 1), ("a3", "y", "holdout", "annotation", "audit", 1),
                ("a4", "x", "holdout", "annotation", "audit", 2), ("b2", "x", "holdout", "seed", "seed", None)]])
        conn.execute(ReviewTask.__table__.insert(), [
            {"item_id": "b1", "selection_reason": "margin", "state": "pending", "priority": 0.2, "queue": "review",
             "cycle": 2, "created_at": NOW},
            {"item_id": "b2", "selection_reason": "gold", "state": "done", "priority": 0.9, "queue": "review",
             "cycle": 2, "created_at": NOW},
            {"item_id": "a3", "selection_reason": "audit", "state": "pending", "priority": 0.5, "queue": "expert",
             "cycle": 1, "created_at": NOW},
        ])
        conn.execute(Annotation.__table__.insert(), [
            {"external_id": n, "item_id": "b2", "label": label, "annotator": who, "was_cancelled": cancelled,
             "pulled_at": NOW + timedelta(minutes=n)}
            for n, label, who, cancelled in [(1, "x", "ann", False), (2, "y", "bob", False), (3, "x", "eve", True)]])


def test_route_counts_count_latest_decisions_and_a_cycle_counts_its_own(engine) -> None:
    _record(engine)
    assert figures.latest_route_counts(engine) == [
        ("s", "auto_accept", 2), ("s", "review", 1), ("s", "spot_check", 1), ("t", "review", 1)]
    assert figures.cycle_route_counts(engine, 1) == {"auto_accept": 2, "spot_check": 1}
    assert sorted(figures.automated_predictions(engine, 2)) == [("a4", None)]


def test_audited_automation_reads_latest_automated_audits_and_fails_closed(engine) -> None:
    _record(engine)
    audited = figures.audited_automation(engine)
    assert [(a.segment, a.wrong) for a in audited] == [("s", False), ("s", True), ("s", True)]
    assert [a.model_version for a in audited] == ["m1", "m2", "m3"] and audited[0].inclusion_probability == 0.5


def test_automated_population_columns_hold_every_latest_automated_item_with_its_draw_and_label(engine) -> None:
    """The audit estimate's population: a2 and a4 were not drawn (auto-accepted; their audit labels belong to no
    draw of theirs), a3 was spot-checked and its audit found the model wrong; a1's latest decision is a review."""
    _record(engine)
    found = figures.automated_population_columns(engine)
    assert list(found) == ["s"]
    s = found["s"]
    assert s.drawn.tolist() == [False, True, False] and s.labelled.tolist() == [False, True, False]
    assert s.wrong.tolist() == [False, True, False] and s.inclusion_probability.tolist() == [0.5, 0.5, 0.5]
    assert np.isnan(s.confidence).all()  # no calibrated confidence was recorded here
    with engine.begin() as conn:  # the audit of a3 not back yet: drawn, not labelled, not wrong
        conn.execute(Label.__table__.delete().where(Label.item_id == "a3"))
    pending = figures.automated_population_columns(engine)["s"]
    assert pending.drawn.tolist() == [False, True, False] and not pending.labelled.any() and not pending.wrong.any()


def test_reviews_labels_and_answers(engine) -> None:
    _record(engine)
    assert figures.open_reviews(engine) == {"s": 1, "t": 1}
    assert figures.label_count(engine) == 4 and figures.label_class_count(engine) == 2
    assert figures.human_labels(engine) == 2 + 1  # two answers not cancelled, one seed label
    assert figures.human_labels(engine, since=NOW + timedelta(minutes=2)) == 1
    assert sorted(figures.gold_answers(engine)) == [("ann", True), ("bob", False)]
    assert figures.suggestion_answers(engine) == []  # no annotated label on a task with a prediction


def test_a_cycle_report_opens_counts_and_closes(engine) -> None:
    _record(engine)
    assert figures.cycle_report_figures(engine, 1) is None and figures.cycle_reports(engine) == []
    assert figures.open_cycle(engine, "m1") == 1 and figures.open_cycle(engine, None) == 2
    counts = figures.cycle_counts(engine, 2)
    assert (counts.review_tasks, counts.labels_total, counts.labels_train, counts.labels_gained) == (2, 4, 0, 1)
    figures.finish_cycle(engine, 1, {"routed": 3})
    assert figures.cycle_report_figures(engine, 1) == {"routed": 3}
    reports = figures.cycle_reports(engine)
    assert [(r.cycle, r.model_version, r.figures) for r in reports] == [(1, "m1", {"routed": 3}), (2, None, {})]
    assert reports[0].finished_at is not None and reports[1].finished_at is None


def test_the_outbox_batches_pending_tasks_per_queue_and_marks_them_pushed(engine) -> None:
    _record(engine)
    assert [t.item_id for t in outbox.pending_tasks(engine)] == ["b1", "a3"]
    outbox.assign_batch_keys(engine, chunk=10)
    batches = outbox.pending_batches(engine)
    assert sorted(b.queue for b in batches) == ["expert", "review"] and all(b.batch_key for b in batches)
    review = next(b.batch_key for b in batches if b.queue == "review")
    rows = outbox.outbox_batch(engine, review)
    assert [(r.task.item_id, r.text, r.features) for r in rows] == [("b1", None, None)]
    outbox.count_push_attempt(engine, review)
    outbox.record_push_error(engine, review, "x" * 3000)
    assert outbox.outbox_batch(engine, review)[0].task.attempts == 1
    assert len(outbox.outbox_batch(engine, review)[0].task.last_error) == 2000
    outbox.mark_pushed(engine, 7, {"b1": 41}, at=NOW)
    assert outbox.outbox_batch(engine, review) == [] and outbox.pushed_tasks(engine) == [(41, "b1")]
    assert outbox.has_expert_tasks(engine)


def test_arrivals_and_held_out_models_of_an_empty_store(engine) -> None:
    # the counted figures come from real flow runs: tests/services/test_preview.py
    assert figures.arrivals(engine, cycles=5) is None and figures.held_out_models(engine) == []
    figures.finish_cycle(engine, figures.open_cycle(engine, None), {})
    assert figures.arrivals(engine, cycles=5) is None  # one finished cycle opens a window; a rate needs two
    with pytest.raises(ValueError, match="cycles must be >= 1, got 0"):
        figures.arrivals(engine, cycles=0)


def test_routes_reasons_waiting_tasks_and_backlog_per_cycle(engine) -> None:
    from sqlalchemy import update

    _record(engine)
    with engine.begin() as conn:  # b1's decision (cycle 2) fell back to review on a stale calibration
        conn.execute(update(RoutingDecision).where(RoutingDecision.item_id == "b1")
                     .values(reasons=["calibration_gate_failed", "calibration_stale"]))
    routes = figures.routes_by_cycle(engine)
    assert [tuple(r) for r in routes] == [(1, "s", "auto_accept", 2), (1, "s", "spot_check", 1),
                                          (2, "s", "auto_accept", 1), (2, "s", "review", 1),
                                          (2, "t", "review", 1)]
    reasons = {(r.segment, r.reasons): (r.cycle, r.n) for r in figures.latest_cycle_reasons(engine)}
    assert reasons == {("s", ()): (2, 2), ("t", ("calibration_gate_failed", "calibration_stale")): (2, 1)}
    waiting = figures.waiting_tasks(engine)
    assert [(w.segment, w.queue, w.waiting) for w in waiting] == [("s", "expert", 1), ("t", "review", 1)]
    assert all(abs((w.oldest - NOW).total_seconds()) < 1 for w in waiting)
    # tasks created: a3 in cycle 1 (s), b1 and b2 in cycle 2 (t); labels resolved from answers: a2, a3 (1), a4 (2)
    assert [tuple(b) for b in figures.backlog_by_cycle(engine)] == [(1, "s", 1, 2), (2, "s", 0, 1), (2, "t", 2, 0)]
