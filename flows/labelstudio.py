"""Push and pull flows: the outbox of review tasks into Label Studio, completed annotations back into labels."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache, partial
from typing import Any, cast

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine

from flows.common import StepFailed, engine_for, holds_store_lock, resolution_rules, utcnow
from labeling import kinds
from labeling.client import LabelStudioQueue, TaskSpec
from labeling.queue import QUEUE_MODEL_VERSION, project_instructions, queue_score, task_note
from labeling.errors import LabelStudioApiError, LabelStudioError
from labeling.resolve import resolve_items
from store.annotations import HumanAnswer, upsert_annotations
from store import outbox
from store.db import refresh_statistics
from store.models import ReviewTask
from store.outbox import outbox_batch
from store.decisions import known_items
from store.events import get_watermark, record_event, set_watermark
from store.policies import active_policy
from store.registry import promoted_model
from routing.draws import a_on_left as a_on_left_draw
from store.settings import SluiceSettings, settings_or_environment
from store.vocab import ItemKind, Queue

PUSH_CHUNK = 1000  # tasks per batch and per import request: fewer round trips, a retry stays small
PULL_OVERLAP = timedelta(seconds=2)
TITLE_LIMIT = 50  # characters of a Label Studio project title
QUEUES = (Queue.REVIEW, Queue.EXPERT)  # each a Label Studio project; disagreements escalate from the first to the second


def project_labels(engine: Engine) -> list[str]:
    policy, _ = active_policy(engine)
    if policy.labels:
        return list(policy.labels)
    model = promoted_model(engine)
    if model is None or not model.classes:
        raise ValueError("no label set: give the policy `labels:` or promote a model first")
    return list(model.classes)


def _has_label_set(engine: Engine) -> bool:
    try:
        return bool(project_labels(engine))
    except ValueError:
        return False


def project_title(settings: SluiceSettings, queue_name: str, kind: str = ItemKind.CLASSIFICATION) -> str:
    """The Label Studio project of a queue and item kind: the configured one for the review of classifications,
    `<it>: generation` (pairwise, extraction) for the outputs of LLM pipelines, with ` (expert)` for experts."""
    if queue_name not in QUEUES:
        raise ValueError(f"queue must be one of {QUEUES}, got {queue_name!r}")
    if kind not in tuple(ItemKind):
        raise ValueError(f"kind must be one of {[k.value for k in ItemKind]}, got {kind!r}")
    suffix = ("" if kind == ItemKind.CLASSIFICATION else f": {kind}") + (
        "" if queue_name == Queue.REVIEW else " (expert)")
    base = settings.labelstudio_project
    if len(base) + len(suffix) > TITLE_LIMIT:  # Label Studio refuses longer titles: shorten, keep it unique
        digest = hashlib.sha256(base.encode()).hexdigest()[:6]
        base = f"{base[:TITLE_LIMIT - len(suffix) - len(digest) - 1]}~{digest}"
    return base + suffix


def open_queue(engine: Engine, settings: SluiceSettings | None = None, *, retries: int = 4,
               queue_name: str = Queue.REVIEW, kind: str = ItemKind.CLASSIFICATION) -> tuple[LabelStudioQueue, int]:
    """The client of the settings' Label Studio (the environment's when None) and the id of the project of the
    queue and item kind in it, created if missing: the store's labels for classifications, the kind's own
    config otherwise (`labeling.kinds`)."""
    settings = settings_or_environment(settings)
    queue = queue_client(settings, retries=retries)
    title = project_title(settings, queue_name, kind)
    policy, _ = active_policy(engine)
    instructions = project_instructions(kind, target=policy.defaults.max_auto_error,
                                        expert_issues=policy.defaults.expert_issues)
    if kind == ItemKind.CLASSIFICATION:
        return queue, queue.ensure_project(title, project_labels(engine), instructions=instructions)
    fields = outbox.extraction_fields(engine) if kind == ItemKind.EXTRACTION else ()
    return queue, queue.ensure_project(title, config=kinds.queue_config(kind, fields=fields),
                                       instructions=instructions)


def queue_client(settings: SluiceSettings, *, retries: int = 4) -> LabelStudioQueue:
    """One API client per Label Studio address, token and retry count, so that its connection pool is reused."""
    return _client(settings.resolved_labelstudio_url, settings.labelstudio_credentials().token, retries)


@lru_cache(maxsize=8)
def _client(url: str, token: str, retries: int) -> LabelStudioQueue:
    return LabelStudioQueue(url, token, retries=retries)


def assign_batch_keys(engine: Engine, *, chunk: int = PUSH_CHUNK) -> None:
    """Give every pending outbox row without one a batch key (one queue per batch), committed before anything
    is sent."""
    outbox.assign_batch_keys(engine, chunk=chunk, queues=QUEUES)


def _spec(row: ReviewTask, text: str | None, features: Any, kind: str = ItemKind.CLASSIFICATION,
          payload: Any = None, threshold: float | None = None, calibrated: float | None = None,
          reasons: Any = None) -> TaskSpec:
    shown = row.predicted_label if not row.blind else None
    data = suggested = None
    if kind != ItemKind.CLASSIFICATION:
        # the pairwise side: a fixed fair coin per decision, so a retried push shows the pair the same way
        a_on_left = bool(a_on_left_draw([row.decision_id if row.decision_id is not None else row.id or 0])[0])
        data = kinds.task_data(kind, row.item_id, text or "", payload or {}, a_on_left=a_on_left,
                               threshold=threshold)
        suggested = kinds.suggestion(kind, data, shown) if shown else None
    return TaskSpec(
        item_id=row.item_id, text=text if text is not None else json.dumps(features), batch_key=row.batch_key or "",
        priority=row.priority, selection_reason=row.selection_reason,
        model_version=row.model_version if shown else None,
        predicted_label=shown, score=None if row.blind else row.score, data=data, suggestion=suggested,
        queue_score=queue_score(row.queue, row.selection_reason, row.priority),
        note=task_note(row.selection_reason, calibrated_confidence=calibrated, reasons=list(reasons or ()),
                       blind=row.blind),
    )


@task(name="push-batch", cache_policy=NO_CACHE)
def push_batch(batch_key: str, project_id: int, settings: SluiceSettings) -> int:
    """Push one outbox batch; a batch tried before is first reconciled with what Label Studio already holds."""
    engine = engine_for(settings)
    rows = outbox_batch(engine, batch_key)
    if not rows:
        return 0
    queue = queue_client(settings)
    arrived: dict[str, int] = {}
    if any(r.task.attempts > 0 for r in rows):
        arrived = queue.tasks_for_batch(project_id, batch_key)
    outbox.count_push_attempt(engine, batch_key)
    missing = [r for r in rows if r.task.item_id not in arrived]
    try:
        ids = queue.import_tasks(project_id, [_spec(*r) for r in missing],
                                 chunk_size=PUSH_CHUNK)
    except LabelStudioError as error:
        outbox.record_push_error(engine, batch_key, str(error))
        raise
    arrived.update(zip((r.task.item_id for r in missing), ids))
    # Label Studio gives every imported task the project's overlap (1); the overlapped ones are raised one by
    # one. Setting it is idempotent, so a retried batch simply sets it again.
    for row in (r.task for r in rows):
        if row.overlap > 1 and row.item_id in arrived:
            queue.set_overlap(arrived[row.item_id], row.overlap)
    outbox.mark_pushed(engine, project_id, arrived, at=utcnow())
    return len(arrived)


def keep_queue_order(engine: Engine, queue: LabelStudioQueue, project_id: int) -> None:
    """Make the project's label stream serve Sluice's order: its uncertainty sampling follows the predictions of
    project.model_version, which every pushed task carries as `QUEUE_MODEL_VERSION` (`labeling.queue`), whatever
    model scored it. Set once per project."""
    key = f"labelstudio:{project_id}:model_version"
    if get_watermark(engine, key) == QUEUE_MODEL_VERSION:
        return
    try:
        queue.set_model_version(project_id, QUEUE_MODEL_VERSION)
    except LabelStudioApiError as error:
        # Label Studio accepts only a version some task already has predictions from
        get_run_logger().warning("push: Label Studio kept its model_version: %s", error)
        return
    set_watermark(engine, key, QUEUE_MODEL_VERSION)


@dataclass
class PushTally:
    """What one push run did so far: tasks pushed, batches failed and why, the projects in the order batches went
    (their queue order is refreshed after), and the classification review project."""

    pushed: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    projects: list[int] = field(default_factory=list)
    project_id: int | None = None


def push_queue(engine: Engine, settings: SluiceSettings, queue_name: str, kind: str, batches: list[str],
               tally: PushTally, *, pending: int) -> None:
    """Push the batches of one queue and item kind. A queue that cannot be made (no label set to ask about) counts
    its batches failed and the others go on; Label Studio unreachable or refusing the token fails the whole push,
    everything staying queued."""
    try:
        _, queue_project = open_queue(engine, settings, queue_name=queue_name, kind=kind)
    except LabelStudioError as error:
        record_event(engine, "push_failed", {"pushed": tally.pushed, "pending": pending, "error": str(error)})
        raise StepFailed(f"push: Label Studio is unavailable, {pending} batch(es) stay queued: {error}") from error
    except ValueError as error:
        tally.failed += len(batches)
        tally.errors.append(f"the {queue_name} queue of {kind} items: {error}")
        return
    if queue_name == Queue.REVIEW and kind == ItemKind.CLASSIFICATION:
        tally.project_id = queue_project
    for key in batches:
        try:
            tally.pushed += push_batch(key, queue_project, settings)
            tally.projects.append(queue_project)
        except LabelStudioError as error:
            tally.failed += 1
            tally.errors.append(str(error))


@flow(name="push", log_prints=True)
@holds_store_lock
def push_flow(settings: SluiceSettings | None = None) -> dict[str, Any]:
    """Send the pending outbox to the settings' Label Studio in chunks; what fails stays pending for the next run."""
    logger = get_run_logger()
    settings = settings_or_environment(settings)
    engine = engine_for(settings)
    assign_batch_keys(engine)
    keys = outbox.pending_batches(engine)
    if not keys:
        return {"pushed": 0, "pending": 0}
    tally = PushTally()
    for queue_name, kind in [(q, k) for q in QUEUES for k in ItemKind]:
        # every pending task has a batch key by now (assign_batch_keys above)
        batches = sorted(cast(str, b.batch_key) for b in keys if b.queue == queue_name and b.kind == kind)
        if batches:
            push_queue(engine, settings, queue_name, kind, batches, tally, pending=len(keys))
    for pushed_to in dict.fromkeys(tally.projects):
        keep_queue_order(engine, queue_client(settings), pushed_to)
    summary: dict[str, Any] = {"pushed": tally.pushed, "failed_batches": tally.failed,
                               "project_id": tally.project_id}
    if tally.errors:
        summary["error"] = tally.errors[0]
    record_event(engine, "push" if not tally.errors else "push_failed", summary)
    if tally.errors:
        raise StepFailed(f"push: {tally.failed} batch(es) failed and stay queued for the next run ({tally.pushed} "
                         f"task(s) pushed): {tally.errors[0]}")
    logger.info("push: %s", summary)
    return summary


