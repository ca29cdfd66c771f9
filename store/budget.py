"""What a segment's label budget has paid for in a budget window: every human label its tasks ask for.

A policy's `review_budget` covers every label it asks people for in a window: audits (spot checks and the audit
share of review items), escalations, budgeted reviews, gold tasks and the extra answers of overlapped tasks (a task
answered by three annotators costs three labels). The route flow sizes the window's audits by what is left of it,
the select flow the rest (see `flows/select.py`).
"""

from __future__ import annotations

from datetime import datetime

from typing import Any

from sqlalchemy import Engine, func, select

from routing.policy import Policy, budget_window
from store.bulk import chunked
from store.models import ItemStateRow, ReviewTask, utcnow
from store.vocab import Selection

# How the cycle report and `policy show` name what a task's labels paid for
_SPLIT_OF: dict[str, str] = {
    Selection.AUDIT: "audit", Selection.ESCALATION: "escalation", Selection.GOLD: "gold"}

__all__ = ["cycle_split", "spent_by_reason", "spent_this_window", "window_split"]


def spent_this_window(engine: Engine, policy: Policy, segments: list[str],
                      now: datetime) -> dict[str, dict[str, int]]:
    """Per segment, the labels the tasks of its current budget window (its policy's `budget_window_hours` around
    `now`) ask for, by selection reason (a task counts its overlap), in any cycle or in none: what one step spent,
    the next in the same window cannot. One read per distinct window."""
    by_window: dict[tuple[datetime, datetime], list[str]] = {}
    for segment in segments:
        by_window.setdefault(budget_window(now, policy.for_segment(segment).budget_window_hours), []).append(segment)
    return {segment: by_reason for window, names in by_window.items()
            for segment, by_reason in spent_by_reason(engine, names, window).items()}


def spent_by_reason(engine: Engine, segments: list[str] | None,
                    window: tuple[datetime, datetime]) -> dict[str, dict[str, int]]:
    """Per segment (every segment with tasks when `segments` is None), the labels its tasks created in `window`
    ask for, by selection reason."""
    return {segment: {reason: labels for reason, (labels, _) in by_reason.items()}
            for segment, by_reason in _asked(engine, segments, ReviewTask.created_at >= window[0],
                                             ReviewTask.created_at < window[1]).items()}


def _asked(engine: Engine, segments: list[str] | None, *where: Any) -> dict[str, dict[str, tuple[int, int]]]:
    """Per segment and selection reason: (labels asked, tasks) of the tasks matching `where`. Each task's segment
    is its item's, read from the item's narrow state row (``ItemStateRow.segment``), never from the items' wide
    rows: joining the items made SQLite scan them when one segment was asked for (15 ms at 200,000 items of three
    words and no task at all, and growing with the texts)."""
    query = (
        select(ItemStateRow.segment, ReviewTask.selection_reason, func.sum(ReviewTask.overlap), func.count())
        .select_from(ReviewTask).join(ItemStateRow, ItemStateRow.item_id == ReviewTask.item_id).where(*where)
        .group_by(ItemStateRow.segment, ReviewTask.selection_reason)
    )
    found: dict[str, dict[str, tuple[int, int]]] = {}
    with engine.connect() as conn:
        parts = [conn.execute(query).all()] if segments is None else [
            conn.execute(query.where(ItemStateRow.segment.in_(part))).all() for part in chunked(segments, 5_000)]
        for rows in parts:
            for segment, reason, labels, tasks in rows:
                found.setdefault(segment, {})[reason] = (int(labels or 0), int(tasks))
    return found


def _split(by_reason: dict[str, tuple[int, int]]) -> dict[str, int]:
    """Labels asked by what they paid for: audit, escalation, review (every budgeted pick), gold, and the extra
    answers of overlapped tasks apart; with the total."""
    split = dict.fromkeys(("audit", "escalation", "review", "gold", "overlap_extra"), 0)
    for reason, (labels, tasks) in by_reason.items():
        split[_SPLIT_OF.get(reason, "review")] += tasks
        split["overlap_extra"] += labels - tasks
    split["total"] = sum(split.values())
    return split


def cycle_split(engine: Engine, cycle: int) -> dict[str, dict[str, int]]:
    """Per segment, the labels the cycle's tasks asked for, split by what they paid for (see `_split`)."""
    return {segment: _split(by_reason)
            for segment, by_reason in _asked(engine, None, ReviewTask.cycle == cycle).items()}


def window_split(engine: Engine, policy: Policy, now: datetime | None = None) -> dict[str, dict[str, int]]:
    """Per segment with tasks in its current budget window, the labels asked so far by what they paid for, and
    its budget."""
    now = now or utcnow()
    hours = sorted({policy.defaults.budget_window_hours,
                    *(policy.for_segment(s).budget_window_hours for s in policy.segments)})
    split: dict[str, dict[str, int]] = {}
    for length in hours:  # one read per window length; each segment keeps the one its policy names
        window = budget_window(now, length)
        for segment, by_reason in _asked(engine, None, ReviewTask.created_at >= window[0],
                                         ReviewTask.created_at < window[1]).items():
            rules = policy.for_segment(segment)
            if rules.budget_window_hours == length:
                split[segment] = {**_split(by_reason), "budget": rules.review_budget}
    return dict(sorted(split.items()))
