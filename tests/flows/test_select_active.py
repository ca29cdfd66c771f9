"""The active review strategy in real flow runs: every review candidate is drawn once, with a known probability that
is stored with its decision and carried by the task and the label its answer becomes."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from store.decision_batches import full_decisions

DECISIONS = full_decisions()  # each decision with its batch's columns

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def test_active_select_draws_each_review_decision_once_with_a_stored_probability(sluice_home, dataset_files):
    from flows.select import select_flow
    from store.models import ReviewDraw, ReviewTask
    from tests.flows.seeded import ingest_seed_and_train
    from flows.calibrate import calibrate_flow
    from flows.route import route_flow
    from flows.score import score_flow

    items, labels = dataset_files
    engine, _ = ingest_seed_and_train(None, items, labels)
    score_flow()
    calibrate_flow()
    route_flow(cycle=1)
    first = select_flow(strategy="active", cycle=1)
    with engine.connect() as conn:
        draws = {d.decision_id: d for d in conn.execute(select(ReviewDraw)).all()}
        tasks = conn.execute(select(ReviewTask)).all()
        review = set(conn.execute(select(DECISIONS.c.id).where(DECISIONS.c.route == "review")).scalars())
    audited = {t.decision_id for t in tasks if t.selection_reason == "audit"}
    active = [t for t in tasks if t.selection_reason == "active"]
    # every review candidate, once, audited or not (what the draw leaves waiting must not depend on the audits);
    # a drawn candidate the audit took goes out as its audit
    assert set(draws) == review
    assert first["active"] == len(active) > 0
    assert {t.decision_id for t in active} == {k for k, d in draws.items() if d.labelled} - audited
    assert all(t.selection_probability == draws[t.decision_id].probability for t in active)
    # the default policy's budget of 50 labels covers the audits too: the draw expects what they left, sized up by
    # the audit share (a drawn item the audit took goes out as its audit)
    with engine.connect() as conn:
        rate = conn.execute(select(DECISIONS.c.audit_rate).where(DECISIONS.c.route == "review")).scalars().all()
    expected = int((50 - len(audited)) / (1 - sum(rate) / len(rate)))
    assert abs(sum(d.probability for d in draws.values()) - expected) < 1e-6
    assert min(d.probability for d in draws.values()) > 0
    from store.budget import window_split
    from store.policies import active_policy

    split = window_split(engine, active_policy(engine)[0])
    assert [(s["total"], s["audit"], s["review"], s["budget"]) for s in split.values()] == [
        (len(tasks), len(audited), len(active), 50)]
    again = select_flow(strategy="active", cycle=1)  # nothing is drawn twice (and the window's budget is spent)
    with engine.connect() as conn:
        assert conn.execute(select(ReviewDraw)).all().__len__() == len(draws)
    assert again.get("active", 0) == 0


def test_labels_from_the_active_draw_carry_their_probability_through_the_loop(sluice_home, dataset_files, tmp_path):
    from store.models import Label, ReviewDraw
    from tests.flows.seeded import seed_then_loop

    items, labels = dataset_files
    engine = seed_then_loop(None, items, labels, tmp_path, cycles=2, strategy="active")
    from store.figures import cycle_report_figures

    for cycle in (1, 2):  # the report says what the budget paid for; the draw meets it in expectation
        asked = cycle_report_figures(engine, cycle)["labels_asked"]
        assert asked["total"] == sum(asked[k] for k in ("audit", "escalation", "review", "gold", "overlap_extra"))
        assert asked["audit"] > 0 and asked["review"] > 0 and asked["total"] <= 50 + 4 * 50 ** 0.5
    with engine.connect() as conn:
        drawn = dict(conn.execute(select(ReviewDraw.item_id, ReviewDraw.probability)
                                  .where(ReviewDraw.labelled)).all())
        answered = dict(conn.execute(select(Label.item_id, Label.selection_probability)
                                     .where(Label.selection_reason == "active")).all())
    assert answered and set(answered) <= set(drawn)
    assert all(answered[i] == pytest.approx(drawn[i]) for i in answered)
