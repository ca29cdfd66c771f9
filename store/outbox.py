"""The outbox of review tasks: which tasks wait to be pushed and in which batches, and their push record.

A task row is written before anything is sent to Label Studio; a batch key is given (and committed) before its
batch is pushed, so a retried push finds the same batch and reconciles it instead of sending it twice.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Engine, bindparam, func, insert, select, update
from sqlmodel import Session

from store.bulk import chunked, existing_keys, insert_ignore
from store.models import (
    BacklogDraw, Item, Label, ReviewDraw, ReviewTask, RoutingBatch, RoutingDecision, Watermark, as_utc, utcnow,
)
from store.transitions import move_items
from store.vocab import ItemKind, LabelSource, Queue, Split, TaskState

__all__ = [
    "OutboxRow",
    "OutboxTask",
    "PendingBatch",
    "PushedTask",
    "WaitingGroup",
    "assign_batch_keys",
    "count_push_attempt",
    "drawn_decisions",
    "extraction_fields",
    "has_expert_tasks",
    "mark_pushed",
    "outbox_batch",
    "pending_batches",
    "pending_tasks",
    "pushed_tasks",
    "queue_kinds",
    "waiting_by_reason",
    "record_push_error",
    "unsent_held_out_seeds",
    "write_selection",
]


def assign_batch_keys(engine: Engine, *, chunk: int, queues: Iterable[str] = (Queue.REVIEW, Queue.EXPERT)) -> None:
    """Give every pending task without one a batch key, `chunk` tasks a batch, each batch of one queue and one
    item kind (each kind has its own Label Studio project), in priority order (highest first); committed before
    anything is sent."""
    with engine.begin() as conn:
        rows = conn.execute(
            select(ReviewTask.id, ReviewTask.queue, Item.kind).join(Item, Item.id == ReviewTask.item_id)
            .where(ReviewTask.state == TaskState.PENDING, ReviewTask.batch_key.is_(None))
            .order_by(ReviewTask.priority.desc(), ReviewTask.id)
        ).all()
        for queue_name in queues:
            for kind in sorted({r.kind for r in rows}):
                ids = [r.id for r in rows if r.queue == queue_name and r.kind == kind]
                for part in chunked(ids, chunk):
                    conn.execute(update(ReviewTask).where(ReviewTask.id.in_(part))
                                 .values(batch_key=uuid.uuid4().hex))


class PendingBatch(NamedTuple):
    batch_key: str | None
    queue: str
    kind: str = ItemKind.CLASSIFICATION


def pending_batches(engine: Engine) -> list[PendingBatch]:
    """The distinct (batch key, queue, item kind) of the pending tasks."""
    query = (select(ReviewTask.batch_key, ReviewTask.queue, Item.kind).join(Item, Item.id == ReviewTask.item_id)
             .where(ReviewTask.state == TaskState.PENDING).distinct())
    with engine.connect() as conn:
        return [PendingBatch(row.batch_key, row.queue, row.kind) for row in conn.execute(query)]


def queue_kinds(engine: Engine) -> list[tuple[str, str]]:
    """The (queue, item kind) pairs that ever had a task: the Label Studio projects there is something to pull
    from."""
    query = (select(ReviewTask.queue, Item.kind).join(Item, Item.id == ReviewTask.item_id).distinct())
    with engine.connect() as conn:
        return sorted((row.queue, row.kind) for row in conn.execute(query))


class OutboxRow(NamedTuple):
    """A pending task of a batch with its item's text and features (an LLM kind's payload, and the threshold
    its decision routed on, which picks the extraction fields that need people)."""

    task: ReviewTask
    text: str | None
    features: Any
    kind: str = ItemKind.CLASSIFICATION
    payload: Any = None
    threshold: float | None = None
    calibrated_confidence: float | None = None
    reasons: Any = None


def outbox_batch(engine: Engine, batch_key: str) -> list[OutboxRow]:
    """The pending outbox rows of a batch with their items' text, features, kind and payload, and what their
    routing decision said (threshold, calibrated confidence, reasons)."""
    # joined directly: SQLite cannot flatten a joined subquery on the right of a LEFT JOIN and would read every
    # decision for each batch
    query = (select(ReviewTask, Item.text, Item.features, Item.kind, Item.payload, RoutingBatch.threshold,
                    RoutingDecision.calibrated_confidence, RoutingDecision.reasons)
             .join(Item, Item.id == ReviewTask.item_id)
             .outerjoin(RoutingDecision, RoutingDecision.id == ReviewTask.decision_id)
             .outerjoin(RoutingBatch, RoutingBatch.id == RoutingDecision.batch_id)
             .where(ReviewTask.batch_key == batch_key, ReviewTask.state == TaskState.PENDING))
    with Session(engine, expire_on_commit=False) as session:
        # SQLModel types exec() for its own select() only; a SQLAlchemy select runs as with execute()
        rows = session.exec(query).all()  # type: ignore[call-overload]
        return [OutboxRow(row.ReviewTask, row.text, row.features, row.kind, row.payload, row.threshold,
                          row.calibrated_confidence, row.reasons) for row in rows]


_FIELDS_MARK = "outbox:extraction_fields"


def extraction_fields(engine: Engine) -> list[str]:
    """Every field name the extraction items sent to people carry, in first-seen order: the text areas of the
    extraction queue (which only grows). Kept in a watermark with the last task read, so each call reads only the
    extraction tasks written since, not every payload ever queued."""
    with engine.begin() as conn:
        mark = conn.execute(select(Watermark.value).where(Watermark.name == _FIELDS_MARK)).scalar()
        known: dict[str, Any] = json.loads(mark) if mark else {"last_task": 0, "fields": []}
        rows = conn.execute(
            select(ReviewTask.id, Item.payload).join(Item, Item.id == ReviewTask.item_id)
            .where(Item.kind == ItemKind.EXTRACTION, ReviewTask.id > known["last_task"]).order_by(ReviewTask.id)
        ).all()
        if not rows:
            return list(known["fields"])
        names = dict.fromkeys(known["fields"])
        for row in rows:
            names.update(dict.fromkeys((row.payload or {}).get("fields") or {}))
        value = json.dumps({"last_task": rows[-1].id, "fields": list(names)})
        if mark is None:
            conn.execute(insert(Watermark).values(name=_FIELDS_MARK, value=value, updated_at=utcnow()))
        else:
            conn.execute(update(Watermark).where(Watermark.name == _FIELDS_MARK).values(value=value,
                                                                                        updated_at=utcnow()))
    return list(names)


def count_push_attempt(engine: Engine, batch_key: str) -> None:
    """One more push attempt for every task of the batch."""
    with engine.begin() as conn:
        conn.execute(update(ReviewTask).where(ReviewTask.batch_key == batch_key)
                     .values(attempts=ReviewTask.attempts + 1))


def record_push_error(engine: Engine, batch_key: str, error: str) -> None:
    """Keep the reason a batch's push failed (its first 2,000 characters) on its tasks."""
    with engine.begin() as conn:
        conn.execute(update(ReviewTask).where(ReviewTask.batch_key == batch_key).values(last_error=error[:2000]))


