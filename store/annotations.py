"""Human answers in the store: annotations upserted with their history, what one resolution pass reads and the
labels and escalations it writes (in one transaction per chunk of items), and the review round's answers that
agreement is measured on. The decisions themselves (which label, escalate or wait) are `labeling.resolve`'s."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, and_, delete, func, or_, select, update

from store.bulk import insert_ignore, set_column
from store.history import keep_history
from store.models import Annotation, BacklogDraw, Item, ItemState, Label, ReviewTask
from store.transitions import move_items
from store.vocab import Queue, Selection, TaskState

__all__ = ["HumanAnswer", "MultiAnswer", "Resolution", "ResolutionInputs", "RESOLUTION_COLUMNS",
           "resolve_chunk", "review_round_answers", "upsert_annotations"]


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
    answer: dict[str, Any] | None = None  # beyond the label, by kind (`labeling.kinds`): a correction, fields, ...


def _utc(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


def upsert_annotations(engine: Engine, answers: Sequence[HumanAnswer]) -> tuple[int, int]:
    """Insert new annotations, update changed ones (the latest version wins; the earlier versions stay readable
    in the append-only history); returns (new, updated)."""
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
                       if key in stored and ((at := stored[key]) is None or _utc(at) < _utc(a.updated_at))]  # type: ignore[operator]
            insert_ignore(conn, Annotation.__table__, [_annotation_row(a, now) for a in fresh])
            if changed:
                keep_history(conn, Annotation.__table__, "external_id", [a.external_id for a in changed],
                             reason="updated", at=now, where=Annotation.source == source)
            for a in changed:
                conn.execute(
                    update(Annotation)
                    .where(Annotation.source == source, Annotation.external_id == a.external_id)
                    .values(label=a.label, was_cancelled=a.was_cancelled, external_updated_at=a.updated_at,
                            annotator=a.annotator, answer=a.answer, pulled_at=now)
                )
            new, updated = new + len(fresh), updated + len(changed)
    return new, updated


def _annotation_row(answer: HumanAnswer, now: datetime) -> dict[str, Any]:
    return {
        "source": answer.source, "external_id": answer.external_id, "ls_task_id": answer.task_id,
        "item_id": answer.item_id, "label": answer.label, "annotator": answer.annotator,
        "was_cancelled": answer.was_cancelled, "external_updated_at": answer.updated_at, "pulled_at": now,
        "answer": answer.answer,
    }


class MultiAnswer(NamedTuple):
    """One answer to an item of the review queue that two or more annotators answered."""

    item_id: str
    annotator: str
    label: str
    external_updated_at: datetime | None


@dataclass(frozen=True)
class ResolutionInputs:
    """What a resolution pass reads of one chunk of items: each item's annotations (rows with ``label``,
    ``was_cancelled``, ``external_updated_at``, ``annotator``, ``id``, ``ls_task_id``, ``answer``), its review task,
    its segment, the audit decisions whose labels must stay held out (the audits of a pure backlog,
    ``routing.backlog``), and a reader of every multiply-answered review item (for Dawid-Skene), in the pass's
    transaction."""

    answers: dict[str, list[Any]]
    tasks: dict[str, Any]
    segments: dict[str, str]
    held_out: frozenset[int]
    multi_answers: Callable[[], list[MultiAnswer]]


@dataclass
class Resolution:
    """What a resolution pass decided for one chunk: label rows to write (``Label`` columns), items to send to the
    expert queue (a label they had is withdrawn), answered gold items (their tasks are done), items waiting."""

    labels: list[dict[str, Any]] = field(default_factory=list)
    escalate: list[str] = field(default_factory=list)
    answered_gold: set[str] = field(default_factory=set)
    waiting: int = 0


#: What a resolution decides; a label whose columns all match what is stored is not re-resolved.
RESOLUTION_COLUMNS = ("label", "annotator", "resolution", "agreement", "annotator_count", "annotation_id", "answer")


def resolve_chunk(engine: Engine, item_ids: Sequence[str], decide: Callable[[ResolutionInputs], Resolution],
                  now: datetime) -> tuple[Resolution, int]:
    """One resolution pass over `item_ids` in one transaction: read the inputs, let `decide` choose, then write
    what it chose (the escalations, the labels that are new or changed, the moved items and finished tasks).
    Returns the resolution and how many labels were written or changed (a re-read of the same answers rewrites
    nothing and counts nothing)."""
    with engine.begin() as conn:
        resolution = decide(_resolution_inputs(conn, item_ids))
        return resolution, _write_resolution(conn, resolution, now)


def _resolution_inputs(conn: Connection, part: Sequence[str]) -> ResolutionInputs:
    rows = conn.execute(
        select(Annotation.item_id, Annotation.label, Annotation.was_cancelled, Annotation.external_updated_at,
               Annotation.annotator, Annotation.id, Annotation.ls_task_id, Annotation.answer)
        .where(Annotation.item_id.in_(part))
    ).all()
    tasks = {t.item_id: t for t in conn.execute(select(ReviewTask).where(ReviewTask.item_id.in_(part)))}
    segments = dict(conn.execute(select(Item.id, Item.segment).where(Item.id.in_(part))).tuples().all())
    grouped: dict[str, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row.item_id, []).append(row)
    audits = [t.decision_id for t in tasks.values() if t.selection_reason == Selection.AUDIT and t.decision_id]
    held = frozenset(conn.execute(select(BacklogDraw.decision_id).where(
        BacklogDraw.decision_id.in_(audits), BacklogDraw.audit_held_out)).scalars()) if audits else frozenset()
    return ResolutionInputs(grouped, tasks, segments, held, lambda: _multi_answers(conn))


def _multi_answers(conn: Connection) -> list[MultiAnswer]:
    """Every answer (in update order) to an item of the review queue that two or more annotators answered."""
    multi = (select(Annotation.item_id).where(Annotation.label.is_not(None), Annotation.was_cancelled.is_(False))
             .group_by(Annotation.item_id).having(func.count(func.distinct(Annotation.annotator)) >= 2))
    rows = conn.execute(
        select(Annotation.item_id, Annotation.annotator, Annotation.label, Annotation.external_updated_at)
        .join(ReviewTask, ReviewTask.item_id == Annotation.item_id, isouter=True)
        .where(Annotation.item_id.in_(multi), Annotation.label.is_not(None), Annotation.was_cancelled.is_(False),
               func.coalesce(ReviewTask.queue, Queue.REVIEW.value) == Queue.REVIEW)
        .order_by(Annotation.external_updated_at)
    ).all()
    return [MultiAnswer(item_id, annotator, str(label), at) for item_id, annotator, label, at in rows]


def _write_resolution(conn: Connection, resolution: Resolution, now: datetime) -> int:
    labels, escalate = resolution.labels, resolution.escalate
    set_column(conn, ReviewTask.__table__, "item_id", "state",
               dict.fromkeys(resolution.answered_gold, TaskState.DONE))
    if escalate:
        conn.execute(update(ReviewTask).where(ReviewTask.item_id.in_(escalate), ReviewTask.queue == Queue.REVIEW)
                     .values(queue=Queue.EXPERT, state=TaskState.PENDING, batch_key=None, attempts=0, ls_task_id=None,
                             project_id=None, pushed_at=None, priority=3.0))
        keep_history(conn, Label.__table__, "item_id", escalate, reason="withdrawn", at=now)
        conn.execute(delete(Label).where(Label.item_id.in_(escalate)))
        move_items(conn, dict.fromkeys(escalate, ItemState.queued), by="resolve")
    stored = {r.item_id: r for r in conn.execute(
        select(Label.item_id, *(Label.__table__.c[c] for c in RESOLUTION_COLUMNS))
        .where(Label.item_id.in_([r["item_id"] for r in labels])))} if labels else {}
    insert_ignore(conn, Label.__table__, [r for r in labels if r["item_id"] not in stored])
    changed = [r for r in labels if r["item_id"] in stored
               and any(getattr(stored[r["item_id"]], c) != r[c] for c in RESOLUTION_COLUMNS)]
    if changed:
        keep_history(conn, Label.__table__, "item_id", [r["item_id"] for r in changed], reason="updated", at=now)
    for row in changed:
        conn.execute(update(Label).where(Label.item_id == row["item_id"]).values(
            **{c: row[c] for c in RESOLUTION_COLUMNS}, created_at=now))
    done = {r["item_id"] for r in labels}
    move_items(conn, dict.fromkeys(done, ItemState.resolved), by="resolve")
    set_column(conn, ReviewTask.__table__, "item_id", "state", dict.fromkeys(done, TaskState.DONE))
    return sum(r["item_id"] not in stored for r in labels) + len(changed)


def review_round_answers(engine: Engine, *, details: bool = False) -> list[tuple[str, str, str, Any]]:
    """(segment, item_id, annotator, label) of each annotator's latest review-round answer per item, or with
    `details` (segment, item_id, annotator, answer) of those with an answer beyond the label. An expert's answer
    to an escalated item settles it and is not a review-round answer; a skipped (cancelled) one is no answer."""
    column = Annotation.answer if details else Annotation.label
    # every part not-null, so that the negation below is true (not NULL) for everything but an expert's answer
    expert_answer = and_(ReviewTask.queue == Queue.EXPERT, ReviewTask.ls_task_id.is_not(None),
                         Annotation.ls_task_id.is_not(None), Annotation.ls_task_id == ReviewTask.ls_task_id)
    with engine.connect() as conn:
        rows = conn.execute(
            select(Item.segment, Annotation.item_id, Annotation.annotator, column)
            .join(Item, Item.id == Annotation.item_id)
            .join(ReviewTask, ReviewTask.item_id == Annotation.item_id, isouter=True)
            .where(column.is_not(None), Annotation.was_cancelled.is_(False),
                   or_(ReviewTask.id.is_(None), ~expert_answer))
            .order_by(Annotation.external_updated_at, Annotation.id)
        ).tuples().all()
    return list({(r[1], r[2]): r for r in rows}.values())  # in update order: the latest answer wins