@flow(name="pull", log_prints=True)
@holds_store_lock
def pull_flow(cycle: int | None = None, settings: SluiceSettings | None = None) -> dict[str, Any]:
    """Pull annotations completed since the watermark from the settings' Label Studio, upsert them, resolve labels
    into the training set."""
    logger = get_run_logger()
    settings = settings_or_environment(settings)
    engine = engine_for(settings)
    rules = resolution_rules(engine)
    summary: dict[str, Any] = {"pulled": 0, "new": 0, "updated": 0, "resolved": 0, "escalated": 0, "waiting": 0,
                               "unknown_items": 0}
    for queue_name, kind in projects_to_pull(engine):
        try:
            pulled = pull_queue(engine, settings, queue_name, cycle, rules, kind=kind)
        except LabelStudioError as error:
            record_event(engine, "pull_failed", {**summary, "queue": queue_name, "error": str(error)})
            raise StepFailed(f"pull: Label Studio is unavailable; the {queue_name} watermark stays: {error}") \
                from error
        for name, value in pulled.items():
            summary[name] += value
    if summary["new"] or summary["updated"]:
        refresh_statistics(engine, "annotations", "labels", "review_tasks", "item_states")
    record_event(engine, "pull", summary)
    logger.info("pull: %s", summary)
    return summary


