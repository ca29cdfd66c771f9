"""Every audit certifies the model it was drawn under, in real flow runs: while a model keeps routing (retraining on a
schedule of its own), the audits of its own decisions certify its threshold whichever split they joined, and once
a newer model has trained on the train-split ones, they never certify that newer model."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from sqlmodel import Session, select
from store.decision_batches import full_decisions

DECISIONS = full_decisions()  # each decision with its batch's columns

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

CLOCK = datetime(2026, 6, 1, 10, 30, tzinfo=timezone.utc)
POLICY = """
name: own-audits-test
defaults:
  max_auto_error: 0.25
  confidence: 0.9
  spot_check_rate: 0.25
  review_budget: 300
  audit_budget_share: 0.5
  audit_train_share: 0.5
  calibration: {min_samples: 20, max_ece: 0.5, max_age_hours: 168}
"""


def _label_sets(engine, model_version: str) -> tuple[set[str], set[str], set[str]]:
    """Independently of the code under test: the held-out unbiased labels, the audits of the model's own first
    decisions, and every label in the train split."""
    from store.models import Label, ReviewTask

    with Session(engine) as session:
        labels = session.exec(select(Label)).all()
        tasks = session.exec(select(ReviewTask).where(ReviewTask.selection_reason == "audit")).all()
        decisions = {d.id: d for d in session.execute(select(DECISIONS)).all()}
    own_tasks = {t.item_id for t in tasks if decisions[t.decision_id].model_version == model_version
                 and decisions[t.decision_id].supersedes_id is None}
    held = {lab.item_id for lab in labels if lab.split == "holdout" and lab.selection_reason in ("seed", "audit", "gold")}
    own = {lab.item_id for lab in labels if lab.selection_reason == "audit" and lab.model_version == model_version
           and lab.item_id in own_tasks}
    return held, own, {lab.item_id for lab in labels if lab.split == "train"}


def test_audits_certify_the_model_that_drew_them_and_never_the_model_they_trained(sluice_home, tmp_path):
    from flows.common import engine_for
    from flows.cycle import run_cycle
    from flows.ingest import ingest_flow, read_labels, seed_labels
    from flows.retrain import retrain_flow
    from flows.simulate import DirectAnnotators
    from routing.policy import Policy
    from services.certify import certifying_labels
    from store.models import Label, ThresholdEvidence
    from store.policies import save_policy
    from store.registry import promoted_model
    from tests.flows.conftest import make_dataset, write_files

    batches = []
    for seed, size in ((3, 500), (4, 250), (5, 250)):
        (tmp_path / str(seed)).mkdir()
        batches.append(write_files(tmp_path / str(seed), make_dataset(size, seed=seed)))
    truth = {item: label for _, labels in batches for item, label in read_labels(labels)}
    engine = engine_for(None)
    save_policy(engine, Policy.from_yaml(POLICY))
    ingest_flow(str(batches[0][0]))
    seed_labels(engine, [(item, truth[item]) for item, _ in read_labels(batches[0][1])][:150], holdout_share=0.5)
    retrain_flow()
    model = promoted_model(engine).version
    annotate = DirectAnnotators(engine, truth, sorted(set(truth.values())), 0.0, np.random.default_rng(1))

    run_cycle(annotate=annotate, push=False, as_of=CLOCK, retrain=False)
    held, own, train = _label_sets(engine, model)
    assert own & train, "no audit of the model's own decisions joined the train split"
    certifying = set(certifying_labels(engine, model)["default"].item_ids)
    assert own <= certifying <= held | own and own - held
    ingest_flow(str(batches[1][0]))  # fresh traffic, routed by the same model on what cycle 1 brought back
    run_cycle(annotate=annotate, push=False, as_of=CLOCK + timedelta(hours=1), retrain=False)
    with Session(engine) as session:
        used = {d.evidence_id for d in session.execute(select(DECISIONS).where(
            DECISIONS.c.cycle == 2, DECISIONS.c.model_version == model,
            DECISIONS.c.evidence_id.is_not(None))).all()}
        evidence = [session.get(ThresholdEvidence, i) for i in used]
        reasons = {lab.item_id: lab.selection_reason for lab in session.exec(select(Label)).all()}
    assert len(evidence) == 1 and evidence[0].estimator == "clopper_pearson"
    # the certification tested every certifying label: the train-split audits of cycle 1 among them
    assert evidence[0].n == len(certifying) > len(certifying - (own & train))
    assert evidence[0].labels_by_reason["audit"] == sum(reasons[i] == "audit" for i in certifying)

    retrain_flow()
    newer = promoted_model(engine).version
    assert newer != model
    ingest_flow(str(batches[2][0]))
    run_cycle(annotate=annotate, push=False, as_of=CLOCK + timedelta(hours=2), retrain=False)
    _, newer_own, train_now = _label_sets(engine, newer)
    _scored_by(engine, newer, own)  # as if the newer model had scored every item it trained on, too
    newer_certifying = set(certifying_labels(engine, newer)["default"].item_ids)
    assert not newer_certifying & own & train_now, "a label that trained the newer model certifies it"
    assert newer_own & train_now and newer_own <= newer_certifying  # its own audits, train split included, do


def _scored_by(engine, model_version: str, item_ids: set[str]) -> None:
    """Give `model_version` a prediction on each of `item_ids` it has none on (a copy of the item's first one)."""
    from store.models import Prediction

    with Session(engine) as session:
        have = set(session.exec(select(Prediction.item_id).where(Prediction.model_version == model_version)).all())
        for item_id in sorted(item_ids - have):
            first = session.exec(select(Prediction).where(Prediction.item_id == item_id)
                                 .order_by(Prediction.id)).first()
            session.add(Prediction(item_id=item_id, model_version=model_version, label=first.label,
                                   confidence=first.confidence, margin=first.margin, probs=first.probs))
        session.commit()
