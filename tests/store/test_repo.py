"""store.vocab and the shared reads (store.labels, store.registry, store.decisions, ...): one vocabulary, one
definition of an unbiased label, shared reads on both databases."""

from __future__ import annotations

import numpy as np
import pytest

from routing.policy import Policy
from store import decisions, events, labels, passthrough, policies, registry
from store.models import Label, ModelVersion, PolicyVersion, Prediction, utcnow
from store.vocab import UNBIASED_SELECTIONS, ModelStatus, Selection, Split, split_for
from tests.items import insert_items


def test_only_draws_blind_to_the_model_are_unbiased_and_random_review_picks_train() -> None:
    assert UNBIASED_SELECTIONS == {Selection.SEED, Selection.AUDIT, Selection.GOLD}
    assert split_for("random") is Split.TRAIN and split_for("margin") is Split.TRAIN
    assert split_for("escalation") is Split.TRAIN and split_for("unsolicited") is Split.TRAIN
    assert split_for("audit") is Split.HOLDOUT and split_for("audit", trains=True) is Split.TRAIN
    assert split_for("seed") is Split.HOLDOUT and split_for("seed", trains=True) is Split.TRAIN
    assert split_for("gold") == "holdout"  # a StrEnum: stored and compared as the plain string
    with pytest.raises(ValueError, match="unknown selection reason 'seed_holdout'"):
        split_for("seed_holdout")


def _labelled(engine, rows: list[tuple[str, str, str, str, float | None, str | None, str]]) -> None:
    """(item, segment, reason, split, confidence, predicted, truth) under model "m1"."""
    now = utcnow()
    with engine.begin() as conn:
        insert_items(conn, [
            {"id": r[0], "segment": r[1], "state": "resolved", "received_at": now, "updated_at": now} for r in rows])
        conn.execute(Prediction.__table__.insert(), [
            {"item_id": r[0], "model_version": "m1", "confidence": r[4], "label": r[5], "created_at": now}
            for r in rows])
        conn.execute(Label.__table__.insert(), [
            {"item_id": r[0], "label": r[6], "split": r[3], "source": "annotation", "selection_reason": r[2],
             "created_at": now} for r in rows])


def test_held_out_labels_reads_only_unbiased_held_out_outputs_and_fails_closed(engine) -> None:
    _labelled(engine, [
        ("a1", "s", "audit", "holdout", 0.9, "x", "x"),
        ("a2", "s", "audit", "holdout", 0.8, None, "x"),  # no predicted label: never right
        ("a3", "s", "audit", "holdout", None, "x", "x"),  # no confidence: cannot be thresholded, left out
        ("a4", "s", "audit", "train", 0.7, "x", "x"),  # an audit that trains never certifies
        ("r1", "s", "random", "holdout", 0.6, "x", "y"),  # not unbiased even if held out
        ("g1", "t", "gold", "holdout", 0.5, "x", "y"),
        ("s1", "t", "seed", "holdout", 0.4, "y", "y"),
    ])
    held = labels.held_out_labels(engine, "m1")
    assert sorted(held) == ["s", "t"]
    assert held["s"].item_ids == ["a1", "a2"] and held["s"].correct.tolist() == [1.0, 0.0]
    assert held["t"].item_ids == ["g1", "s1"] and held["t"].confidence.tolist() == [0.5, 0.4]
    assert list(labels.held_out_labels(engine, "m1", segment="t")) == ["t"]
    assert labels.held_out_labels(engine, "other") == {}


def test_reading_the_policy_writes_nothing_and_a_flow_saves_the_default_once(engine) -> None:
    assert policies.stored_policy(engine) is None
    with engine.connect() as conn:
        assert conn.execute(PolicyVersion.__table__.select()).first() is None
    policy, version = policies.active_policy(engine)
    assert policies.active_policy(engine)[1] == version
    record = policies.stored_policy(engine)
    assert record.version == version and record.policy == policy and record.comment == "embedded default policy"
    other = Policy.from_yaml(policy.to_yaml().replace("name: default", "name: edited"))
    assert policies.save_policy(engine, other, author="ops", comment="edit") == other.content_hash()
    assert policies.stored_policy(engine).author == "ops"