def projects_to_pull(engine: Engine) -> list[tuple[str, str]]:
    """(queue, item kind) of every project to read: the review of classifications whenever the store has labels to
    give (annotations made in Label Studio directly count), the others once a task went to them (the expert queues
    only while the store has expert tasks)."""
    always = [(Queue.REVIEW, ItemKind.CLASSIFICATION)] if _has_label_set(engine) else []
    expert_tasks = outbox.has_expert_tasks(engine)
    return [(queue_name, kind) for queue_name, kind in dict.fromkeys([*always, *outbox.queue_kinds(engine)])
            if queue_name != Queue.EXPERT or expert_tasks]


def pull_queue(engine: Engine, settings: SluiceSettings, queue_name: str, cycle: int | None,
               rules: Any, *, kind: str = ItemKind.CLASSIFICATION) -> dict[str, int]:
    """Pull one queue's project page by page: each page's annotations are stored before the next is read; then
    everything pulled is resolved in one pass (Dawid-Skene on the whole fit), and only then does the watermark
    move. A pull stopped half-way leaves complete pages of annotations and no label made on a partial fit; the
    next one reads from the same watermark and upserts on annotation id, so nothing is lost or doubled."""
    queue, project_id = open_queue(engine, settings, queue_name=queue_name, kind=kind)
    read = None if kind == ItemKind.CLASSIFICATION else partial(kinds.read_answer, kind)
    key = f"labelstudio:{project_id}:updated_at"
    mark = get_watermark(engine, key)
    since = datetime.fromisoformat(mark) - PULL_OVERLAP if mark else None
    counts = {"pulled": 0, "new": 0, "updated": 0, "unknown_items": 0}
    latest, touched = None, []
    for page in queue.annotation_pages(project_id, since=since, read=read):
        answers = [
            HumanAnswer(source="labelstudio", external_id=a.annotation_id, item_id=a.item_id, label=a.label,
                        annotator=a.annotator, was_cancelled=a.was_cancelled, updated_at=a.updated_at,
                        task_id=a.task_id, answer=a.answer)
            for a in page
        ]
        known = known_items(engine, [a.item_id for a in answers])
        answers = [a for a in answers if a.item_id in known]
        new, changed = upsert_annotations(engine, answers)
        touched += [a.item_id for a in answers]
        counts["pulled"] += len(page)
        counts["new"], counts["updated"] = counts["new"] + new, counts["updated"] + changed
        counts["unknown_items"] += len(page) - len(answers)
        if page:
            newest = max(a.updated_at for a in page)
            latest = newest if latest is None or newest > latest else latest
    # with every answer in: Dawid-Skene labels and escalations from the whole fit, the same whether or not an
    # earlier pull was killed half-way
    outcome = resolve_items(engine, touched, cycle=cycle, rules=rules)
    if latest is not None:
        set_watermark(engine, key, latest.isoformat())
    return {**counts, "resolved": outcome.resolved, "escalated": outcome.escalated, "waiting": outcome.waiting}
