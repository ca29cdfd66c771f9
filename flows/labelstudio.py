"""Push and pull flows: the outbox of review tasks into Label Studio, completed annotations back into labels."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine, select, update
from sqlmodel import Session

from flows.common import (
    active_policy, engine_for, get_watermark, promoted_model, record_event, set_watermark, utcnow,
)
from labeling.client import LabelStudioQueue, TaskSpec
from labeling.errors import LabelStudioApiError, LabelStudioError
from labeling.resolve import HumanAnswer, resolve_items, upsert_annotations
from store.bulk import chunked, existing_keys
from store.models import Item, ReviewTask
from store.settings import get_settings

PUSH_CHUNK = 500
PULL_OVERLAP = timedelta(seconds=2)


def project_labels(engine: Engine) -> list[str]:
    policy, _ = active_policy(engine)
    if policy.labels:
        return list(policy.labels)
    model = promoted_model(engine)
    if model is None or not model.classes:
        raise ValueError("no label set: give the policy `labels:` or promote a model first")
    return list(model.classes)


def open_queue(engine: Engine, *, retries: int = 4) -> tuple[LabelStudioQueue, int]:
    settings = get_settings()
    queue = LabelStudioQueue.from_settings(settings, retries=retries)
    return queue, queue.ensure_project(settings.labelstudio_project, project_labels(engine))


def assign_batch_keys(engine: Engine, *, chunk: int = PUSH_CHUNK) -> None:
    """Give every pending outbox row without one a batch key, committed before anything is sent."""
    with engine.begin() as conn:
        ids = conn.execute(
            select(ReviewTask.id).where(ReviewTask.state == "pending", ReviewTask.batch_key.is_(None))
            .order_by(ReviewTask.priority.desc(), ReviewTask.id)
        ).scalars().all()
        for part in chunked(list(ids), chunk):
            conn.execute(update(ReviewTask).where(ReviewTask.id.in_(part)).values(batch_key=uuid.uuid4().hex))


def _spec(row: ReviewTask, text: str | None, features: Any) -> TaskSpec:
    return TaskSpec(
        item_id=row.item_id, text=text if text is not None else json.dumps(features), batch_key=row.batch_key or "",
        priority=row.priority, selection_reason=row.selection_reason,
        model_version=row.model_version if row.predicted_label and not row.blind else None,
        predicted_label=None if row.blind else row.predicted_label, score=None if row.blind else row.score,
    )


def outbox_batch(engine: Engine, batch_key: str) -> list[tuple[ReviewTask, str | None, Any]]:
    """The pending outbox rows of a batch with their items' text and features."""
    with Session(engine, expire_on_commit=False) as session:
        return [tuple(r) for r in session.exec(
            select(ReviewTask, Item.text, Item.features).join(Item, Item.id == ReviewTask.item_id)
            .where(ReviewTask.batch_key == batch_key, ReviewTask.state == "pending")
        ).all()]


@task(name="push-batch", cache_policy=NO_CACHE)
def push_batch(batch_key: str, project_id: int, database_url: str | None) -> int:
    """Push one outbox batch; a batch tried before is first reconciled with what Label Studio already holds."""
    engine = engine_for(database_url)
    rows = outbox_batch(engine, batch_key)
    if not rows:
        return 0
    queue, _ = open_queue(engine)
    arrived: dict[str, int] = {}
    if any(r[0].attempts > 0 for r in rows):
        arrived = queue.tasks_for_batch(project_id, batch_key)
    with engine.begin() as conn:
        conn.execute(update(ReviewTask).where(ReviewTask.batch_key == batch_key)
                     .values(attempts=ReviewTask.attempts + 1))
    missing = [r for r in rows if r[0].item_id not in arrived]
    try:
        ids = queue.import_tasks(project_id, [_spec(*r) for r in missing], chunk_size=PUSH_CHUNK)
    except LabelStudioError as error:
        with engine.begin() as conn:
            conn.execute(update(ReviewTask).where(ReviewTask.batch_key == batch_key)
                         .values(last_error=str(error)[:2000]))
        raise
    arrived.update(zip((r[0].item_id for r in missing), ids))
    now = utcnow()
    with engine.begin() as conn:
        for item_id, task_id in arrived.items():
            conn.execute(
                update(ReviewTask).where(ReviewTask.item_id == item_id, ReviewTask.state == "pending")
                .values(state="pushed", ls_task_id=task_id, project_id=project_id, pushed_at=now, last_error=None)
            )
    return len(arrived)


