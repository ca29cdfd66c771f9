"""Human answers into labels: resolve each item's label from its answers, with provenance (`store.annotations`
reads the answers and writes what is resolved)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from datetime import datetime, timezone
from typing import Any, overload

import numpy as np
from sqlalchemy import Engine

from labeling.agreement import MISSING, dawid_skene
from routing.draws import AUDIT_TRAIN_SALT, decision_uniform
from store.annotations import Resolution, ResolutionInputs, resolve_chunk
from store.bulk import chunked
from store.vocab import LabelSource, Queue, Selection, split_for

# Labels chosen at random (audit) or with a known answer (gold) evaluate and calibrate the model; labels chosen
# for their uncertainty teach it (`store.vocab`). Keeping them apart is what keeps the error estimates unbiased.
# An audit label pays twice: it serves the live guard and audit estimate of the model that routed it whatever its
# split, and a policy share of audits (a fixed draw per decision) then trains the next model instead of staying
# held out; a label in the training set never calibrates or certifies a model.


@overload
def _utc(moment: datetime) -> datetime: ...
@overload
def _utc(moment: datetime | None) -> datetime | None: ...
def _utc(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


def majority_label(annotations: Sequence[tuple[str | None, bool, datetime | None]]) -> str | None:
    """The most frequent non-cancelled label; ties go to the most recently updated of the tied labels."""
    valid = [(label, _utc(at)) for label, cancelled, at in annotations if label is not None and not cancelled]
    if not valid:
        return None
    counts = Counter(label for label, _ in valid)
    top = max(counts.values())
    tied = {label for label, count in counts.items() if count == top}
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    return max((at or epoch, label) for label, at in valid if label in tied)[1]


@dataclass(frozen=True)
class ResolutionRule:
    """How one segment turns several answers into a label: the method, and the least share of annotators that
    must give the resolved label before it may teach the model (below it, the item goes to an expert)."""

    method: str = "majority"
    min_agreement: float = 0.6
    audit_train_share: float = 0.0
    expert_issues: frozenset[str] = frozenset()  # an answer naming one of these sends the item to an expert

    def __post_init__(self) -> None:
        if self.method not in RESOLUTION_METHODS:
            raise ValueError(f"resolution method must be one of {RESOLUTION_METHODS}, got {self.method!r}")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ValueError(f"min_agreement must be in [0, 1], got {self.min_agreement!r}")
        if not 0.0 <= self.audit_train_share <= 1.0:
            raise ValueError(f"audit_train_share must be in [0, 1], got {self.audit_train_share!r}")


RESOLUTION_METHODS = ("majority", "dawid_skene")


@dataclass
class Resolved:
    """What one resolution pass did: labels written or changed (a re-read of the same answers counts nothing),
    items sent to the expert queue, items still waiting for more annotators (or for the expert)."""

    resolved: int = 0
    escalated: int = 0
    waiting: int = 0

    def __add__(self, other: Resolved) -> Resolved:
        return Resolved(self.resolved + other.resolved, self.escalated + other.escalated,
                        self.waiting + other.waiting)


def resolve_items(
    engine: Engine, item_ids: Sequence[str], *, cycle: int | None = None,
    rules: Callable[[str], ResolutionRule] | None = None,
) -> Resolved:
    """Resolve the label of each item from its annotations and write it to its set with provenance.

    An item waits until as many distinct annotators as its task's ``overlap`` have answered. One answer is
    taken as it is (``single``); several are resolved by the segment's method (``majority`` vote, or
    ``dawid_skene``, whose per-annotator confusion matrices are fitted on every multiply-annotated item in the
    store), and the share of annotators who gave the resolved label is recorded as its ``agreement``. Below the
    segment's ``min_agreement`` the item goes to the expert queue instead of a set (a label it had is
    withdrawn); once the expert answers, the expert's latest answer is the label (``expert``). A gold item's
    known label is never overwritten. Re-running it on the same annotations changes nothing.
    """
    rule_of = rules or (lambda segment: ResolutionRule())
    total = Resolved()
    now = datetime.now(timezone.utc)
    for part in chunked(list(dict.fromkeys(item_ids)), 2_000):
        resolution, written = resolve_chunk(engine, part, partial(_decide, rule_of=rule_of, cycle=cycle, now=now),
                                            now)
        total = total + Resolved(written, len(resolution.escalate), resolution.waiting)
    return total


def _decide(inputs: ResolutionInputs, *, rule_of: Callable[[str], ResolutionRule], cycle: int | None,
            now: datetime) -> Resolution:
    """Which label each item of a chunk gets, which go to an expert and which wait (see `resolve_items`)."""
    grouped, tasks, segments, held = inputs.answers, inputs.tasks, inputs.segments, inputs.held_out
    gold = {i for i, t in tasks.items() if t.selection_reason == Selection.GOLD}
    outcome = Resolution(answered_gold=gold & set(grouped))
    labels, escalate = outcome.labels, outcome.escalate
    decided = _dawid_skene_labels(inputs, [i for i in grouped if i not in gold
                                           and rule_of(segments.get(i, "")).method == "dawid_skene"])
    for item_id, answers in grouped.items():
        if item_id in gold:  # a gold item's known label is never overwritten
            continue
        task = tasks.get(item_id)
        valid = [a for a in answers if a.label is not None and not a.was_cancelled]
        if task is not None and task.queue == Queue.EXPERT:
            expert = [a for a in valid if task.ls_task_id is not None and a.ls_task_id == task.ls_task_id]
            if not expert:
                outcome.waiting += 1
                continue
            latest = max(expert, key=lambda a: (_utc(a.external_updated_at) or _EPOCH, a.id))
            labels.append(_label_row(item_id, latest.label, expert, task, cycle, now, resolution="expert",
                                     agreement=None, rule=rule_of(segments.get(item_id, "")), held_out=held))
            continue
        rule = rule_of(segments.get(item_id, ""))
        if task is not None and rule.expert_issues and any(
                set((a.answer or {}).get("issues") or ()) & rule.expert_issues for a in valid):
            escalate.append(item_id)  # an issue the policy wants an expert to settle (e.g. unsafe)
            continue
        annotators = {a.annotator for a in valid}
        if not valid or (task is not None and len(annotators) < task.overlap):
            outcome.waiting += bool(valid)
            continue
        if len(valid) == 1:
            labels.append(_label_row(item_id, valid[0].label, valid, task, cycle, now, resolution="single",
                                     agreement=None, rule=rule_of(segments.get(item_id, "")), held_out=held))
            continue
        rule = rule_of(segments.get(item_id, ""))
        label = decided.get(item_id) if rule.method == "dawid_skene" else None
        method = "dawid_skene" if label is not None else "majority"
        label = label if label is not None else majority_label([(a.label, a.was_cancelled, a.external_updated_at) for a in valid])
        assert label is not None  # the valid answers carry labels
        agreement = sum(a.label == label for a in valid) / len(valid)
        if agreement < rule.min_agreement and task is not None:
            escalate.append(item_id)
            continue
        labels.append(_label_row(item_id, label, valid, task, cycle, now, resolution=method, agreement=agreement,
                                 rule=rule, held_out=held))
    return outcome


def _answer_of(label: str, annotations: list) -> dict[str, Any] | None:
    """The answer beyond the label that goes with a resolved label: that of the latest annotation giving it."""
    giving = [a for a in annotations if a.label == label and getattr(a, "answer", None) is not None]
    if not giving:
        return None
    return max(giving, key=lambda a: (_utc(a.external_updated_at) or _EPOCH, a.id)).answer


_EPOCH = datetime.min.replace(tzinfo=timezone.utc)


def _dawid_skene_labels(inputs: ResolutionInputs, item_ids: list[str]) -> dict[str, str]:
    """Dawid-Skene labels of `item_ids` (those with two or more answers), with annotator confusion matrices
    fitted on every item of the review queue that two or more annotators answered."""
    if not item_ids:
        return {}
    rows = inputs.multi_answers()
    if not rows:
        return {}
    items = sorted({r.item_id for r in rows})
    people = sorted({r.annotator for r in rows})
    classes = sorted({r.label for r in rows})
    row_of, col_of, class_of = ({v: i for i, v in enumerate(values)} for values in (items, people, classes))
    answers = np.full((len(items), len(people)), MISSING, dtype=np.int64)
    for item_id, annotator, label, _ in rows:  # in update order: an annotator's latest answer wins
        answers[row_of[item_id], col_of[annotator]] = class_of[label]
    if len(classes) < 2:
        return {item_id: classes[0] for item_id in item_ids if item_id in row_of}
    result = dawid_skene(answers, n_classes=len(classes))
    return {item_id: classes[result.labels[row_of[item_id]]] for item_id in item_ids if item_id in row_of}


def label_split(reason: str, decision_id: int | None, rule: ResolutionRule, *, held_out: bool = False) -> str:
    """Which set a resolved label joins (`store.vocab.split_for`): uncertainty picks train, gold stays held out,
    and an audit trains with the segment's ``audit_train_share`` (a fixed draw per routing decision) unless
    `held_out`: an audit of a pure backlog, which certifies it (``routing.backlog``)."""
    trains = (reason == Selection.AUDIT and decision_id is not None and not held_out
              and rule.audit_train_share > 0.0
              and bool(decision_uniform([decision_id], salt=AUDIT_TRAIN_SALT)[0] < rule.audit_train_share))
    return split_for(reason, trains=trains)


def _label_row(item_id: str, label: str, annotations: list, task: Any, cycle: int | None, now: datetime, *,
               resolution: str, agreement: float | None, rule: ResolutionRule,
               held_out: frozenset[int] = frozenset()) -> dict:
    reason = task.selection_reason if task is not None else Selection.UNSOLICITED
    annotators = sorted({a.annotator for a in annotations})
    return {
        "item_id": item_id, "label": label,
        "split": label_split(reason, task.decision_id if task is not None else None, rule,
                             held_out=task is not None and task.decision_id in held_out),
        "source": LabelSource.ANNOTATION, "annotator": ",".join(annotators)[:128], "selection_reason": reason,
        "selection_probability": task.selection_probability if task is not None else None,
        "model_version": task.model_version if task is not None else None,
        "policy_version": task.policy_version if task is not None else None,
        "resolution": resolution, "agreement": agreement, "annotator_count": len(annotators),
        "annotation_id": max(a.id for a in annotations), "answer": _answer_of(label, annotations), "cycle": cycle if cycle is not None else (
            task.cycle if task is not None else None), "created_at": now,
    }
