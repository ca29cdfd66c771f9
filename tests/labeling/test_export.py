"""labeling.export on a real SQLite store: the records of each form from resolved answers, with provenance;
incremental and idempotent; a line cut short by a crash is written again, a foreign file is refused."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import update

from labeling.export import export_training_data
from store.db import get_engine
from store.models import Label, utcnow
from tests.items import insert_items

NOW = utcnow()
REASONS = {"generation": "verifier_uncertainty", "pairwise": "preference_uncertainty",
           "extraction": "field_uncertainty"}
PROMPT = [{"role": "system", "content": "Answer from the manual."}, {"role": "user", "content": "Warranty?"}]
ITEMS = [
    ("g-ok", "generation", {"prompt": PROMPT, "response": "Two years."}, "accept", None),
    ("g-fixed", "generation", {"prompt": "Port?", "response": "Parallel."}, "reject",
     {"correction": "USB-C.", "issues": ["factual_error"], "severity": 2}),
    ("g-bare", "generation", {"prompt": "Hours?", "response": "Never closes."}, "reject",
     {"correction": None, "issues": [], "severity": 4}),
    ("p-a", "pairwise", {"prompt": "Voltage?", "response_a": "100-240 V.", "response_b": "12 V."}, "a",
     {"side": "right", "left_is": "b"}),
    ("p-tie", "pairwise", {"prompt": "Colour?", "response_a": "Red.", "response_b": "It is red."}, "tie",
     {"side": None, "left_is": "a"}),
    ("x-1", "extraction", {"fields": {"total": {"value": "20.00", "confidence": 0.5},
                                      "vendor": {"value": "Acme", "confidence": 0.99}}}, "corrected",
     {"fields": {"total": "20.50"}, "corrected": ["total"], "review_fields": ["total"]}),
]


@pytest.fixture
def engine(tmp_path):
    engine = get_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with engine.begin() as conn:
        insert_items(conn, [
            {"id": i, "segment": "support", "kind": k, "payload": p, "text": "Invoice from Acme, total 20.50",
             "state": "resolved", "received_at": NOW, "updated_at": NOW} for i, k, p, _, _ in ITEMS])
        conn.execute(Label.__table__.insert(), [
            {"item_id": i, "label": label, "answer": a, "split": "train", "source": "annotation",
             "annotator": "7,9", "selection_reason": REASONS[k], "selection_probability": 1.0, "model_version": "m1",
             "policy_version": "p1", "resolution": "majority", "agreement": 1.0, "annotator_count": 2,
             "created_at": NOW} for i, k, _, label, a in ITEMS])
    yield engine
    engine.dispose()


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_form_makes_the_records_the_contract_names(engine, tmp_path):
    sft, dpo, extraction = tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl", tmp_path / "x.jsonl"
    assert export_training_data(engine, "sft", sft).written == 2  # a rejection without correction teaches nothing
    records = {r["metadata"]["item_id"]: r for r in lines(sft)}
    assert records["g-ok"]["messages"] == [*PROMPT, {"role": "assistant", "content": "Two years."}]
    assert records["g-fixed"]["messages"][-1] == {"role": "assistant", "content": "USB-C."}
    meta = records["g-fixed"]["metadata"]
    assert (meta["target"], meta["annotators"], meta["agreement"], meta["policy_version"], meta["model_version"],
            meta["selection_reason"], meta["selection_probability"]) == ("corrected", ["7", "9"], 1.0, "p1", "m1",
                                                                         "verifier_uncertainty", 1.0)
    assert export_training_data(engine, "dpo", dpo).written == 2  # the pair and the correction; a tie gives none
    pairs = {r["metadata"]["item_id"]: r for r in lines(dpo)}
    assert (pairs["p-a"]["chosen"], pairs["p-a"]["rejected"], pairs["p-a"]["metadata"]["shown_left"]) == (
        "100-240 V.", "12 V.", "b")
    assert (pairs["g-fixed"]["chosen"], pairs["g-fixed"]["rejected"]) == ("USB-C.", "Parallel.")
    assert export_training_data(engine, "extraction", extraction).written == 1
    (record,) = lines(extraction)
    assert record["fields"] == {"total": "20.50", "vendor": "Acme"}
    assert (record["metadata"]["corrected"], record["metadata"]["unreviewed"]) == (["total"], ["vendor"])


def test_a_second_run_writes_nothing_and_a_changed_answer_one_new_record(engine, tmp_path):
    out = tmp_path / "sft.jsonl"
    export_training_data(engine, "sft", out)
    before = out.read_bytes()
    again = export_training_data(engine, "sft", out)
    assert (again.written, again.known) == (0, 2) and out.read_bytes() == before
    later = NOW + timedelta(hours=1)
    with engine.begin() as conn:  # people fixed the bare rejection later
        conn.execute(update(Label).where(Label.item_id == "g-bare").values(
            answer={"correction": "Closes at 4 pm.", "issues": [], "severity": 4}, created_at=later))
    assert export_training_data(engine, "sft", out).written == 1
    assert [r["metadata"]["item_id"] for r in lines(out)][-1] == "g-bare"
    since = tmp_path / "since.jsonl"
    assert export_training_data(engine, "sft", since, since=later).written == 1  # --since: what changed only


def test_a_line_cut_short_by_a_crash_is_written_again_and_a_foreign_file_is_refused(engine, tmp_path):
    out = tmp_path / "sft.jsonl"
    export_training_data(engine, "sft", out)
    whole = out.read_bytes()
    out.write_bytes(whole[: len(whole) - 25])  # the crash: the last record half-written
    result = export_training_data(engine, "sft", out)
    assert (result.written, result.known) == (1, 1) and out.read_bytes() == whole
    foreign = tmp_path / "notes.jsonl"
    foreign.write_text('{"text": "mine"}\n')
    with pytest.raises(ValueError, match="not a Sluice export"):
        export_training_data(engine, "sft", foreign)
    assert foreign.read_text() == '{"text": "mine"}\n'
    with pytest.raises(ValueError, match=".jsonl"):
        export_training_data(engine, "sft", tmp_path / "out.csv")
