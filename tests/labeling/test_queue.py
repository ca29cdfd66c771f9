"""The annotator's queue follows Sluice's order: the pure ranking, and a real Label Studio's label stream taking
the pushed tasks one by one as an annotator would (escalations, then audits and gold, then reviews by usefulness),
whatever model scored them."""

from __future__ import annotations

import pytest

from labeling.queue import project_instructions, queue_score, task_note, tier


def test_tiers_come_first_and_usefulness_orders_within_a_tier():
    escalation = queue_score("review", "escalation", 2.0)
    expert = queue_score("expert", "margin", 3.0)
    audit, gold = queue_score("review", "audit", 0.0), queue_score("review", "gold", 1.0)
    useful, less = queue_score("review", "margin", 0.9), queue_score("review", "margin", 0.1)
    assert max(escalation, expert) < min(audit, gold) and max(audit, gold) < min(useful, less)
    assert useful < less  # the more useful review is served first
    assert [tier("review", r) for r in ("escalation", "audit", "gold", "margin", "field_uncertainty")] == [0, 1, 1, 2, 2]
    assert 0.0 <= queue_score("review", "margin", float("nan")) < 3.0
    assert queue_score("review", "margin", 1e9) > 2.0  # a huge priority never jumps a tier


def test_the_note_says_why_shows_calibrated_confidence_and_risk_codes_but_nothing_on_a_blind_task():
    note = task_note("margin", calibrated_confidence=0.734, reasons=["confidence_below_threshold",
                                                                     "prompt_instruction_like"], blind=False)
    assert "unsure" in note and "73%" in note and "prompt_instruction_like" in note
    assert "confidence_below_threshold" not in note
    blind = task_note("audit", calibrated_confidence=0.734, reasons=[], blind=True)
    assert "%" not in blind and "hidden on purpose" in blind
    html = project_instructions("pairwise", target=0.05, expert_issues=["unsafe"])
    assert "random" in html and "5%" in html and "unsafe" in html


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_the_label_stream_serves_sluices_order_whatever_the_model_version(labelstudio, sluice_home, monkeypatch,
                                                                          tmp_path):
    import uuid

    from sqlalchemy import select

    from flows.common import engine_for
    from flows.labelstudio import open_queue, push_flow
    from labeling.queue import QUEUE_MODEL_VERSION
    from store.models import ReviewTask
    from store.settings import get_settings
    from tests.flows.conftest import make_dataset, write_files
    from tests.flows.seeded import seed_and_route

    monkeypatch.setenv("SLUICE_LABELSTUDIO_URL", labelstudio.url)
    monkeypatch.setenv("SLUICE_LABELSTUDIO_TOKEN", labelstudio.token)
    monkeypatch.setenv("SLUICE_LABELSTUDIO_PROJECT", f"order {uuid.uuid4().hex[:8]}")
    get_settings.cache_clear()
    policy = ("name: ordered\nlabels: [finance, sport, weather]\ndefaults:\n  auto_accept_threshold: 0.7\n"
              "  spot_check_rate: 0.3\n  review_budget: 200\n  gold_share: 0.25\n"  # the budget covers the audits too
              "  risk_rules: [{field: text, op: contains, value: thunder, action: escalate, code: thunder}]\n")
    engine, _ = seed_and_route(*write_files(tmp_path, make_dataset(500, seed=5)), policy_yaml=policy)
    assert push_flow()["pushed"] > 0
    with engine.connect() as conn:
        tasks = {t.ls_task_id: t for t in conn.execute(select(ReviewTask).where(ReviewTask.queue == "review"))}
    reasons = {t.selection_reason for t in tasks.values()}
    assert {"escalation", "audit", "gold"} <= reasons and reasons - {"escalation", "audit", "gold"}
    queue, project_id = open_queue(engine)
    project = queue._sdk.projects.get(project_id)
    assert project.model_version == QUEUE_MODEL_VERSION
    served = []
    for _ in range(len(tasks)):
        task_id = queue.next_task(project_id)  # as the label stream serves it to an annotator
        if task_id is None:
            break
        served.append(tasks[task_id])
        queue.skip(task_id, annotator_id=int(queue._sdk.users.whoami().id))  # done with it: the next one
    assert len(served) == len(tasks)
    keys = [(tier(t.queue, t.selection_reason), -t.priority) for t in served]
    assert keys == sorted(keys), [(t.selection_reason, t.priority) for t in served]
