"""Human answers into the store: upsert annotations, resolve each item's label, write it with provenance."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, select, update

from store.bulk import chunked, existing_keys, insert_ignore, set_column
from store.models import Annotation, Item, ItemState, Label, ReviewTask

# Labels chosen at random (audit) or with a known answer (gold) evaluate and calibrate the model; labels chosen
# for their uncertainty teach it. Keeping them apart is what keeps the error estimates unbiased.
HOLDOUT_SELECTIONS = frozenset({"audit", "gold", "seed_holdout"})


@dataclass(frozen=True)
class HumanAnswer:
    """One annotation from any source: Label Studio (external id = its annotation id) or a direct annotator."""

    source: str
    external_id: int
    item_id: str
    label: str | None
    annotator: str
    was_cancelled: bool
    updated_at: datetime
    task_id: int | None = None


def _utc(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


def upsert_annotations(engine: Engine, answers: Sequence[HumanAnswer]) -> tuple[int, int]:
    """Insert new annotations, update changed ones (the latest version wins); returns (new, updated)."""
    new = updated = 0
    now = datetime.now(timezone.utc)
    by_source: dict[str, list[HumanAnswer]] = {}
    for answer in answers:
        by_source.setdefault(answer.source, []).append(answer)
    with engine.begin() as conn:
        for source, group in by_source.items():
            latest = {a.external_id: a for a in sorted(group, key=lambda a: a.updated_at)}
            stored = dict(conn.execute(
                select(Annotation.external_id, Annotation.external_updated_at)
                .where(Annotation.source == source, Annotation.external_id.in_(list(latest)))
            ).all())
            fresh = [a for key, a in latest.items() if key not in stored]
            changed = [a for key, a in latest.items()
                       if key in stored and (stored[key] is None or _utc(stored[key]) < _utc(a.updated_at))]
            insert_ignore(conn, Annotation.__table__, [_annotation_row(a, now) for a in fresh])
            for a in changed:
                conn.execute(
                    update(Annotation)
                    .where(Annotation.source == source, Annotation.external_id == a.external_id)
                    .values(label=a.label, was_cancelled=a.was_cancelled, external_updated_at=a.updated_at,
                            annotator=a.annotator, pulled_at=now)
                )
            new, updated = new + len(fresh), updated + len(changed)
    return new, updated


def _annotation_row(answer: HumanAnswer, now: datetime) -> dict[str, Any]:
    return {
        "source": answer.source, "external_id": answer.external_id, "ls_task_id": answer.task_id,
        "item_id": answer.item_id, "label": answer.label, "annotator": answer.annotator,
        "was_cancelled": answer.was_cancelled, "external_updated_at": answer.updated_at, "pulled_at": now,
    }


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


def resolve_items(engine: Engine, item_ids: Sequence[str], *, cycle: int | None = None) -> int:
    """Resolve the label of each item from its annotations and write it to the training set with provenance."""
    resolved = 0
    now = datetime.now(timezone.utc)
    for part in chunked(list(dict.fromkeys(item_ids)), 2_000):
        with engine.begin() as conn:
            rows = conn.execute(
                select(Annotation.item_id, Annotation.label, Annotation.was_cancelled,
                       Annotation.external_updated_at, Annotation.annotator, Annotation.id)
                .where(Annotation.item_id.in_(part))
            ).all()
            tasks = {t.item_id: t for t in conn.execute(select(ReviewTask).where(ReviewTask.item_id.in_(part)))}
            grouped: dict[str, list] = {}
            for row in rows:
                grouped.setdefault(row[0], []).append(row)
            labels = []
            gold = {i for i, t in tasks.items() if t.selection_reason == "gold"}
            for item_id, annotations in grouped.items():
                label = majority_label([(a[1], a[2], a[3]) for a in annotations])
                if label is None or item_id in gold:  # a gold item's known label is never overwritten
                    continue
                labels.append(_label_row(item_id, label, annotations, tasks.get(item_id), cycle, now))
            answered_gold = gold & set(grouped)
            set_column(conn, ReviewTask.__table__, "item_id", "state", dict.fromkeys(answered_gold, "done"))
            present = existing_keys(conn, Label.__table__.c.item_id, [r["item_id"] for r in labels])
            insert_ignore(conn, Label.__table__, [r for r in labels if r["item_id"] not in present])
            for row in labels:
                if row["item_id"] in present:
                    conn.execute(update(Label).where(Label.item_id == row["item_id"])
                                 .values(label=row["label"], annotator=row["annotator"], created_at=now))
            done = {r["item_id"] for r in labels}
            set_column(conn, Item.__table__, "id", "state", dict.fromkeys(done, ItemState.resolved.value))
            set_column(conn, ReviewTask.__table__, "item_id", "state", dict.fromkeys(done, "done"))
            resolved += len(done)
    return resolved


def _label_row(item_id: str, label: str, annotations: list, task: Any, cycle: int | None, now: datetime) -> dict:
    reason = task.selection_reason if task is not None else "unsolicited"
    annotators = sorted({a[4] for a in annotations if a[1] is not None and not a[2]})
    return {
        "item_id": item_id, "label": label, "split": "holdout" if reason in HOLDOUT_SELECTIONS else "train",
        "source": "annotation", "annotator": ",".join(annotators)[:128], "selection_reason": reason,
        "selection_probability": task.selection_probability if task is not None else None,
        "model_version": task.model_version if task is not None else None,
        "policy_version": task.policy_version if task is not None else None,
        "resolution": "majority" if len(annotators) > 1 else "single",
        "annotation_id": max(a[5] for a in annotations), "cycle": cycle if cycle is not None else (
            task.cycle if task is not None else None), "created_at": now,
    }
