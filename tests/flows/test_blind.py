"""Blind review tasks: audits always, a policy share of budgeted reviews; no suggestion travels with them."""

from __future__ import annotations

import pytest
from sqlalchemy import select

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
    from flows.calibrate import calibrate_flow
    from flows.common import engine_for, save_policy
    from flows.ingest import ingest_flow, read_labels, seed_labels
    from flows.retrain import retrain_flow
    from flows.route import route_flow
    from flows.score import score_flow
    from flows.select import select_flow
    from routing.policy import Policy

    items, labels = dataset_files
    engine = engine_for(None)
    save_policy(engine, Policy.from_yaml(POLICY))
    ingest_flow(str(items))
    seed_labels(engine, read_labels(labels)[:200], holdout_share=0.5)
    retrain_flow()
    score_flow()
    calibrate_flow()
    route_flow(cycle=1)
    select_flow(cycle=1)
    with engine.connect() as conn:
        tasks = conn.execute(select(ReviewTask.selection_reason, ReviewTask.blind)).all()
    audits = [blind for reason, blind in tasks if reason == "audit"]
    budgeted = [blind for reason, blind in tasks if reason not in ("audit", "escalation")]
    assert audits and all(audits)
    assert len(budgeted) == 120
    assert 0.3 < sum(budgeted) / len(budgeted) < 0.7