def keep_model_version_current(engine: Engine, queue: LabelStudioQueue, project_id: int) -> None:
    """Label Studio's uncertainty sampling follows project.model_version, which it never updates itself."""
    model = promoted_model(engine)
    if model is None:
        return
    key = f"labelstudio:{project_id}:model_version"
    if get_watermark(engine, key) == model.version:
        return
    try:
        queue.set_model_version(project_id, model.version)
    except LabelStudioApiError as error:
        # Label Studio accepts only a version some task already has predictions from
        get_run_logger().warning("push: Label Studio kept its model_version: %s", error)
        return
    set_watermark(engine, key, model.version)


@flow(name="push", log_prints=True)
def push_flow(database_url: str | None = None) -> dict[str, Any]:
    """Send the pending outbox to Label Studio in chunks; what fails stays pending for the next run."""
    logger = get_run_logger()
    engine = engine_for(database_url)
    assign_batch_keys(engine)
    with engine.connect() as conn:
        keys = conn.execute(
            select(ReviewTask.batch_key).where(ReviewTask.state == "pending").distinct()
        ).scalars().all()
    if not keys:
        return {"pushed": 0, "pending": 0}
    try:
        queue, project_id = open_queue(engine)
    except LabelStudioError as error:
        logger.error("push: Label Studio is unavailable, %d batch(es) stay queued: %s", len(keys), error)
        return {"pushed": 0, "pending": len(keys), "error": str(error)}
    pushed, failed, errors = 0, 0, []
    for key in sorted(keys):
        try:
            pushed += push_batch(key, project_id, database_url)
        except LabelStudioError as error:
            failed += 1
            errors.append(str(error))
    if pushed:
        keep_model_version_current(engine, queue, project_id)
    summary = {"pushed": pushed, "failed_batches": failed, "project_id": project_id}
    if errors:
        summary["error"] = errors[0]
        logger.error("push: %d batch(es) stay queued for the next run: %s", failed, errors[0])
    record_event(engine, "push", summary)
    logger.info("push: %s", summary)
    return summary


@flow(name="pull", log_prints=True)
def pull_flow(cycle: int | None = None, database_url: str | None = None) -> dict[str, Any]:
    """Pull annotations completed since the watermark, upsert them, resolve labels into the training set."""
    logger = get_run_logger()
    engine = engine_for(database_url)
    try:
        queue, project_id = open_queue(engine)
        key = f"labelstudio:{project_id}:updated_at"
        mark = get_watermark(engine, key)
        since = datetime.fromisoformat(mark) - PULL_OVERLAP if mark else None
        pulled = queue.pull_annotations(project_id, since=since)
    except LabelStudioError as error:
        logger.error("pull: Label Studio is unavailable; nothing pulled, the watermark stays: %s", error)
        return {"pulled": 0, "error": str(error)}
    answers = [
        HumanAnswer(source="labelstudio", external_id=a.annotation_id, item_id=a.item_id, label=a.label,
                    annotator=a.annotator, was_cancelled=a.was_cancelled, updated_at=a.updated_at,
                    task_id=a.task_id)
        for a in pulled
    ]
    known = _known_items(engine, [a.item_id for a in answers])
    answers = [a for a in answers if a.item_id in known]
    new, changed = upsert_annotations(engine, answers)
    resolved = resolve_items(engine, [a.item_id for a in answers], cycle=cycle)
    if pulled:
        set_watermark(engine, key, max(a.updated_at for a in pulled).isoformat())
    summary = {"pulled": len(pulled), "new": new, "updated": changed, "resolved": resolved,
               "unknown_items": len(pulled) - len(answers)}
    logger.info("pull: %s", summary)
    return summary


def _known_items(engine: Engine, item_ids: list[str]) -> set[str]:
    with engine.connect() as conn:
        return existing_keys(conn, Item.__table__.c.id, item_ids)