def test_the_routing_model_is_the_newest_promoted_else_upstream(engine) -> None:
    assert registry.promoted_model(engine) is None and registry.promoted_version(engine) == passthrough.UPSTREAM_MODEL
    with engine.begin() as conn:
        conn.execute(ModelVersion.__table__.insert(), [
            {"version": "v1", "kind": "sklearn", "status": ModelStatus.RETIRED, "created_at": utcnow()},
            {"version": "v2", "kind": "sklearn", "status": ModelStatus.PROMOTED, "created_at": utcnow(),
             "promoted_at": utcnow()},
        ])
    assert registry.promoted_model(engine).version == "v2" and registry.promoted_version(engine) == "v2"


def test_watermarks_are_upserted(engine) -> None:
    assert events.get_watermark(engine, "pull") is None
    events.set_watermark(engine, "pull", "1")
    events.set_watermark(engine, "pull", "2")
    assert events.get_watermark(engine, "pull") == "2"


def test_the_training_fingerprint_follows_content_not_count(engine) -> None:
    from sqlalchemy import delete

    _labelled(engine, [("t1", "s", "margin", "train", 0.6, "x", "x"), ("t2", "s", "margin", "train", 0.6, "x", "y"),
                       ("h1", "s", "audit", "holdout", 0.6, "x", "x")])
    first = labels.training_fingerprint(engine)
    assert labels.training_fingerprint(engine) == first  # stable
    with engine.begin() as conn:  # the same count, another example
        conn.execute(delete(Label).where(Label.item_id == "t2"))
    _labelled(engine, [("t3", "s", "margin", "train", 0.6, "x", "x")])
    assert labels.training_fingerprint(engine) != first


def test_llm_reads_return_the_scored_outputs_of_llm_pipelines_and_their_payloads_in_columns(engine) -> None:
    now = utcnow()
    generation = {"prompt": [{"role": "user", "content": "When is the next train to Lyon?"}],
                  "response": "At 14:05.", "context": ["Departures to Lyon: 12:05, 14:05, 16:05."]}
    rows = [("c1", "classification", "scored", "a news text", None),
            ("g1", "generation", "scored", "At 14:05.", generation),
            ("p1", "pairwise", "scored", "Which is shorter?", {"prompt": "Which is shorter?", "response_a": "A",
                                                               "response_b": "B"}),
            ("x1", "extraction", "scored", "Invoice 7, total 12.00", {"fields": {"total": {"value": "12.00",
                                                                                         "confidence": 0.9}}}),
            ("x2", "extraction", "received", "Invoice 8, total 3.00", {"fields": {}})]
    with engine.begin() as conn:
        insert_items(conn, [
            {"id": i, "kind": kind, "state": state, "text": text, "payload": payload, "segment": "s",
             "received_at": now, "updated_at": now} for i, kind, state, text, payload in rows])
    read = decisions.llm_inputs(engine, ["x1", "c1", "g1", "missing"])
    found = dict(zip(read.item_ids, zip(read.kinds, read.texts, read.payloads)))
    assert found == {"g1": ("generation", "At 14:05.", generation),
                     "x1": ("extraction", "Invoice 7, total 12.00", rows[3][4])}
    assert decisions.llm_inputs(engine, ["c1"]) == decisions.LlmInputs([], [], [], [])


def _models(engine, rows: list[tuple[str, str]]) -> None:
    """(version, kind) registered as candidates, in this order."""
    for version, kind in rows:
        registry.register_model(engine, {"version": version, "kind": kind, "created_at": utcnow()})


