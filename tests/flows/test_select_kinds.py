"""The select flow spends each segment's review budget on the outputs of LLM pipelines by their kind's own
uncertainty, through real ingest, score, calibrate, route and select runs on a real store: a response by its
calibrated P(accept) (not its raw score), a pair by its preference's uncertainty with the diversity term over the
pair's texts, an extraction by its most doubtful field (not the product of its fields)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from store.models import ReviewTask
from store.decision_batches import full_decisions

DECISIONS = full_decisions()  # each decision with its batch's columns

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

POLICY = """
name: kinds-select
defaults:
  auto_accept_threshold: 0.999
  spot_check_rate: 0.0
  review_budget: 2
  calibration: {min_samples: 20, max_ece: 0.5}
"""


def pilot() -> tuple[list[dict], list[tuple[str, str]]]:
    """The generation segment's pilot: a one-sided score that people reject at 0.6, accept half the time at 0.9
    and accept at 0.99, so the calibrated P(accept) is near 0.5 at a raw 0.9 and near 0 at a raw 0.6."""
    records, labels = [], []
    for k in range(60):
        level = (0.6, 0.9, 0.99)[k % 3]
        accepted = level == 0.99 or (level == 0.9 and k % 2 == 0)
        records.append({"id": f"pilot-{k:02d}", "kind": "generation", "segment": "gen",
                        "prompt": f"What does page {k} of the manual cover?",
                        "response": f"Page {k} covers the {'timer' if k % 2 else 'filter'} settings.",
                        "confidence": level})
        labels.append((f"pilot-{k:02d}", "accept" if accepted else "reject"))
    return records, labels


# Raw scores near 0.6 are the nearest one half but calibrate to a near-certain reject; those at 0.9 calibrate to
# about one half: the two people should see.
RESPONSES = {"gen-raw-0.60": 0.60, "gen-raw-0.61": 0.61, "gen-raw-0.62": 0.62, "gen-raw-0.90": 0.90,
             "gen-raw-0.905": 0.905}
# Ten pairs that are the same comparison (same texts) at 0.5, and one other comparison at 0.45: plain uncertainty
# takes two of the ten, the diversity term one of them and the other.
SAME_PAIR = {"prompt": "When does the ferry leave Pier 4 on Sundays?",
             "response_a": "The last Sunday ferry leaves Pier 4 at 22:40.", "response_b": "It leaves at ten."}
OTHER_PAIR = {"prompt": [{"role": "user", "content": "Summarise the kettle's product page."}],
              "response_a": "The Aurora 2 kettle boils 1.7 litres in under four minutes and switches off by itself, "
                            "according to the page, which also lists a two-year warranty.",
              "response_b": "A kettle.", "context": ["The Aurora 2 kettle boils 1.7 litres in under four minutes."]}
# Documents by field confidences: the product (what the prediction carries) is nearest one half for the first
# two, the most doubtful field for the last two.
DOCUMENTS = {"ext-three-0.8": (0.8, 0.8, 0.8), "ext-0.75-0.75-0.9": (0.75, 0.75, 0.9), "ext-one-0.55": (0.99, 0.55),
             "ext-one-0.6": (0.98, 0.6), "ext-sure": (0.95,)}


def backlog() -> list[dict]:
    records = [{"id": item_id, "kind": "generation", "segment": "gen", "prompt": "How long is the warranty?",
                "response": f"Two years ({item_id}).", "confidence": raw} for item_id, raw in RESPONSES.items()]
    records += [{"id": f"pair-same-{k}", "kind": "pairwise", "segment": "pair", **SAME_PAIR, "preference": 0.5}
                for k in range(10)]
    records.append({"id": "pair-other", "kind": "pairwise", "segment": "pair", **OTHER_PAIR, "preference": 0.45})
    records += [{"id": item_id, "kind": "extraction", "segment": "ext",
                 "text": f"Invoice from Acme Ltd ({item_id}), total 20.50 EUR, due 2026-12-30.",
                 "fields": {name: {"value": "x", "confidence": c} for name, c in zip(("vendor", "total", "due"), fields)}}
                for item_id, fields in DOCUMENTS.items()]
    return records


def write(path, records: list[dict]):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_each_kind_spends_its_budget_on_its_own_most_uncertain(sluice_home, tmp_path):
    from flows.calibrate import calibrate_flow
    from flows.common import engine_for
    from flows.ingest import ingest_flow, seed_labels
    from flows.route import route_flow
    from flows.score import score_flow
    from flows.select import select_flow
    from routing.policy import Policy
    from store.policies import save_policy
    from tests.flows.seeded import AS_OF

    engine = engine_for(None)
    save_policy(engine, Policy.from_yaml(POLICY))
    records, labels = pilot()
    ingest_flow(write(tmp_path / "pilot.jsonl", records))
    seed_labels(engine, labels, holdout_share=0.99)
    score_flow()
    calibrate_flow()
    assert ingest_flow(write(tmp_path / "backlog.jsonl", backlog()))["accepted"] == 21
    score_flow()
    route_flow(cycle=1)
    with engine.connect() as conn:
        routes = dict(conn.execute(select(DECISIONS.c.item_id, DECISIONS.c.route)
                                   .where(DECISIONS.c.cycle == 1)).all())
        calibrated = dict(conn.execute(select(DECISIONS.c.item_id, DECISIONS.c.calibrated_confidence)
                                       .where(DECISIONS.c.item_id.in_(list(RESPONSES)))).all())
    assert set(routes.values()) == {"review"} and len(routes) == 21
    # the premise: calibration turns the one-sided score around, 0.6 is sure, 0.9 is not
    assert max(abs(calibrated[i] - 0.5) for i in ("gen-raw-0.90", "gen-raw-0.905")) < min(
        abs(calibrated[i] - 0.5) for i in ("gen-raw-0.60", "gen-raw-0.61", "gen-raw-0.62"))

    summary = select_flow(cycle=1, as_of=AS_OF)
    with engine.connect() as conn:
        tasks = dict(conn.execute(select(ReviewTask.item_id, ReviewTask.selection_reason)).all())
    chosen = {kind: sorted(i for i in tasks if i.startswith(kind)) for kind in ("gen", "pair", "ext")}
    assert {"gen": chosen["gen"], "pair-other chosen": "pair-other" in chosen["pair"], "ext": chosen["ext"]} == {
        "gen": ["gen-raw-0.90", "gen-raw-0.905"], "pair-other chosen": True, "ext": ["ext-one-0.55", "ext-one-0.6"]}
    assert len(chosen["pair"]) == 2
    assert {tasks[i] for i in chosen["gen"]} == {"verifier_uncertainty"}
    assert {tasks[i] for i in chosen["pair"]} == {"preference_uncertainty"}
    assert {tasks[i] for i in chosen["ext"]} == {"field_uncertainty"}
    assert summary["queued"] == 6 and summary["backlog"] == 15
