"""store.kinds on both databases: the review candidates that are outputs of LLM pipelines, read by decision."""

from __future__ import annotations

from store.bulk import LOOKUP_CHUNK
from store.decision_batches import full_decisions, record_decisions
from store.kinds import LlmCandidates, llm_candidates
from store.models import PolicyVersion, utcnow
from tests.items import insert_items

NOW = utcnow()
PAYLOADS = {
    "g": {"prompt": "Q?", "response": "A.", "confidence": 0.9},
    "p": {"prompt": [{"role": "user", "content": "Q?"}], "response_a": "A.", "response_b": "B.", "preference": 0.4},
    "x": {"fields": {"total": {"value": "9", "confidence": 0.7}}},
}


def _record(engine, extra_classifications: int = 0) -> dict[str, int]:
    """Items c (classification), g, p, x (one of each LLM kind) and g2 (generation, decided twice: calibrated
    then not), after `extra_classifications` more decided earlier; returns each decision's id by
    "item#model"."""
    kinds = {"c": "classification", "g": "generation", "p": "pairwise", "x": "extraction", "g2": "generation"}
    kinds |= {f"c{k}": "classification" for k in range(extra_classifications)}
    decisions = [(f"c{k}", 0.9, "m") for k in range(extra_classifications)]  # first: the LLM ones come after them
    decisions += [("c", 0.8, "m0"), ("g", 0.55, "m1"), ("p", 0.6, "m2"), ("x", None, "m3"), ("g2", 0.3, "m4"),
                  ("g2", None, "m5")]
    with engine.begin() as conn:
        conn.execute(PolicyVersion.__table__.insert(), [{"version": "p1", "name": "p", "document": "",
                                                        "created_at": NOW}])
        insert_items(conn, [
            {"id": i, "segment": "s", "state": "routed", "kind": kind, "payload": PAYLOADS.get(i[0]) if kind !=
             "classification" else None, "received_at": NOW, "updated_at": NOW} for i, kind in kinds.items()])
        record_decisions(conn, [
            {"item_id": i, "segment": "s", "route": "review", "calibrated_confidence": c, "policy_version": "p1",
             "model_version": m, "reasons": [], "created_at": NOW} for i, c, m in decisions])
        decisions = full_decisions()
        rows = conn.execute(decisions.select().order_by(decisions.c.id)).all()
    return {f"{row.item_id}#{row.model_version}": row.id for row in rows}


def test_llm_candidates_leave_classifications_out_and_carry_kind_payload_and_calibrated_confidence(engine):
    ids = _record(engine)
    found = llm_candidates(engine, list(reversed(ids.values())))
    assert found.decision_ids == sorted(found.decision_ids) and len(found.decision_ids) == 5
    by_id = {d: (k, p, c) for d, k, p, c in zip(*found)}
    assert by_id[ids["g#m1"]] == ("generation", PAYLOADS["g"], 0.55)
    assert by_id[ids["p#m2"]] == ("pairwise", PAYLOADS["p"], 0.6)
    assert by_id[ids["x#m3"]] == ("extraction", PAYLOADS["x"], None)
    assert by_id[ids["g2#m4"]][2] == 0.3 and by_id[ids["g2#m5"]][2] is None
    assert ids["c#m0"] not in by_id
    assert found.positions([ids["p#m2"], ids["c#m0"], ids["g#m1"], 10**9]) == [
        found.decision_ids.index(ids["p#m2"]), None, found.decision_ids.index(ids["g#m1"]), None]
    assert LlmCandidates([], [], [], []).positions([1, 2]) == [None, None]
    assert llm_candidates(engine, [ids["c#m0"]]) == LlmCandidates([], [], [], [])
    assert llm_candidates(engine, []) == LlmCandidates([], [], [], [])


def test_llm_candidates_read_past_one_chunk_of_ids(engine):
    ids = _record(engine, extra_classifications=LOOKUP_CHUNK + 10)
    everything = sorted(ids.values())
    assert everything.index(ids["g#m1"]) > LOOKUP_CHUNK  # the LLM outputs' decisions are in the second chunk
    found = llm_candidates(engine, everything + everything[:3])  # repeated ids are read once
    assert found.kinds == ["generation", "pairwise", "extraction", "generation", "generation"]


def test_extraction_fields_grow_with_new_tasks_and_read_only_those(tmp_path):
    from sqlalchemy import insert

    from store.db import get_engine
    from store.models import Item, ReviewTask
    from store.outbox import extraction_fields

    engine = get_engine(f"sqlite:///{tmp_path / 'store.db'}")

    def queue(item_id: str, fields: list[str]) -> None:
        with engine.begin() as conn:
            insert_items(conn, [{"id": item_id, "kind": "extraction", "text": "doc", "state": "queued",
                                 "payload": {"fields": {f: {"value": "v", "confidence": 0.5} for f in fields}}}])
            conn.execute(insert(ReviewTask).values(item_id=item_id, selection_reason="field_uncertainty"))

    assert extraction_fields(engine) == []
    queue("d1", ["total", "vendor"])
    assert extraction_fields(engine) == ["total", "vendor"]
    queue("d2", ["vendor", "due"])
    assert extraction_fields(engine) == ["total", "vendor", "due"]
    # what was read is not read again: a payload changed afterwards does not count, only new tasks do
    with engine.begin() as conn:
        conn.execute(Item.__table__.update().where(Item.id == "d1").values(payload={"fields": {"other": {}}}))
    assert extraction_fields(engine) == ["total", "vendor", "due"]
    engine.dispose()
