"""The outputs of LLM pipelines through the real loop: generation, pairwise and extraction items are ingested,
scored on the pipeline's own score, routed, pushed to a Label Studio project of their kind, answered through its
API as its UI would, and pulled back with everything the answer holds (a correction, issues and severity; the
preferred response whatever side it was shown on; the corrected fields)."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select

from labeling.kinds import fields_to_review
from store.models import Annotation, Label, Prediction, ReviewTask
from store.predictions import predictions_of
from store.decision_batches import full_decisions

DECISIONS = full_decisions()  # each decision with its batch's columns

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

POLICY = """
name: llm-kinds
segments:
  default:
    review_budget: 100
    spot_check_rate: 0.0

"""

QUESTIONS = [
    ("How long is the warranty on the kettle?", "The kettle's warranty lasts two years from purchase.",
     "The warranty lasts five years."),
    ("Which port does the printer use?", "The printer connects over USB-C.", "It uses a parallel port."),
    ("When does the library close on Sundays?", "On Sundays the library closes at 4 pm.", "It never closes."),
    ("What voltage does the charger take?", "The charger takes 100 to 240 volts.", "Only 12 volts."),
]


def records() -> list[dict]:
    out = []
    for index, (question, right, wrong) in enumerate(QUESTIONS):
        out.append({"id": f"gen-{index}", "kind": "generation", "prompt": question, "response": wrong,
                    "context": [f"Manual: {right}"], "confidence": 0.4 + 0.1 * index})
        out.append({"id": f"pair-{index}", "kind": "pairwise", "prompt": question, "response_a": right,
                    "response_b": wrong, "preference": 0.45 + 0.02 * index})
        out.append({"id": f"ext-{index}", "kind": "extraction",
                    "text": f"Invoice {100 + index} from Acme Ltd, total {20 + index}.50 EUR, due 2026-12-3{index % 2}.",
                    "fields": {"vendor": {"value": "Acme Ltd", "confidence": 0.95},
                               "total": {"value": f"{20 + index}.00", "confidence": 0.5},
                               "due": {"value": f"2026-12-3{index % 2}", "confidence": 0.8}}})
    return out


@pytest.fixture
def kinds_env(labelstudio, sluice_home, monkeypatch, tmp_path):
    from store.settings import get_settings

    monkeypatch.setenv("SLUICE_LABELSTUDIO_URL", labelstudio.url)
    monkeypatch.setenv("SLUICE_LABELSTUDIO_TOKEN", labelstudio.token)
    monkeypatch.setenv("SLUICE_LABELSTUDIO_PROJECT", f"kinds {uuid.uuid4().hex[:8]}")
    get_settings.cache_clear()
    path = tmp_path / "llm.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records()))
    return path


def answer_for(kind: str, item_id: str) -> dict:
    index = int(item_id.rsplit("-", 1)[1])
    if kind == "generation":
        return {"label": "reject", "correction": QUESTIONS[index][1], "issues": ["factual_error"],
                "severity": 3}
    if kind == "pairwise":
        return {"label": "a" if index < 3 else "tie"}
    return {"fields": {"vendor": "Acme Ltd", "total": f"{20 + index}.50", "due": f"2026-12-3{index % 2}"}}


def test_each_kind_goes_to_its_queue_and_its_answers_come_back(kinds_env):
    from flows.common import engine_for
    from flows.ingest import ingest_flow
    from flows.labelstudio import open_queue, pull_flow, push_flow
    from flows.route import route_flow
    from flows.score import score_flow
    from flows.select import select_flow
    from labeling.kinds import answer_result
    from routing.policy import Policy
    from store.policies import save_policy
    from tests.flows.seeded import AS_OF

    engine = engine_for(None)
    save_policy(engine, Policy.from_yaml(POLICY))
    ingest_flow(str(kinds_env))
    with engine.connect() as conn:  # each pipeline's own score, mapped onto its kind's answers: born scored
        assert len(conn.execute(predictions_of("upstream").select()).all()) == 12
        assert conn.execute(select(func.count()).select_from(Prediction)).scalar_one() == 0  # in the item rows
    assert score_flow()["scored"] == 0
    route_flow(cycle=1)
    select_flow(cycle=1, as_of=AS_OF)
    pushed = push_flow()
    assert pushed["pushed"] == 12
    assert push_flow() == {"pushed": 0, "pending": 0}
    with engine.connect() as conn:
        tasks = {t.item_id: t for t in conn.execute(select(ReviewTask))}
    assert set(tasks) == {r["id"] for r in records()}
    for kind in ("generation", "pairwise", "extraction"):
        queue, project = open_queue(engine, kind=kind)
        assert {t.project_id for i, t in tasks.items() if i.startswith(kind[:3])} == {project}
        annotator = queue.ensure_annotator(f"{kind}@example.org", "a-long-password-1")
        for item_id, task in tasks.items():
            if item_id.startswith(kind[:3]):
                data = queue._sdk.tasks.get(task.ls_task_id).data
                queue.annotate(task.ls_task_id, None, annotator_id=annotator,
                               result=answer_result(kind, data, answer_for(kind, item_id)))
    pulled = pull_flow(cycle=1)
    assert pulled["new"] == 12 and pulled["resolved"] == 12
    assert pull_flow(cycle=1)["new"] == 0
    with engine.connect() as conn:
        labels = {r.item_id: r for r in conn.execute(select(Label))}
        sides = {r.item_id: r.answer["side"] for r in conn.execute(select(Annotation)) if r.item_id.startswith("pair")}
        thresholds = dict(conn.execute(select(DECISIONS.c.item_id, DECISIONS.c.threshold)).all())
    for index, (_, right, _) in enumerate(QUESTIONS):
        generation = labels[f"gen-{index}"]
        assert generation.label == "reject"
        assert generation.answer == {"correction": right, "issues": ["factual_error"], "severity": 3}
        pair = labels[f"pair-{index}"]
        assert pair.label == ("a" if index < 3 else "tie")
        extraction = labels[f"ext-{index}"]
        assert extraction.label == "corrected" and extraction.answer["corrected"] == ["total"]
        assert extraction.answer["fields"]["total"] == f"{20 + index}.50"
        # the fields that need people: the fewest, least confident first, that leave the rest above the threshold
        # the document was routed on (all of them without one)
        record = next(r for r in records() if r["id"] == f"ext-{index}")
        assert extraction.answer["review_fields"] == fields_to_review(record["fields"], thresholds[f"ext-{index}"])
        assert extraction.answer["review_fields"][0] == "total"
    # the side each preferred response was shown on is kept (position bias), and it follows the task's draw
    assert {sides[f"pair-{i}"] for i in range(3)} <= {"left", "right"} and sides["pair-3"] is None
    # and out as training data, through the commands
    from typer.testing import CliRunner

    from flows.cli import app

    out = kinds_env.parent
    for form, expected in (("sft", 4), ("dpo", 7), ("extraction", 4)):
        result = CliRunner().invoke(app, ["export", form, str(out / f"{form}.jsonl")], catch_exceptions=False)
        assert result.exit_code == 0 and f"{expected} new record(s) appended" in result.output, result.output
        again = CliRunner().invoke(app, ["export", form, str(out / f"{form}.jsonl")], catch_exceptions=False)
        assert "0 new record(s) appended" in again.output
    sft = [json.loads(line) for line in (out / "sft.jsonl").read_text().splitlines()]
    assert {r["messages"][-1]["content"] for r in sft} == {right for _, right, _ in QUESTIONS}
    assert all(r["metadata"]["route"] == "review" and r["metadata"]["annotators"] for r in sft)