def mark_pushed(engine: Engine, project_id: int, task_ids: Mapping[str, int], *, at: datetime) -> None:
    """Mark each item's pending task pushed, as Label Studio task `task_ids[item]` of `project_id` (one executemany,
    not one statement per task); a task pushed already is left as it is."""
    if not task_ids:
        return
    table = ReviewTask.__table__
    statement = (
        table.update().where(table.c.item_id == bindparam("b_item"), table.c.state == TaskState.PENDING)
        .values(state=TaskState.PUSHED, ls_task_id=bindparam("b_task"), project_id=project_id, pushed_at=at,
                last_error=None)
    )
    with engine.begin() as conn:
        conn.execute(statement, [{"b_item": item_id, "b_task": task_id} for item_id, task_id in task_ids.items()])


def has_expert_tasks(engine: Engine) -> bool:
    """Whether any task was ever sent to the expert queue."""
    with engine.connect() as conn:
        return conn.execute(select(ReviewTask.id).where(ReviewTask.queue == Queue.EXPERT).limit(1)).first() is not None


class WaitingGroup(NamedTuple):
    """Tasks not answered yet of one queue, item kind, state and selection reason, with the oldest one's age."""

    queue: str
    kind: str
    state: str
    selection_reason: str
    tasks: int
    oldest: datetime | None


