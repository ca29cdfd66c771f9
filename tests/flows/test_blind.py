"""Blind review tasks: audits always, a policy share of budgeted reviews; no suggestion travels with them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from store.models import ReviewTask

POLICY = """
name: blind-test
defaults:
  review_budget: 120
  spot_check_rate: 0.1
  blind_share: 0.5
"""


def test_a_blind_task_carries_no_suggestion():
    from flows.labelstudio import _spec

    shown = ReviewTask(item_id="a", selection_reason="margin", priority=0.3, model_version="m-1",
                       predicted_label="sport", score=0.6, batch_key="k", blind=False)
    blind = ReviewTask(item_id="b", selection_reason="margin", priority=0.3, model_version="m-1",
                       predicted_label="sport", score=0.6, batch_key="k", blind=True)
    assert _spec(shown, "text", None).predicted_label == "sport"
    hidden = _spec(blind, "text", None)
    assert hidden.predicted_label is None and hidden.score is None and hidden.model_version is None


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_blind_share_and_blind_audits(sluice_home, dataset_files):
    from tests.flows.seeded import seed_and_route

    engine, _ = seed_and_route(*dataset_files, policy_yaml=POLICY)
    with engine.connect() as conn:
        tasks = conn.execute(select(ReviewTask.selection_reason, ReviewTask.blind)).all()
    audits = [blind for reason, blind in tasks if reason == "audit"]
    budgeted = [blind for reason, blind in tasks if reason not in ("audit", "escalation")]
    assert audits and all(audits)
    # one budget: audits first, the rest reviewed (a margin pick the audit took goes out as its audit, and margin
    # takes the next of its ranking instead)
    assert len(tasks) == 120 and len(budgeted) > 20
    assert 0.3 < sum(budgeted) / len(budgeted) < 0.7


GOLD_POLICY = """
name: gold-test
defaults:
  review_budget: 60
  spot_check_rate: 0.0
  gold_share: 0.25
"""


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_gold_items_measure_annotators_and_keep_their_label(sluice_home, dataset_files):
    import numpy as np

    from flows.select import select_flow
    from flows.simulate import DirectAnnotators
    from store.models import ItemStateRow, Label
    from tests.flows.seeded import AS_OF, seed_and_route
    from ui.data import annotator_accuracy

    engine, truth = seed_and_route(*dataset_files, policy_yaml=GOLD_POLICY)
    with engine.connect() as conn:
        first = dict(conn.execute(select(ReviewTask.selection_reason, func.count())
                                  .group_by(ReviewTask.selection_reason)).all())
    assert first["gold"] == 12 and first["margin"] == 48  # one budget of 60: 48 reviews and their 12 gold
    assert select_flow(cycle=1, as_of=AS_OF)["queued"] == 0  # re-run: no budget left, no more gold
    with engine.connect() as conn:
        gold_ids = conn.execute(select(ReviewTask.item_id).where(ReviewTask.selection_reason == "gold")).scalars().all()
        before = dict(conn.execute(select(Label.item_id, Label.label).where(Label.item_id.in_(gold_ids))).all())
    # every answer wrong: the known labels must stay, and the accuracy must say 0
    wrong = {i: next(l for l in sorted(set(truth.values())) if l != truth[i]) for i in truth}
    DirectAnnotators(engine, wrong, sorted(set(truth.values())), 0.0, np.random.default_rng(0))(1)
    with engine.connect() as conn:
        after = dict(conn.execute(select(Label.item_id, Label.label).where(Label.item_id.in_(gold_ids))).all())
        states = set(conn.execute(select(ItemStateRow.state).where(ItemStateRow.item_id.in_(gold_ids))).scalars())
        done = set(conn.execute(select(ReviewTask.state).where(ReviewTask.item_id.in_(gold_ids))).scalars())
    assert after == before and states == {"resolved"} and done == {"done"}
    accuracy = annotator_accuracy(engine)
    assert accuracy["gold_answered"].sum() == 12 and (accuracy["gold_accuracy"] == 0.0).all()


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_the_review_budget_is_per_window_and_segment_whatever_the_cycle(sluice_home, dataset_files):
    from flows.select import select_flow
    from tests.flows.seeded import AS_OF, seed_and_route

    engine, _ = seed_and_route(*dataset_files, policy_yaml=GOLD_POLICY.replace("gold_share: 0.25", "gold_share: 0"))
    # cycle 1 spent the window's 60; neither a later cycle nor a select outside any cycle gets a fresh budget
    assert select_flow(cycle=2, as_of=AS_OF + timedelta(minutes=10))["queued"] == 0
    assert select_flow(as_of=AS_OF + timedelta(minutes=29))["queued"] == 0
    # the next clock hour is a new window
    assert select_flow(as_of=AS_OF + timedelta(minutes=31))["margin"] == 60
    with engine.connect() as conn:
        dated = sorted(set(conn.execute(select(ReviewTask.created_at)).scalars()))
    assert [d.replace(tzinfo=None) for d in dated] == [AS_OF.replace(tzinfo=None),
                                                       (AS_OF + timedelta(minutes=31)).replace(tzinfo=None)]
