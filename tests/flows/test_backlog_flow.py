"""A backlog a better model can settle, in real flow runs: the review items a select run leaves waiting are
certified under the next model on the audits drawn from them (``routing.backlog``), and only those items, above
the certified threshold, are auto-accepted; without their audit labels nothing of the backlog is."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from sqlmodel import Session, select
from store.decision_batches import full_decisions

DECISIONS = full_decisions()  # each decision with its batch's columns

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

CLOCK = datetime(2026, 6, 1, 10, 30, tzinfo=timezone.utc)
# The whole pool arrives at once; a budget that lets one run's audits reach what a backlog needs (about 47 clean
# labels at this target), all of them held out
POLICY = """
name: backlog-test
defaults:
  max_auto_error: 0.25
  confidence: 0.9
  spot_check_rate: 0.25
  review_budget: 240
  audit_budget_share: 0.5
  audit_train_share: 0.0
  calibration: {min_samples: 20, max_ece: 0.5, max_age_hours: 168}
"""


def _start(items, labels, seed_count: int = 150):
    from flows.common import engine_for
    from flows.ingest import ingest_flow, read_labels, seed_labels
    from flows.retrain import retrain_flow
    from routing.policy import Policy
    from store.policies import save_policy

    engine = engine_for(None)
    save_policy(engine, Policy.from_yaml(POLICY))
    ingest_flow(str(items))
    truth = dict(read_labels(labels))
    seed_labels(engine, list(truth.items())[:seed_count], holdout_share=0.5)
    retrain_flow()
    return engine, truth


def test_a_backlog_is_certified_on_its_own_audits_and_drains_under_the_guarantee(sluice_home, dataset_files):
    from flows.cycle import run_cycle
    from flows.simulate import DirectAnnotators
    from store.models import BacklogDraw, ReviewTask, ThresholdEvidence

    engine, truth = _start(*dataset_files)
    annotate = DirectAnnotators(engine, truth, sorted(set(truth.values())), 0.0, np.random.default_rng(1))
    run_cycle(annotate=annotate, push=False, as_of=CLOCK)
    with engine.connect() as conn:
        population = conn.execute(select(BacklogDraw)).all()
        picked = set(conn.execute(select(ReviewTask.decision_id).where(ReviewTask.selection_reason != "audit"))
                     .scalars())
        review = set(conn.execute(select(DECISIONS.c.id).where(DECISIONS.c.route == "review")).scalars())
    members = {row.decision_id for row in population}
    assert len({row.run for row in population}) == 1 and members < review
    assert not members & picked  # the population is what the strategy left, audited or not
    assert sum(row.audited for row in population) >= 47
    run_cycle(annotate=annotate, push=False, as_of=CLOCK + timedelta(hours=1))
    with Session(engine) as session:
        later = session.execute(select(DECISIONS).where(DECISIONS.c.cycle == 2,
                                                           DECISIONS.c.supersedes_id.is_not(None))).all()
        evidence = {e.id: e for e in session.exec(select(ThresholdEvidence)).all()}
    settled = [d for d in later if d.route in ("auto_accept", "spot_check")]
    assert settled, "the backlog's own audits certified nothing"
    backlog_evidence = evidence[settled[0].evidence_id]
    assert backlog_evidence.estimator == "backlog_sample" and backlog_evidence.threshold is not None
    assert set(backlog_evidence.labels_by_reason) == {"audit"}  # only the run's held-out audits certify it
    for decision in settled:
        assert decision.supersedes_id in members and decision.evidence_id == backlog_evidence.id
        assert decision.raw_confidence >= backlog_evidence.threshold == decision.threshold
    from store.figures import cycle_report_figures

    report = cycle_report_figures(engine, 2)["certification"]["default"]  # the cycle report says so too
    assert report["backlog_sample"]["auto_accepted"] == len(settled)
    assert report["backlog_sample"]["threshold"] == backlog_evidence.threshold
    assert report["backlog_sample"]["labels_by_reason"] == backlog_evidence.labels_by_reason
    assert report["backlog_sample"]["decisions"] == sum(1 for d in later if d.evidence_id == backlog_evidence.id)
    # the segment's own threshold, on its unbiased labels, beside it (the backlog items it sent back point at it)
    assert set(report["clopper_pearson"]["labels_by_reason"]) <= {"seed", "audit", "gold"}
    wrong = sum(truth[d.item_id] != d.predicted_label for d in settled)
    assert wrong <= 0.25 * len(settled) + 3  # the target, with room for one run's chance


def test_without_its_audit_labels_a_backlog_goes_back_to_review(sluice_home, dataset_files):
    from flows.common import resolution_rules, utcnow
    from flows.cycle import run_cycle
    from labeling.resolve import resolve_items
    from store.annotations import HumanAnswer, upsert_annotations
    from store.models import ReviewTask, ThresholdEvidence

    engine, truth = _start(*dataset_files)

    def reviews_only(cycle: int) -> dict:  # people answer the reviews; the audits never come back
        with Session(engine) as session:
            tasks = session.exec(select(ReviewTask).where(ReviewTask.state == "pending",
                                                          ReviewTask.selection_reason != "audit")).all()
        upsert_annotations(engine, [HumanAnswer(source="direct", external_id=t.id, item_id=t.item_id,
                                                label=truth[t.item_id], annotator="sim", was_cancelled=False,
                                                updated_at=utcnow()) for t in tasks])
        return {"answered": resolve_items(engine, [t.item_id for t in tasks], cycle=cycle,
                                          rules=resolution_rules(engine)).resolved}

    run_cycle(annotate=reviews_only, push=False, as_of=CLOCK)
    run_cycle(annotate=reviews_only, push=False, as_of=CLOCK + timedelta(hours=1))
    with Session(engine) as session:
        rerouted = session.execute(select(DECISIONS).where(
            DECISIONS.c.cycle == 2, DECISIONS.c.supersedes_id.is_not(None))).all()
        tried = session.exec(select(ThresholdEvidence).where(ThresholdEvidence.estimator == "backlog_sample")).all()
    assert rerouted and all(d.route == "review" for d in rerouted)
    assert tried and all(e.threshold is None for e in tried)  # the evidence says it was tried, and failed


def test_the_audits_of_a_pure_backlog_are_held_out_whatever_the_training_share(sluice_home, dataset_files):
    """Cycle 1 routes new arrivals (its audits train at the policy's share); the whole pool arrived at once, so
    cycle 2's run holds re-routed items only: a pure backlog, whose audits all stay out of training."""
    from flows.cycle import run_cycle
    from flows.simulate import DirectAnnotators
    from routing.policy import Policy
    from store.models import BacklogDraw, Label, ReviewTask
    from store.policies import save_policy

    engine, truth = _start(*dataset_files)
    save_policy(engine, Policy.from_yaml(POLICY.replace("audit_train_share: 0.0", "audit_train_share: 1.0")))
    annotate = DirectAnnotators(engine, truth, sorted(set(truth.values())), 0.0, np.random.default_rng(1))
    for hour in range(2):
        run_cycle(annotate=annotate, push=False, as_of=CLOCK + timedelta(hours=hour))
    with Session(engine) as session:
        held = {row.cycle: row.audit_held_out for row in session.exec(select(BacklogDraw)).all()}
        audits = session.exec(select(BacklogDraw.cycle, Label.split)
                              .join(ReviewTask, ReviewTask.decision_id == BacklogDraw.decision_id)
                              .join(Label, Label.item_id == ReviewTask.item_id)
                              .where(ReviewTask.selection_reason == "audit")).all()
    assert held == {1: False, 2: True}
    # the audits of what each run left waiting (its population's sample); audited picks and spot checks of what
    # was auto-accepted keep the policy's share
    splits = {cycle: {split for c, split in audits if c == cycle} for cycle in (1, 2)}
    assert splits == {1: {"train"}, 2: {"holdout"}}


def test_a_later_select_picking_from_the_same_decisions_breaks_the_population(sluice_home, dataset_files):
    """A second select over the same decisions (a new budget window, no re-route between) picks reviews by the
    model's uncertainty from what the first left waiting: that population no longer certifies anything."""
    from flows.calibrate import calibrate_flow
    from flows.route import route_flow
    from flows.score import score_flow
    from flows.select import select_flow
    from store.backlog import backlog_population
    from store.models import BacklogDraw
    from store.registry import promoted_model

    engine, _ = _start(*dataset_files)
    score_flow()
    calibrate_flow()
    route_flow(cycle=1, as_of=CLOCK)
    select_flow(cycle=1, as_of=CLOCK)
    with Session(engine) as session:
        run = session.exec(select(BacklogDraw.run)).first()
    model = promoted_model(engine).version
    assert not backlog_population(engine, run, "default", model).picked_later
    select_flow(cycle=1, as_of=CLOCK + timedelta(hours=1))
    with Session(engine) as session:
        assert len(set(session.exec(select(BacklogDraw.run)).all())) == 1  # the first run keeps its decisions
    assert backlog_population(engine, run, "default", model).picked_later
