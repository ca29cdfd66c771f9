"""Sluice's own verifier and preference model through real flow runs: outputs of LLM pipelines that arrive without a
score of their pipeline's own are scored, calibrated and routed under the family model the retrain flow promoted.

The items are SEMI-SYNTHETIC (``scoring.datasets``): real BBC News articles, responses and pairs built from them,
verdicts by construction (a few flipped)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import select, update

from store.models import AuditEvent, ItemStateRow, Label, ModelVersion, Prediction, RoutingDecision
from store.decision_batches import full_decisions

DECISIONS = full_decisions()  # each decision with its batch's columns

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

POLICY = """
name: llm-review
defaults:
  auto_accept_threshold: 0.8
  spot_check_rate: 0.0
  calibration: {min_samples: 30, max_ece: 0.5}
"""
N_SEEDED, N_LIVE = 240, 60


def _generation_records(n: int, *, seed: int) -> tuple[list[dict], dict[str, str]]:
    """SEMI-SYNTHETIC generation items without a pipeline confidence, and the verdict on each."""
    from scoring.datasets import semi_synthetic_generation

    data = semi_synthetic_generation(n, seed=seed, flip_rate=0.05)
    records = [{"id": r.id, "kind": "generation", "segment": "answers", "prompt": r.prompt, "context": r.context,
                "response": r.response} for r in data.itertuples()]
    return records, {r.id: "accept" if r.accepted else "reject" for r in data.itertuples()}


def _pairwise_records(n: int, *, seed: int) -> tuple[list[dict], dict[str, str]]:
    """SEMI-SYNTHETIC pairs without a pipeline preference, and the answer to each (a, b or tie)."""
    from scoring.datasets import semi_synthetic_pairwise

    data = semi_synthetic_pairwise(n, seed=seed)
    records = [{"id": r.id, "kind": "pairwise", "segment": "pairs", "prompt": r.prompt, "context": r.context,
                "response_a": r.response_a, "response_b": r.response_b} for r in data.itertuples()]
    return records, {r.id: r.label for r in data.itertuples()}


def _ingest_and_seed(engine, tmp_path, name: str, records: list[dict], truth: dict[str, str], n_seeded: int,
                     *, holdout_share: float = 0.5) -> None:
    from flows.ingest import ingest_flow, seed_labels

    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert ingest_flow(str(path))["accepted"] == len(records)
    seed_labels(engine, [(r["id"], truth[r["id"]]) for r in records[:n_seeded]], holdout_share=holdout_share)


def _predictions(engine, item_ids: list[str]) -> dict[str, Prediction]:
    with engine.connect() as conn:
        return {r.item_id: r for r in conn.execute(select(Prediction).where(Prediction.item_id.in_(item_ids)))}


def _decisions(engine, cycle: int) -> dict[str, RoutingDecision]:
    with engine.connect() as conn:
        return {r.item_id: r for r in conn.execute(select(DECISIONS).where(DECISIONS.c.cycle == cycle))}


def test_generation_items_without_a_score_are_routed_under_the_promoted_verifier(sluice_home, tmp_path):
    from flows.calibrate import calibrate_flow
    from flows.common import engine_for
    from flows.retrain import retrain_flow
    from flows.route import route_flow
    from flows.score import score_flow
    from routing.policy import Policy
    from store.policies import save_policy
    from store.registry import promoted_family_model, promoted_model

    engine = engine_for(None)
    save_policy(engine, Policy.from_yaml(POLICY))
    records, truth = _generation_records(N_SEEDED + N_LIVE, seed=11)
    _ingest_and_seed(engine, tmp_path, "generation", records, truth, N_SEEDED)
    live = [r["id"] for r in records[N_SEEDED:]]

    # before any verifier: the items wait, unscored
    assert score_flow()["scored"] == 0

    retrained = retrain_flow()
    assert retrained["status"] == "skipped"  # no classification labels: no classifier
    verifier = retrained["families"]["verifier"]
    assert verifier["status"] == "promoted" and verifier["gate_reasons"] == []
    assert verifier["metrics"]["n"] >= 90 and verifier["metrics"]["accuracy"] >= 0.85
    assert retrained["families"]["preference"]["status"] == "skipped"
    assert promoted_model(engine) is None and promoted_family_model(engine, "verifier").version == verifier["version"]
    with engine.connect() as conn:
        row = conn.execute(select(ModelVersion).where(ModelVersion.version == verifier["version"])).one()
        event = conn.execute(select(AuditEvent.payload).where(AuditEvent.kind == "retrain")
                             .order_by(AuditEvent.id.desc()).limit(1)).scalar_one()
    assert row.kind == "verifier" and row.classes == ["accept", "reject"] and row.metrics["accuracy"] > 0.85
    assert event["family"] == "verifier" and event["version"] == verifier["version"]

    scored = score_flow()
    assert scored["families"]["verifier"]["model_version"] == verifier["version"]
    predictions = _predictions(engine, live)
    assert set(predictions) == set(live)
    assert {(p.model_version, p.label, p.probs) for p in predictions.values()} == {(verifier["version"], "accept",
                                                                                   None)}
    confidence = np.array([predictions[i].confidence for i in live])
    accepted = np.array([truth[i] == "accept" for i in live])
    assert confidence[accepted].mean() > confidence[~accepted].mean() + 0.3  # it tells them apart

    calibrated = calibrate_flow()
    assert {(r["model_version"], r["segment"]) for r in calibrated} >= {(verifier["version"], "answers")}
    route_flow(cycle=1)
    decisions = _decisions(engine, 1)
    assert set(decisions) == set(live)
    assert {d.model_version for d in decisions.values()} == {verifier["version"]}
    assert all(d.calibration_id is not None for d in decisions.values())
    automated = [i for i, d in decisions.items() if d.route == "auto_accept"]
    assert automated and np.mean([truth[i] == "accept" for i in automated]) >= 0.85
    assert any(d.route == "review" for d in decisions.values())

    # more verdicts train a new verifier; once promoted, it scores and routes the backlog again
    more, more_truth = _generation_records(120, seed=12)
    _ingest_and_seed(engine, tmp_path, "more", more, more_truth, len(more), holdout_share=0.01)
    second = retrain_flow()["families"]["verifier"]
    assert second["status"] == "promoted" and second["incumbent"] == verifier["version"]
    assert second["comparison"] is not None and not second["comparison"]["worse"]
    waiting = [i for i, d in decisions.items() if d.route == "review"]
    score_flow()
    rescored = _predictions(engine, waiting)
    with engine.connect() as conn:
        newer = set(conn.execute(select(Prediction.item_id).where(
            Prediction.model_version == second["version"], Prediction.item_id.in_(live))).scalars())
    assert newer >= set(waiting) and not newer & set(automated)  # auto-accepted items are settled
    assert all(i in rescored for i in waiting)
    calibrate_flow()
    route_flow(cycle=2)
    again = _decisions(engine, 2)
    assert set(again) == set(waiting) and {d.model_version for d in again.values()} == {second["version"]}


def test_a_verifier_trained_on_wrong_verdicts_is_rejected(sluice_home, tmp_path):
    from flows.common import engine_for
    from flows.retrain import retrain_flow
    from store.registry import promoted_family_model

    engine = engine_for(None)
    records, truth = _generation_records(N_SEEDED, seed=13)
    _ingest_and_seed(engine, tmp_path, "generation", records, truth, N_SEEDED)
    first = retrain_flow()["families"]["verifier"]
    assert first["status"] == "promoted"
    with engine.begin() as conn:  # every training verdict turned around: held out, the candidate is worse
        for item_id, label in conn.execute(select(Label.item_id, Label.label).where(Label.split == "train")).all():
            conn.execute(update(Label).where(Label.item_id == item_id)
                         .values(label="reject" if label == "accept" else "accept"))
    poisoned = retrain_flow()["families"]["verifier"]
    assert poisoned["status"] == "rejected" and poisoned["comparison"]["worse"]
    assert poisoned["gate_reasons"][0].startswith("held-out labels: worse than the promoted model")
    assert promoted_family_model(engine, "verifier").version == first["version"]
    with engine.connect() as conn:
        statuses = dict(conn.execute(select(ModelVersion.version, ModelVersion.status)).all())
    assert statuses == {first["version"]: "promoted", poisoned["version"]: "rejected"}
    assert retrain_flow()["families"]["verifier"]["status"] == "unchanged"  # the same training set again


def test_too_few_verdicts_of_one_kind_train_no_verifier(sluice_home, tmp_path):
    from flows.common import engine_for
    from flows.retrain import retrain_flow

    engine = engine_for(None)
    records, truth = _generation_records(80, seed=14)
    rejected = [r for r in records if truth[r["id"]] == "reject"][:15]
    kept = [r for r in records if truth[r["id"]] == "accept"][:40] + rejected
    _ingest_and_seed(engine, tmp_path, "generation", kept, truth, len(kept), holdout_share=0.01)
    verifier = retrain_flow()["families"]["verifier"]
    assert verifier["status"] == "skipped" and "15 'reject'" in verifier["reason"]
    with engine.connect() as conn:
        assert conn.execute(select(ModelVersion.version)).first() is None


def test_pairs_without_a_preference_are_routed_under_the_promoted_preference_model(sluice_home, tmp_path):
    from flows.calibrate import calibrate_flow
    from flows.common import engine_for
    from flows.retrain import retrain_flow
    from flows.route import route_flow
    from flows.score import score_flow
    from routing.policy import Policy
    from store.policies import save_policy

    engine = engine_for(None)
    save_policy(engine, Policy.from_yaml(POLICY))
    records, truth = _pairwise_records(N_SEEDED + N_LIVE, seed=21)
    _ingest_and_seed(engine, tmp_path, "pairs", records, truth, N_SEEDED)
    live = [r["id"] for r in records[N_SEEDED:]]

    preference = retrain_flow()["families"]["preference"]
    assert preference["status"] == "promoted" and preference["metrics"]["n"] > 0
    assert preference["metrics"]["accuracy"] > 0.6  # SEMI-SYNTHETIC preferences with Bradley-Terry noise
    score_flow()
    predictions = _predictions(engine, live)
    assert set(predictions) == set(live)
    for prediction in predictions.values():
        p_a = prediction.probs["a"]
        assert prediction.model_version == preference["version"]
        assert prediction.label == ("a" if p_a >= 0.5 else "b")
        assert prediction.confidence == pytest.approx(max(p_a, 1 - p_a))
        assert prediction.probs["b"] == pytest.approx(1 - p_a)
    assert {p.label for p in predictions.values()} == {"a", "b"}

    calibrate_flow()
    route_flow(cycle=1)
    decisions = _decisions(engine, 1)
    assert set(decisions) == set(live)
    assert {d.model_version for d in decisions.values()} == {preference["version"]}
    with engine.connect() as conn:
        states = set(conn.execute(select(ItemStateRow.state).where(ItemStateRow.item_id.in_(live))).scalars())
    assert states <= {"auto_accepted", "routed"}
