"""2,000 review tasks through a real Label Studio server: overlap, gold and blind tasks, simulated annotators
answering through the API, a pull killed half-way and run again, disagreements settled by an expert."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from store.models import Annotation, Label, ReviewTask, Watermark

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

POLICY = """
name: queue-at-scale
defaults:
  auto_accept_threshold: 1.0
  review_budget: 2900  # labels: a task answered by three annotators costs three
  spot_check_rate: 0.02
  gold_share: 0.02
  blind_share: 0.2
  overlap_share: 0.2
  overlap_annotators: 3
  resolution: dawid_skene
  min_agreement: 0.6
"""
ERROR_RATES = [0.02, 0.05, 0.08, 0.1, 0.35]  # five annotators, one of them careless
DEFERENCE = 0.3
ROOT = Path(__file__).resolve().parents[2]

# Runs only the pull (no Prefect), 100 tasks a page, so that it can be killed with pages still to come.
PULL_SCRIPT = """
import labeling.client
labeling.client.PAGE_SIZE = 100
from flows.common import engine_for, resolution_rules
from flows.labelstudio import pull_queue
from store.settings import get_settings
engine = engine_for(get_settings())
pull_queue(engine, get_settings(), "review", 1, resolution_rules(engine))
"""


@pytest.fixture
def big_queue(labelstudio, sluice_home, monkeypatch, tmp_path):
    from store.settings import get_settings
    from tests.flows.conftest import make_dataset, write_files
    from tests.flows.seeded import seed_and_route

    monkeypatch.setenv("SLUICE_LABELSTUDIO_URL", labelstudio.url)
    monkeypatch.setenv("SLUICE_LABELSTUDIO_TOKEN", labelstudio.token)
    monkeypatch.setenv("SLUICE_LABELSTUDIO_PROJECT", f"scale test {uuid.uuid4().hex[:8]}")
    get_settings.cache_clear()
    items, labels = write_files(tmp_path, make_dataset(2_400, seed=11))
    return seed_and_route(items, labels, policy_yaml=POLICY, seed_count=300)


def rows(engine, *columns, where=None):
    query = select(*columns)
    if where is not None:
        query = query.where(where)
    with engine.connect() as conn:
        return conn.execute(query).all()


def _stored_annotations(database_url: str) -> int:
    """Annotations in the store, read on a connection of our own (not the flows' engine)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("select count(*) from annotations")).scalar_one()
    finally:
        engine.dispose()


def kill_pull_half_way(database_url: str, total: int) -> int:
    """Start the pull in its own process, SIGKILL it once some but not all answers are stored; returns how many
    were stored when it died."""
    process = subprocess.Popen([sys.executable, "-c", PULL_SCRIPT], cwd=ROOT, env=os.environ.copy(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    stored, deadline = 0, time.monotonic() + 300
    try:
        while time.monotonic() < deadline and process.poll() is None:
            stored = _stored_annotations(database_url)
            if stored >= total // 4:
                break
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    output = process.stdout.read().decode(errors="replace") if process.stdout else ""
    assert process.returncode == -signal.SIGKILL, f"the pull ended before it was killed: {output[-2000:]}"
    return _stored_annotations(database_url)


def test_two_thousand_tasks_with_overlap_gold_and_a_killed_pull(big_queue, sluice_home):
    from flows.labelstudio import open_queue, pull_flow, push_flow
    from labeling.quality import agreement_report
    from labeling.simulate import SimulatedAnnotators
    from store.policies import active_policy
    from ui.data import annotator_accuracy, automation_bias

    engine, truth = big_queue
    clock = {"start": time.monotonic()}
    classes = sorted(set(truth.values()))
    outbox = rows(engine, ReviewTask.item_id, ReviewTask.selection_reason, ReviewTask.overlap, ReviewTask.blind,
                  ReviewTask.predicted_label)
    reasons = Counter(r[1] for r in outbox)
    assert len(outbox) >= 2_000 and reasons["gold"] >= 30 and reasons["audit"] >= 20
    assert 0.1 < np.mean([r[2] == 3 for r in outbox if r[1] != "gold"]) < 0.3
    assert all(r[2] == 1 for r in outbox if r[1] == "gold")

    # push, twice: the second finds nothing to do
    assert push_flow()["pushed"] == len(outbox)
    clock["pushed"] = time.monotonic()
    assert push_flow() == {"pushed": 0, "pending": 0}
    queue, project_id = open_queue(engine)
    tasks = rows(engine, ReviewTask.ls_task_id, ReviewTask.item_id, ReviewTask.overlap, ReviewTask.blind,
                 ReviewTask.predicted_label, ReviewTask.selection_reason)
    assert len({t[0] for t in tasks}) == len(outbox)
    overlapped = [t for t in tasks if t[2] == 3]
    assert {queue.task_overlap(t[0]) for t in overlapped[:5]} == {3}
    assert queue.task_overlap(next(t[0] for t in tasks if t[2] == 1)) == 1

    # five simulated annotators answer through the API; one in three defers to a shown suggestion
    people = SimulatedAnnotators(queue=queue, project_id=project_id, true_labels=truth, labels=classes,
                                 error_rate=0.0, rng=np.random.default_rng(5), n_annotators=5,
                                 annotator_error_rates=ERROR_RATES, deference=DEFERENCE)
    shown = [None if t[3] else t[4] for t in tasks]
    made = people.annotate([t[0] for t in tasks], [t[1] for t in tasks], [t[2] for t in tasks],
                           suggestions=shown, workers=6)
    assert made == len(tasks) + 2 * len(overlapped)
    clock["annotated"] = time.monotonic()

    # a pull killed half-way leaves complete pages and no watermark; running it again loses and doubles nothing
    from store.settings import get_settings

    stored = kill_pull_half_way(get_settings().resolved_database_url, made)
    assert 0 < stored < made
    assert not rows(engine, Watermark.name, where=Watermark.name == f"labelstudio:{project_id}:updated_at")
    clock["killed"] = time.monotonic()
    summary = pull_flow(cycle=1)
    clock["pulled"] = time.monotonic()
    assert summary["new"] == made - stored and summary["unknown_items"] == 0
    assert pull_flow(cycle=1)["new"] == 0
    annotations = rows(engine, Annotation.external_id, Annotation.item_id, Annotation.annotator, Annotation.label)
    assert len(annotations) == made == len({a[0] for a in annotations})

    # every label and its provenance
    from flows.common import resolution_rules
    from labeling.resolve import label_split

    policy, policy_version = active_policy(engine)
    rules = resolution_rules(engine)
    task_of = {r.item_id: r for r in rows(engine, ReviewTask)}
    given: dict[str, list[str]] = {}
    item_of_task = {t[0]: t[1] for t in tasks}
    for task_id, _, label in people.given:
        given.setdefault(item_of_task[task_id], []).append(label)
    labels = {r.item_id: r for r in rows(engine, Label, where=Label.source == "annotation")}
    escalated = {i for i, t in task_of.items() if t.queue == "expert"}
    for item_id, task in task_of.items():
        answers = given[item_id]
        if task.selection_reason == "gold":
            assert item_id not in labels, "a gold item keeps its known label"
            continue
        if item_id in escalated:
            assert item_id not in labels and task.overlap == 3 and task.state == "pending"
            assert Counter(answers).most_common(1)[0][1] < 3, "a unanimous item is never escalated"
            continue
        label = labels[item_id]
        assert label.annotator_count == len(answers) == task.overlap
        if task.overlap == 1:
            assert (label.label, label.resolution, label.agreement) == (answers[0], "single", None)
        else:
            assert label.resolution == "dawid_skene" and label.label in answers
            assert label.agreement == pytest.approx(answers.count(label.label) / 3)
            assert label.agreement >= policy.defaults.min_agreement
        # uncertainty picks train; an audit trains by the policy's audit_train_share (a fixed draw per decision)
        assert label.split == label_split(task.selection_reason, task.decision_id, rules("default"))
        assert (label.selection_reason, label.selection_probability) == (task.selection_reason,
                                                                          task.selection_probability)
        assert (label.model_version, label.policy_version) == (task.model_version, policy_version)
        assert label.cycle == 1 and label.annotation_id is not None
    assert len(labels) == len(task_of) - reasons["gold"] - len(escalated)
    accuracy = np.mean([labels[i].label == truth[i] for i in labels])
    assert accuracy > 0.75  # annotators err, and defer to wrong suggestions

    # agreement figures equal the reference implementations on the answers as given
    from sklearn.metrics import cohen_kappa_score

    report = agreement_report(engine)
    by_person: dict[str, dict[str, str]] = {}
    annotator_name = {people._annotators()[k]: k for k in range(5)}
    for _, item_id, annotator, label in annotations:
        if task_of[item_id].overlap == 3:
            by_person.setdefault(annotator, {})[item_id] = label
    assert len(report["pairs"]) == 10
    for pair in report["pairs"]:
        shared = sorted(set(by_person[pair.annotator_a]) & set(by_person[pair.annotator_b]))
        a = [by_person[pair.annotator_a][i] for i in shared]
        b = [by_person[pair.annotator_b][i] for i in shared]
        assert pair.items == len(shared) and pair.cohen_kappa == pytest.approx(cohen_kappa_score(a, b))
    (segment,) = report["segments"]
    assert segment.items == len(overlapped) and segment.fleiss_items == len(overlapped)
    careless = str(people._annotators()[4])
    kappas = {frozenset((p.annotator_a, p.annotator_b)): p.cohen_kappa for p in report["pairs"]}
    # each pair shares ~120 items, so one pair's kappa is noisy (a careless pair beat a careful one in about 2% of
    # simulated runs); an annotator's mean kappa over its four pairs is not (the careless one is lowest in 300 of 300)
    mean_kappa = {who: np.mean([k for pair, k in kappas.items() if who in pair])
                  for who in {a for pair in kappas for a in pair}}
    assert min(mean_kappa, key=mean_kappa.get) == careless, f"the careless annotator agrees least: {mean_kappa}"

    gold = annotator_accuracy(engine).set_index("annotator")
    gold_answers: dict[str, list[bool]] = {}
    for task_id, who, label in people.given:
        item_id = item_of_task[task_id]
        if task_of[item_id].selection_reason == "gold":
            gold_answers.setdefault(str(people._annotators()[who]), []).append(label == truth[item_id])
    assert sorted(gold.index) == sorted(gold_answers)
    for annotator, right in gold_answers.items():
        assert gold.loc[annotator, "gold_answered"] == len(right)
        assert gold.loc[annotator, "gold_accuracy"] == pytest.approx(np.mean(right))
    bias = automation_bias(engine)
    assert (bias["automation_bias_gap"] > 0.03).all(), "annotators who defer accept shown suggestions more"
    budgeted = [i for i, t in task_of.items() if i in labels and t.predicted_label is not None
                and t.selection_reason not in ("audit", "gold", "escalation")]
    shown_items = [i for i in budgeted if not task_of[i].blind]
    assert bias["shown"].sum() == len(shown_items)
    assert bias["shown_accept_rate"].iloc[0] == pytest.approx(
        np.mean([labels[i].label == task_of[i].predicted_label for i in shown_items]))

    # the escalated items go to the expert project; the expert's answer settles them
    assert escalated and summary["escalated"] == len(escalated)  # all from the final pass over the whole fit
    assert push_flow()["pushed"] == len(escalated)
    expert_queue, expert_project = open_queue(engine, queue_name="expert")
    assert expert_project != project_id
    expert = SimulatedAnnotators(queue=expert_queue, project_id=expert_project, true_labels=truth, labels=classes,
                                 error_rate=0.0, rng=np.random.default_rng(6))
    expert_tasks = rows(engine, ReviewTask.ls_task_id, ReviewTask.item_id, where=ReviewTask.queue == "expert")
    expert.annotate([t[0] for t in expert_tasks], [t[1] for t in expert_tasks])
    settled = pull_flow(cycle=1)
    assert settled["resolved"] == len(escalated) and settled["new"] == len(escalated)
    final = {r.item_id: r for r in rows(engine, Label, where=Label.item_id.in_(escalated))}
    assert {r.resolution for r in final.values()} == {"expert"}
    assert all(final[i].label == truth[i] for i in escalated)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Label)).scalar() == len(
            {r[0] for r in conn.execute(select(Label.item_id))})

    figures = {
        "tasks": len(tasks), "annotations": made, "killed_after": stored, "overlapped": len(overlapped),
        "escalated": len(escalated), "label_accuracy": float(accuracy),
        "segment": {"fleiss_kappa": segment.fleiss_kappa, "krippendorff_alpha": segment.krippendorff_alpha,
                    "observed": segment.observed},
        "pairs": {f"{annotator_name[int(p.annotator_a)]}-{annotator_name[int(p.annotator_b)]}":
                  round(p.cohen_kappa, 3) for p in report["pairs"]},
        "gold_accuracy": {annotator_name[int(k)]: round(v, 3) for k, v in gold["gold_accuracy"].items()},
        "automation_bias": bias.drop(columns=["model_version"]).round(3).to_dict("records"),
        "seconds": {"push": clock["pushed"] - clock["start"], "annotate": clock["annotated"] - clock["pushed"],
                    "killed_pull": clock["killed"] - clock["annotated"], "pull": clock["pulled"] - clock["killed"],
                    "total": time.monotonic() - clock["start"]},
    }
    print("queue-at-scale figures:", json.dumps(figures))
    out = os.environ.get("SLUICE_EVIDENCE_DIR")
    if out:
        Path(out, "queue-at-scale.json").write_text(json.dumps(figures, indent=2))