def test_each_family_has_its_own_promoted_model_and_the_classifier_stays_promoted_model(engine) -> None:
    _models(engine, [("c1", "text"), ("v1", "verifier"), ("v2", "verifier"), ("p1", "preference")])
    registry.promote_model(engine, "c1")
    registry.promote_model(engine, "v1")
    assert registry.promoted_model(engine).version == "c1"  # a verifier never becomes the classifier
    assert registry.promoted_family_model(engine, "verifier").version == "v1"
    assert registry.promoted_family_model(engine, "preference") is None
    assert registry.promoted_family_versions(engine) == {"generation": "v1"}
    registry.promote_model(engine, "v2")  # retires v1 only
    registry.promote_model(engine, "p1")
    with engine.connect() as conn:
        statuses = dict(conn.execute(ModelVersion.__table__.select().with_only_columns(
            ModelVersion.version, ModelVersion.status)).all())
    assert statuses == {"c1": "promoted", "v1": "retired", "v2": "promoted", "p1": "promoted"}
    assert registry.promoted_family_versions(engine) == {"generation": "v2", "pairwise": "p1"}
    assert registry.promoted_version(engine) == "c1"
    with pytest.raises(ValueError, match="no registered model version 'nope'"):
        registry.promote_model(engine, "nope")
    with pytest.raises(ValueError, match="'judge'"):
        registry.promoted_family_model(engine, "judge")


def test_scored_groups_route_each_kind_on_its_own_model(engine) -> None:
    """A classification item on the classifier's prediction, an LLM output without a score of its own on its
    family model's, one with a score on the passthrough (its own row: store.predictions); predictions of other
    models are not the routing ones."""
    now = utcnow()
    items = [("c", "classification", None, None), ("g", "generation", None, None),
             ("g-up", "generation", "accept", 0.9), ("p", "pairwise", None, None), ("x", "extraction", "confirmed", 0.5)]
    predictions = [("c", "clf"), ("c", "v1"), ("g", "clf"), ("g", "v1"), ("g", "v0"), ("g-up", "v1"), ("p", "p1")]
    with engine.begin() as conn:
        insert_items(conn, [
            {"id": i, "segment": "s", "state": "scored", "kind": k, "upstream_prediction": p, "upstream_confidence": u,
             "received_at": now, "updated_at": now} for i, k, p, u in items])
        conn.execute(Prediction.__table__.insert(), [
            {"item_id": i, "model_version": m, "confidence": 0.7, "label": "accept", "created_at": now}
            for i, m in predictions])
    routed = decisions.scored_groups(engine, "clf", family_versions={"generation": "v1", "pairwise": "p1"})
    assert [(g.segment, g.model_version, g.item_ids, g.kinds) for g in routed] == [
        ("s", "clf", ["c"], ["classification"]), ("s", "p1", ["p"], ["pairwise"]),
        ("s", "upstream", ["g-up", "x"], ["generation", "extraction"]), ("s", "v1", ["g"], ["generation"])]
    by_model = {g.model_version: g for g in routed}
    assert by_model["upstream"].confidence.tolist() == [0.9, 0.5]
    assert by_model["upstream"].labels == ["accept", "confirmed"]
    assert by_model["clf"].confidence.tolist() == [0.7] and by_model["clf"].labels == ["accept"]
    # without a promoted family model an LLM output without a score of its own has nothing to route on
    assert [(g.model_version, g.item_ids) for g in decisions.scored_groups(engine, "clf")] == [
        ("clf", ["c"]), ("upstream", ["g-up", "x"])]


def test_scored_groups_come_in_segment_and_model_order_with_missing_confidences_as_nan(engine) -> None:
    now = utcnow()
    with engine.begin() as conn:
        insert_items(conn, [
            {"id": i, "segment": segment, "state": state, "received_at": now, "updated_at": now}
            for i, segment, state in [("b2", "b", "scored"), ("a9", "a", "scored"), ("b1", "b", "scored"),
                                      ("a1", "a", "routed")]])
        conn.execute(Prediction.__table__.insert(), [
            {"item_id": i, "model_version": "m", "confidence": c, "label": "x", "created_at": now}
            for i, c in [("b2", 0.9), ("a9", None), ("b1", 0.6), ("a1", 0.5)]])
    groups = decisions.scored_groups(engine, "m")
    assert [(g.segment, g.model_version, g.item_ids) for g in groups] == [("a", "m", ["a9"]), ("b", "m", ["b1", "b2"])]
    assert np.isnan(groups[0].confidence[0]) and groups[1].confidence.tolist() == [0.6, 0.9]