def waiting_by_reason(engine: Engine) -> list[WaitingGroup]:
    """Every group of unanswered tasks (pending: not in Label Studio yet; pushed: waiting for people), by queue,
    item kind, state and selection reason, with when the oldest was written."""
    query = (select(ReviewTask.queue, Item.kind, ReviewTask.state, ReviewTask.selection_reason,
                    func.count(), func.min(ReviewTask.created_at))
             .join(Item, Item.id == ReviewTask.item_id)
             .where(ReviewTask.state != TaskState.DONE)
             .group_by(ReviewTask.queue, Item.kind, ReviewTask.state, ReviewTask.selection_reason)
             .order_by(ReviewTask.queue, Item.kind, ReviewTask.state, ReviewTask.selection_reason))
    with engine.connect() as conn:
        return [WaitingGroup(q, k, st, r, n, as_utc(oldest)) for q, k, st, r, n, oldest in conn.execute(query)]


class OutboxTask(NamedTuple):
    id: int
    item_id: str


def pending_tasks(engine: Engine) -> list[OutboxTask]:
    """Every pending task, in the order written."""
    query = select(ReviewTask.id, ReviewTask.item_id).where(ReviewTask.state == TaskState.PENDING).order_by(ReviewTask.id)
    with engine.connect() as conn:
        return [OutboxTask(row.id, row.item_id) for row in conn.execute(query)]


class PushedTask(NamedTuple):
    ls_task_id: int
    item_id: str


def pushed_tasks(engine: Engine) -> list[PushedTask]:
    """Every task in Label Studio and not answered yet, in the order written."""
    query = (select(ReviewTask.ls_task_id, ReviewTask.item_id)
             .where(ReviewTask.state == TaskState.PUSHED, ReviewTask.ls_task_id.is_not(None)).order_by(ReviewTask.id))
    with engine.connect() as conn:
        return [PushedTask(row.ls_task_id, row.item_id) for row in conn.execute(query)]


def drawn_decisions(engine: Engine, decision_ids: list[int]) -> set[int]:
    """Those of `decision_ids` an earlier select already drew for review (the active strategy draws a decision
    once)."""
    with engine.connect() as conn:
        return set(existing_keys(conn, ReviewDraw.__table__.c.decision_id, decision_ids))


def unsent_held_out_seeds(engine: Engine, segment: str) -> list[str]:
    """The held-out seed items of `segment` never sent to people, in id order: the candidates for gold tasks."""
    with engine.connect() as conn:
        return list(conn.execute(
            select(Label.item_id).join(Item, Item.id == Label.item_id)
            .where(Label.source == LabelSource.SEED, Label.split == Split.HOLDOUT, Item.segment == segment,
                   Label.item_id.not_in(select(ReviewTask.item_id)))
            .order_by(Label.item_id)
        ).scalars().all())


def write_selection(engine: Engine, *, draws: list[dict[str, Any]], population: list[dict[str, Any]],
                    tasks: list[dict[str, Any]], queued: Mapping[str, str]) -> None:
    """What one select batch planned, in one transaction: the active draw's rows, the backlog population its
    strategies left waiting, the review tasks, and the move of the queued items (``store.transitions``)."""
    with engine.begin() as conn:
        insert_ignore(conn, ReviewDraw.__table__, draws)
        insert_ignore(conn, BacklogDraw.__table__, population)
        insert_ignore(conn, ReviewTask.__table__, tasks)
        move_items(conn, dict(queued), by="select")
