"""What the console should show, computed beside it: plain SQL over the store and arithmetic here, never through
`ui`, `store` or `services`, so a wrong query or estimate there cannot hide in the expectation too."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any, NamedTuple

from sqlalchemy import Engine, text

AUTOMATED = ("auto_accept", "spot_check")
# every decision with its batch's constants (segment, versions, threshold, evidence, cycle, ...)
DECISIONS = ("(SELECT d.*, b.segment, b.policy_version, b.model_version, b.calibration_id, b.threshold, "
             "b.evidence_id, b.audit_rate, b.cycle, b.created_at FROM routing_decisions d "
             "JOIN routing_batches b ON b.id = d.batch_id)")
# each item's newest routing decision (decisions are append-only, ids increase)
LATEST = (f"(SELECT d.* FROM {DECISIONS} d JOIN (SELECT max(id) AS id FROM routing_decisions "
          "GROUP BY item_id) newest ON newest.id = d.id)")


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def latest_routes(engine: Engine) -> dict[str, Counter[str]]:
    """Per segment: how many items' newest decision took each route."""
    counts: dict[str, Counter[str]] = {}
    for segment, route, n in rows(engine, f"SELECT segment, route, count(*) FROM {LATEST} GROUP BY segment, route"):
        counts.setdefault(segment, Counter())[route] = n
    return counts


def automated(routes: Counter[str]) -> int:
    return sum(routes[route] for route in AUTOMATED)


class Audit(NamedTuple):
    segment: str
    wrong: bool
    inclusion_probability: float


def audits(engine: Engine) -> list[Audit]:
    """Items automated by their newest decision whose label came from an audit, with the chance they were drawn."""
    found = rows(engine, f"""
        SELECT d.segment, d.predicted_label IS NULL OR d.predicted_label != l.label, d.inclusion_probability
        FROM {LATEST} d JOIN labels l ON l.item_id = d.item_id
        WHERE d.route IN ('auto_accept', 'spot_check') AND l.selection_reason = 'audit'
          AND d.inclusion_probability > 0""")
    return [Audit(segment, bool(wrong), float(p)) for segment, wrong, p in found]


def audit_estimate(engine: Engine, segment: str | None = None) -> float:
    """The doubly robust estimate over every automated item open to an audit (of `segment`, or all): each item's
    predicted error (1 - its calibrated confidence; none recorded predicts none), plus each returned audit's
    correction (wrong - predicted) weighted by 1 / (its inclusion probability x the share of the audits drawn at
    that probability that came back); NaN with no audit back."""
    found = rows(engine, f"""
        SELECT d.calibrated_confidence, d.inclusion_probability, d.route = 'spot_check',
               a.label IS NOT NULL AND d.route = 'spot_check',
               d.predicted_label IS NULL OR a.label IS NULL OR d.predicted_label != a.label
        FROM {LATEST} d LEFT JOIN (SELECT item_id, label FROM labels WHERE selection_reason = 'audit') a
             ON a.item_id = d.item_id
        WHERE d.route IN ('auto_accept', 'spot_check') AND d.inclusion_probability > 0""" +
                 ("" if segment is None else " AND d.segment = :s"), s=segment)
    drawn, back = Counter(r[1] for r in found if r[2]), Counter(r[1] for r in found if r[3])
    if not back:
        return math.nan
    total = 0.0
    for confidence, probability, _, labelled, wrong in found:
        predicted = 0.0 if confidence is None else 1.0 - confidence
        if labelled:
            total += (float(bool(wrong)) - predicted) / (probability * back[probability] / drawn[probability])
        total += predicted
    return total / len(found)


def open_tasks(engine: Engine) -> dict[str, int]:
    """Per segment: review tasks not done."""
    return dict(rows(engine, "SELECT i.segment, count(*) FROM review_tasks t JOIN items i ON i.id = t.item_id "
                             "WHERE t.state != 'done' GROUP BY i.segment"))


def waiting(engine: Engine) -> list[tuple[str, str, int]]:
    """(segment, queue, tasks not done), in segment and queue order."""
    return [tuple(r) for r in rows(engine, "SELECT i.segment, t.queue, count(*) FROM review_tasks t JOIN items i "
                                           "ON i.id = t.item_id WHERE t.state != 'done' GROUP BY i.segment, "
                                           "t.queue ORDER BY i.segment, t.queue")]


def promoted(engine: Engine) -> str:
    (version,) = [r.version for r in rows(engine, "SELECT version FROM model_versions WHERE status = 'promoted'")]
    return version


def newest_reports(engine: Engine, model_version: str) -> list[Any]:
    """The newest calibration report of each segment of `model_version`, in segment order."""
    found = rows(engine, "SELECT * FROM calibration_reports WHERE model_version = :m ORDER BY created_at, id",
                 m=model_version)
    newest = {row.segment: row for row in found}  # later rows win
    return [newest[segment] for segment in sorted(newest)]


def newest_reported_model(engine: Engine) -> str:
    return rows(engine, "SELECT model_version FROM calibration_reports ORDER BY created_at DESC, id DESC LIMIT 1")[0][0]


def cycle_reports(engine: Engine) -> list[tuple[int, str, dict[str, Any]]]:
    """(cycle, model version column, figures) of every cycle report, oldest first."""
    return [(cycle, model, _json(figures)) for cycle, model, figures in
            rows(engine, "SELECT cycle, model_version, figures FROM cycle_reports ORDER BY cycle")]


def recorded_audit(engine: Engine) -> dict[str, dict[str, Any]]:
    """The weighted audit estimate per segment that the last cycle recorded when it finished."""
    return cycle_reports(engine)[-1][2]["audit"]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