def test_scored_groups_carry_each_items_latest_earlier_decision_from_the_same_read(engine) -> None:
    """An item scored again after it was routed comes with the decision its state row points at (its latest, not
    an older one) and that decision's route; a fresh item with None."""
    from sqlalchemy import select, update

    from store.decision_batches import record_decisions
    from store.models import ItemStateRow, RoutingDecision

    now = utcnow()
    with engine.begin() as conn:
        conn.execute(PolicyVersion.__table__.insert(), [{"version": "p1", "name": "p", "document": "", "created_at": now}])
        insert_items(conn, [{"id": i, "segment": "s", "state": "scored", "received_at": now, "updated_at": now}
                            for i in ("fresh", "again", "twice")])
        conn.execute(Prediction.__table__.insert(), [
            {"item_id": i, "model_version": "m", "confidence": 0.8, "label": "x", "created_at": now}
            for i in ("fresh", "again", "twice")])
        record_decisions(conn, [
            {"item_id": i, "segment": "s", "route": r, "policy_version": "p1", "model_version": "m", "reasons": [],
             "created_at": now} for i, r in [("again", "review"), ("twice", "review"), ("twice", "auto_accept")]])
        ids = {(item, route): decision for decision, item, route in conn.execute(
            select(RoutingDecision.id, RoutingDecision.item_id, RoutingDecision.route))}
        for item, route in [("again", "review"), ("twice", "auto_accept")]:  # each item's latest decision
            conn.execute(update(ItemStateRow).where(ItemStateRow.item_id == item).values(
                decision_id=ids[(item, route)]))
    [group] = decisions.scored_groups(engine, "m")
    assert group.item_ids == ["again", "fresh", "twice"]
    assert group.previous == [(ids[("again", "review")], "review"), None, (ids[("twice", "auto_accept")], "auto_accept")]


def test_risk_inputs_come_aligned_with_the_ids_asked_for(engine) -> None:
    now = utcnow()
    with engine.begin() as conn:
        insert_items(conn, [
            {"id": i, "segment": segment, "state": "scored", "text": text, "metadata": metadata, "features": features,
             "received_at": now, "updated_at": now}
            for i, segment, text, metadata, features in [("m", "s", "t", {"source": "web"}, [1.0, 2.0]),
                                                         ("n", "r", None, None, None)]])
    read = decisions.risk_inputs(engine, ["n", "missing", "m"])
    assert read == decisions.RiskInputs([None, None, "t"], [None, None, {"source": "web"}],
                                        [None, None, [1.0, 2.0]], ["r", "", "s"])
    assert decisions.risk_inputs(engine, ["m"], features=False).features == [None]


def test_labelled_items_carry_the_payload_of_an_llm_output(engine) -> None:
    now = utcnow()
    payload = {"prompt": "q", "response": "r"}
    with engine.begin() as conn:
        insert_items(conn, [
            {"id": "g1", "segment": "s", "state": "resolved", "kind": "generation", "payload": payload,
             "received_at": now, "updated_at": now}])
        conn.execute(Label.__table__.insert(), [
            {"item_id": "g1", "label": "reject", "split": "train", "source": "seed", "selection_reason": "seed",
             "created_at": now}])
    assert labels.labelled_items(engine, split="train", kind="generation") == [
        labels.LabelledItem("g1", "reject", None, None, payload)]
    assert labels.labelled_items(engine, split="train") == []  # a classifier never learns from it


def test_a_policy_altered_in_the_database_after_it_was_saved_is_refused(tmp_path):
    from sqlalchemy import update

    from routing.policy import Policy
    from store.db import get_engine
    from store.models import PolicyVersion
    from store.policies import active_policy, save_policy

    engine = get_engine(f"sqlite:///{tmp_path / 'store.db'}")
    version = save_policy(engine, Policy.from_yaml(
        "name: p\nsegments:\n  finance: {stakes: high, regulated: true}\n"), comment="regulated finance")
    assert active_policy(engine)[1] == version
    with engine.begin() as conn:  # someone with write access lowers the stakes behind everyone's back
        conn.execute(update(PolicyVersion).where(PolicyVersion.version == version).values(
            document="name: p\nsegments:\n  finance: {stakes: low}\n"))
    with pytest.raises(ValueError, match=f"stored policy version {version} does not match its document"):
        active_policy(engine)
    engine.dispose()
