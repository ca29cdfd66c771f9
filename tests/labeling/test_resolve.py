"""Resolution of several answers into one label (majority, Dawid-Skene), escalation, and agreement figures,
against a real SQLite store (no servers)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from sqlalchemy import insert, select

from labeling.quality import agreement_report
from labeling.resolve import ResolutionRule, resolve_items
from store.annotations import HumanAnswer, upsert_annotations
from store.models import Label, ReviewTask
from tests.items import insert_items

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def engine(tmp_path):
    from store.db import dispose_engines, get_engine

    engine = get_engine(f"sqlite:///{tmp_path / 'store.db'}")
    yield engine
    dispose_engines()


def add_items(engine, ids, *, overlap=1, segment="default", reason="margin", ls_task_id=None):
    with engine.begin() as conn:
        insert_items(conn, [{"id": i, "segment": segment, "text": i, "state": "queued"} for i in ids])
        conn.execute(insert(ReviewTask), [
            {"item_id": i, "selection_reason": reason, "selection_probability": 0.5, "priority": 1.0,
             "model_version": "m-1", "policy_version": "p-1", "predicted_label": "a", "score": 0.6,
             "overlap": overlap, "state": "pushed", "cycle": 1, "ls_task_id": ls_task_id or 1000 + k}
            for k, i in enumerate(ids)])


_next_id = iter(range(1, 1_000_000))


def answer(engine, item_id, annotator, label, *, minutes=0, task_id=None, cancelled=False):
    upsert_annotations(engine, [HumanAnswer(
        source="labelstudio", external_id=next(_next_id), item_id=item_id, label=None if cancelled else label,
        annotator=annotator, was_cancelled=cancelled, updated_at=T0 + timedelta(minutes=minutes),
        task_id=task_id)])


def labels(engine):
    with engine.connect() as conn:
        return {r.item_id: r for r in conn.execute(select(Label))}


def tasks(engine):
    with engine.connect() as conn:
        return {r.item_id: r for r in conn.execute(select(ReviewTask))}


def test_item_waits_for_every_annotator_then_majority_wins(engine):
    add_items(engine, ["x"], overlap=3)
    answer(engine, "x", "ann1", "a")
    answer(engine, "x", "ann2", "b")
    outcome = resolve_items(engine, ["x"])
    assert (outcome.resolved, outcome.waiting) == (0, 1) and "x" not in labels(engine)
    answer(engine, "x", "ann3", "a")
    outcome = resolve_items(engine, ["x"], cycle=2)
    assert outcome.resolved == 1
    row = labels(engine)["x"]
    assert (row.label, row.resolution, row.annotator_count) == ("a", "majority", 3)
    assert row.agreement == pytest.approx(2 / 3)
    assert (row.split, row.selection_reason, row.selection_probability, row.model_version, row.policy_version) == (
        "train", "margin", 0.5, "m-1", "p-1")
    assert row.annotator == "ann1,ann2,ann3" and row.cycle == 2
    assert resolve_items(engine, ["x"]).resolved == 0 and len(labels(engine)) == 1  # re-run: same label, no copy, no count


def test_single_answer_is_taken_as_given(engine):
    add_items(engine, ["s"])
    answer(engine, "s", "ann1", "b")
    resolve_items(engine, ["s"])
    row = labels(engine)["s"]
    assert (row.label, row.resolution, row.agreement, row.annotator_count) == ("b", "single", None, 1)


def test_disagreement_escalates_to_the_expert_queue_and_the_expert_settles_it(engine):
    add_items(engine, ["d"], overlap=3)
    for who, label in (("ann1", "a"), ("ann2", "b"), ("ann3", "c")):
        answer(engine, "d", who, label)
    outcome = resolve_items(engine, ["d"], rules=lambda segment: ResolutionRule("majority", 0.6))
    assert (outcome.resolved, outcome.escalated) == (0, 1)
    assert "d" not in labels(engine), "a disputed item never enters a training set"
    task = tasks(engine)["d"]
    assert (task.queue, task.state, task.ls_task_id, task.batch_key) == ("expert", "pending", None, None)
    # the expert task is pushed (a new Label Studio task) and the expert answers it
    from sqlalchemy import update

    with engine.begin() as conn:
        conn.execute(update(ReviewTask).where(ReviewTask.item_id == "d").values(state="pushed", ls_task_id=555))
    assert resolve_items(engine, ["d"]).waiting == 1
    answer(engine, "d", "expert1", "c", minutes=5, task_id=555)
    assert resolve_items(engine, ["d"]).resolved == 1
    row = labels(engine)["d"]
    assert (row.label, row.resolution, row.annotator) == ("c", "expert", "expert1")
    assert tasks(engine)["d"].state == "done"


def test_a_two_to_one_split_passes_a_limit_below_two_thirds(engine):
    add_items(engine, ["m"], overlap=3)
    for who, label in (("ann1", "a"), ("ann2", "a"), ("ann3", "b")):
        answer(engine, "m", who, label)
    assert resolve_items(engine, ["m"], rules=lambda s: ResolutionRule("majority", 0.6)).resolved == 1
    add_items(engine, ["n"], overlap=3)
    for who, label in (("ann1", "a"), ("ann2", "a"), ("ann3", "b")):
        answer(engine, "n", who, label)
    assert resolve_items(engine, ["n"], rules=lambda s: ResolutionRule("majority", 0.7)).escalated == 1


def test_cancelled_answers_do_not_count_towards_overlap(engine):
    add_items(engine, ["c"], overlap=2)
    answer(engine, "c", "ann1", "a")
    answer(engine, "c", "ann2", None, cancelled=True)
    assert resolve_items(engine, ["c"]).waiting == 1 and "c" not in labels(engine)


def test_gold_labels_are_never_overwritten(engine):
    add_items(engine, ["g"], reason="gold")
    answer(engine, "g", "ann1", "b")
    resolve_items(engine, ["g"])
    assert "g" not in labels(engine) and tasks(engine)["g"].state == "done"


def test_dawid_skene_outvotes_a_spammer_majority(engine):
    """Two careless annotators outvote a careful one on some items; across many items Dawid-Skene learns who
    is careless and sides with the careful one, where a majority vote cannot."""
    rng = np.random.default_rng(0)
    classes = ["a", "b", "c"]
    truth = {f"i{k}": classes[rng.integers(3)] for k in range(300)}
    add_items(engine, list(truth), overlap=3)
    for item_id, label in truth.items():
        answer(engine, item_id, "careful", label)
        for who in ("careless1", "careless2"):
            answer(engine, item_id, who, label if rng.random() < 0.4 else classes[rng.integers(3)])
    resolve_items(engine, list(truth), rules=lambda s: ResolutionRule("majority", 0.0))
    majority = {i: r.label for i, r in labels(engine).items()}
    resolve_items(engine, list(truth), rules=lambda s: ResolutionRule("dawid_skene", 0.0))
    by_ds = labels(engine)
    assert {r.resolution for r in by_ds.values()} == {"dawid_skene"}
    accuracy_majority = np.mean([majority[i] == truth[i] for i in truth])
    accuracy_ds = np.mean([by_ds[i].label == truth[i] for i in truth])
    assert accuracy_ds > accuracy_majority + 0.05
    assert accuracy_ds > 0.95


def test_agreement_report_per_segment_and_pair(engine):
    add_items(engine, ["p1", "p2", "p3", "p4"], overlap=2, segment="news")
    add_items(engine, ["q1", "q2"], overlap=2, segment="sport")
    plan = {"p1": ("a", "a"), "p2": ("b", "b"), "p3": ("a", "b"), "p4": ("b", "b"), "q1": ("a", "a"),
            "q2": ("b", "a")}
    for item_id, (first, second) in plan.items():
        answer(engine, item_id, "ann1", first)
        answer(engine, item_id, "ann2", second)
    answer(engine, "p1", "ann1", "b", minutes=1)  # a corrected answer: the latest counts, once
    answer(engine, "p1", "ann1", "a", minutes=2)
    # an item escalated after the review round (its expert task not pushed yet) still counts its peer ratings
    from sqlalchemy import update

    with engine.begin() as conn:
        conn.execute(update(ReviewTask).where(ReviewTask.item_id == "q2").values(queue="expert", ls_task_id=None))
    report = agreement_report(engine)
    news = next(s for s in report["segments"] if s.segment == "news")
    assert (news.items, news.answers, news.fleiss_items) == (4, 8, 4)
    assert news.observed == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    # ann1: a b a b; ann2: a b b b -> observed 3/4
    from labeling.agreement import fleiss_kappa, krippendorff_alpha

    matrix = np.array([[0, 0], [1, 1], [0, 1], [1, 1]])
    assert news.fleiss_kappa == pytest.approx(fleiss_kappa(matrix, n_classes=2))
    assert news.krippendorff_alpha == pytest.approx(krippendorff_alpha(matrix, n_classes=2))
    (pair,) = report["pairs"]
    assert (pair.annotator_a, pair.annotator_b, pair.items) == ("ann1", "ann2", 6)
    assert pair.observed == pytest.approx(4 / 6)
    from sklearn.metrics import cohen_kappa_score

    a = ["a", "b", "a", "b", "a", "b"]
    b = ["a", "b", "b", "b", "a", "a"]
    assert pair.cohen_kappa == pytest.approx(cohen_kappa_score(a, b))


def test_resolution_rule_rejects_bad_values():
    with pytest.raises(ValueError, match="resolution method"):
        ResolutionRule("vote")
    with pytest.raises(ValueError, match="min_agreement"):
        ResolutionRule("majority", 1.5)



def test_audit_labels_train_with_the_policy_share_and_the_rest_stay_held_out():
    from labeling.resolve import label_split

    half = ResolutionRule(audit_train_share=0.5)
    splits = [label_split("audit", decision_id, half) for decision_id in range(1, 4001)]
    assert abs(splits.count("train") / 4000 - 0.5) < 0.03
    assert splits == [label_split("audit", decision_id, half) for decision_id in range(1, 4001)]  # fixed draws
    assert {label_split("audit", k, ResolutionRule()) for k in range(100)} == {"holdout"}  # share 0: all held out
    assert {label_split("audit", k, ResolutionRule(audit_train_share=1.0)) for k in range(100)} == {"train"}
    # an audit of a pure backlog is held out whatever the share: it certifies the backlog (routing.backlog)
    assert {label_split("audit", k, ResolutionRule(audit_train_share=1.0), held_out=True)
            for k in range(100)} == {"holdout"}
    assert label_split("audit", None, half) == "holdout"  # no decision to draw for: held out (fail closed)
    assert label_split("gold", 3, half) == "holdout" and label_split("margin", 3, half) == "train"
    with pytest.raises(ValueError, match="audit_train_share"):
        ResolutionRule(audit_train_share=1.5)


def test_an_issue_the_policy_names_sends_a_response_to_the_expert_with_its_answer_kept(engine):
    add_items(engine, ["unsafe", "fine"])
    rule = ResolutionRule("majority", 0.6, expert_issues=frozenset({"unsafe"}))
    for item_id, issues in (("unsafe", ["unsafe", "tone"]), ("fine", ["tone"])):
        upsert_annotations(engine, [HumanAnswer(
            source="labelstudio", external_id=next(_next_id), item_id=item_id, label="reject", annotator="ann1",
            was_cancelled=False, updated_at=T0, answer={"correction": "Better.", "issues": issues, "severity": 4})])
    outcome = resolve_items(engine, ["unsafe", "fine"], rules=lambda segment: rule)
    assert (outcome.resolved, outcome.escalated) == (1, 1)
    assert "unsafe" not in labels(engine) and tasks(engine)["unsafe"].queue == "expert"
    fine = labels(engine)["fine"]
    assert (fine.label, fine.answer) == ("reject", {"correction": "Better.", "issues": ["tone"], "severity": 4})
    # without the rule, the same answer is a label like any other
    add_items(engine, ["unsafe-2"])
    upsert_annotations(engine, [HumanAnswer(
        source="labelstudio", external_id=next(_next_id), item_id="unsafe-2", label="reject", annotator="ann1",
        was_cancelled=False, updated_at=T0, answer={"issues": ["unsafe"]})])
    assert resolve_items(engine, ["unsafe-2"]).resolved == 1
    # the expert's answer settles the escalated one
    from sqlalchemy import update

    with engine.begin() as conn:
        conn.execute(update(ReviewTask).where(ReviewTask.item_id == "unsafe").values(state="pushed", ls_task_id=777))
    upsert_annotations(engine, [HumanAnswer(
        source="labelstudio", external_id=next(_next_id), item_id="unsafe", label="reject", annotator="expert1",
        was_cancelled=False, updated_at=T0 + timedelta(minutes=3), task_id=777,
        answer={"correction": "A safe answer.", "issues": ["unsafe"], "severity": 5})])
    assert resolve_items(engine, ["unsafe"], rules=lambda segment: rule).resolved == 1
    expert = labels(engine)["unsafe"]
    assert (expert.resolution, expert.answer["correction"]) == ("expert", "A safe answer.")


def test_severity_agreement_is_ordinal_alpha_and_position_bias_counts_sides(engine):
    from labeling.agreement import krippendorff_alpha, position_bias

    add_items(engine, ["g1", "g2", "g3", "g4"], overlap=2, segment="answers")
    add_items(engine, [f"pair{k}" for k in range(10)], segment="pairs")
    severities = {"g1": (0, 0), "g2": (1, 2), "g3": (4, 5), "g4": (5, 3)}
    for item_id, given in severities.items():
        for who, level in zip(("ann1", "ann2"), given):
            upsert_annotations(engine, [HumanAnswer(
                source="labelstudio", external_id=next(_next_id), item_id=item_id, label="reject", annotator=who,
                was_cancelled=False, updated_at=T0, answer={"correction": None, "issues": [], "severity": level})])
    sides = ["left"] * 7 + ["right"] * 2 + [None]  # a tie chose no side
    for k, side in enumerate(sides):
        upsert_annotations(engine, [HumanAnswer(
            source="labelstudio", external_id=next(_next_id), item_id=f"pair{k}", annotator="ann3",
            label="tie" if side is None else "a", was_cancelled=False, updated_at=T0,
            answer={"side": side, "left_is": "a"})])
    report = agreement_report(engine)
    (severity,) = report["severity"]
    assert (severity.segment, severity.items, severity.answers) == ("answers", 4, 8)
    expected = krippendorff_alpha(np.array([[0, 0], [1, 2], [4, 5], [5, 3]]), n_classes=6, metric="ordinal")
    assert severity.krippendorff_alpha == pytest.approx(expected)
    assert severity.krippendorff_alpha > krippendorff_alpha(np.array([[0, 0], [1, 2], [4, 5], [5, 3]]), n_classes=6)
    (position,) = report["position"]
    assert (position.segment, position.bias) == ("pairs", position_bias(np.array([True] * 7 + [False] * 2)))


def test_changed_answers_and_labels_keep_their_earlier_versions(engine):
    from store.models import RowHistory

    add_items(engine, ["h"], overlap=1)
    add_items(engine, ["w"], overlap=2)
    upsert_annotations(engine, [HumanAnswer(source="labelstudio", external_id=9001, item_id="h", label="a",
                                            annotator="ann1", was_cancelled=False, updated_at=T0)])
    resolve_items(engine, ["h"])
    # the annotator changes their mind: the annotation and the label move on, the old ones are kept
    upsert_annotations(engine, [HumanAnswer(source="labelstudio", external_id=9001, item_id="h", label="b",
                                            annotator="ann1", was_cancelled=False,
                                            updated_at=T0 + timedelta(minutes=5))])
    resolve_items(engine, ["h"])
    assert labels(engine)["h"].label == "b"
    # a disagreement withdraws a label to the expert: the withdrawn label is kept too
    for who, label in (("ann1", "a"), ("ann2", "b")):
        answer(engine, "w", who, label)
    with engine.begin() as conn:
        conn.execute(insert(Label).values(item_id="w", label="a", split="train", source="annotation",
                                          selection_reason="margin"))
    resolve_items(engine, ["w"], rules=lambda segment: ResolutionRule("majority", 0.6))
    with engine.connect() as conn:
        history = [(r.table_name, r.row_key, r.reason, r.old.get("label")) for r in
                   conn.execute(select(RowHistory).order_by(RowHistory.id))]
    assert history == [("annotations", "9001", "updated", "a"), ("labels", "h", "updated", "a"),
                       ("labels", "w", "withdrawn", "a")]
