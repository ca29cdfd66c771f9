"""Route flow: every scored item gets one route, with its reasons and the versions that decided it."""

from __future__ import annotations

import json
import threading
from collections import Counter
from contextlib import nullcontext
from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote
from sqlalchemy import Engine, and_, bindparam, func, select
from sqlmodel import Session

from calibration.recalibrators import calibrator_from_dict
from calibration.report import CalibrationReport, GateResult, calibration_gate, is_stale
from flows.common import (
    UPSTREAM_MODEL, active_policy, as_utc, derive_rng, engine_for, promoted_model, utcnow,
)
from flows.risk import batch_risk_flags, derived_threshold
from routing.decide import Route, route
from routing.policy import SegmentPolicy
from store.bulk import chunked, insert_ignore_columns, set_column
from store.models import CalibrationReportRow, Item, ItemState, Prediction, RoutingDecision

# SQLite takes one writer at a time; segment tasks in threads queue here, not in SQLite's (unfair) busy handler.
_SQLITE_WRITE_LOCK = threading.Lock()

STATE_AFTER = {
    Route.AUTO_ACCEPT.value: ItemState.auto_accepted.value,
    Route.SPOT_CHECK.value: ItemState.routed.value,
    Route.REVIEW.value: ItemState.routed.value,
    Route.ESCALATE.value: ItemState.routed.value,
}


def latest_calibration(engine: Engine, model_version: str, segment: str) -> CalibrationReportRow | None:
    with Session(engine, expire_on_commit=False) as session:
        return session.exec(
            select(CalibrationReportRow)
            .where(CalibrationReportRow.model_version == model_version, CalibrationReportRow.segment == segment)
            .order_by(CalibrationReportRow.created_at.desc(), CalibrationReportRow.id.desc())
            .limit(1)
        ).scalars().first()


def gate_now(row: CalibrationReportRow | None, policy: SegmentPolicy) -> GateResult | None:
    """The calibration gate under the policy in force now, including the report's age."""
    if row is None:
        return None
    limits = policy.calibration
    gate = calibration_gate(CalibrationReport.from_dict(row.report), min_samples=limits.min_samples,
                            max_ece=limits.max_ece)
    age = (utcnow() - as_utc(row.created_at)).total_seconds()
    if is_stale(max(age, 0.0), max_age_seconds=limits.max_age_hours * 3600.0):
        return GateResult(passed=False, reasons=(*gate.reasons, "calibration_stale"))
    if (row.report or {}).get("drift", {}).get("stale"):
        return GateResult(passed=False, reasons=(*gate.reasons, "calibration_drift"))
    return gate


def scored_items(engine: Engine, model_version: str | None) -> list[tuple[str, str, str, float, str]]:
    """(item id, segment, model version, raw confidence, predicted label) of items waiting to be routed."""
    versions = [UPSTREAM_MODEL] + ([model_version] if model_version else [])
    with engine.connect() as conn:
        rows = conn.execute(
            select(Item.id, Item.segment, Prediction.model_version, Prediction.confidence, Prediction.label,
                   Item.upstream_confidence.is_not(None) | Item.upstream_probs.is_not(None))
            .join(Prediction, and_(Prediction.item_id == Item.id, Prediction.model_version.in_(versions)))
            .where(Item.state == ItemState.scored.value)
            .order_by(Item.id)
        ).all()
    wanted = {}
    for item_id, segment, version, confidence, label, upstream in rows:
        if (version == UPSTREAM_MODEL) == bool(upstream):
            wanted[item_id] = (item_id, segment, version, confidence, label)
    return list(wanted.values())


def previous_decisions(engine: Engine, item_ids: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    with engine.connect() as conn:
        statement = (
            select(RoutingDecision.item_id, func.max(RoutingDecision.id))
            .where(RoutingDecision.item_id.in_(bindparam("ids", expanding=True))).group_by(RoutingDecision.item_id)
        )
        for part in chunked(item_ids, 5_000):
            found.update(conn.execute(statement, {"ids": list(part)}).all())
    return found


@task(name="route-segment", cache_policy=NO_CACHE)
def route_group(
    rows: list[tuple[str, str, str, float, str]], cycle: int | None, database_url: str | None
) -> Counter[str]:
    """Route one (segment, model version) group of scored items and write their decisions."""
    engine = engine_for(database_url)
    policy, policy_version = active_policy(engine)
    segment, model_version = rows[0][1], rows[0][2]
    segment_policy = policy.for_segment(segment)
    report_row = latest_calibration(engine, model_version, segment)
    item_ids = [r[0] for r in rows]
    raw = np.array([np.nan if r[3] is None else r[3] for r in rows], dtype=float)
    calibrator = None if report_row is None else calibrator_from_dict(report_row.calibrator)
    calibrated = raw if calibrator is None else calibrator.predict(np.nan_to_num(raw, nan=0.0))
    calibrated = np.where(np.isfinite(raw), calibrated, np.nan)
    threshold, _ = derived_threshold(engine, model_version, segment, segment_policy, calibrator)
    flags = batch_risk_flags(engine, item_ids, segment_policy, model_version=model_version)
    rng = derive_rng("route", policy_version, model_version, segment, item_ids)
    result = route(calibrated, policy=segment_policy, calibration=gate_now(report_row, segment_policy), rng=rng,
                   risk_escalate=flags.escalate, risk_review=flags.review, risk_reasons=flags.reasons,
                   threshold=threshold)
    previous = previous_decisions(engine, item_ids)
    n = len(item_ids)
    routes = [str(r) for r in result.routes.tolist()]
    columns = {
        "item_id": item_ids, "segment": [segment] * n, "route": routes,
        "reasons": _reasons_json(result.reasons), "policy_version": [policy_version] * n,
        "model_version": [model_version] * n, "calibration_id": [report_row.id if report_row else None] * n,
        "threshold": [result.threshold] * n, "raw_confidence": _floats_or_none(raw),
        "calibrated_confidence": _floats_or_none(calibrated), "predicted_label": [r[4] for r in rows],
        "inclusion_probability": _floats_or_none(result.inclusion_probability), "cycle": [cycle] * n,
        "supersedes_id": [previous.get(item_id) for item_id in item_ids], "created_at": [utcnow()] * n,
    }
    with _SQLITE_WRITE_LOCK if engine.dialect.name == "sqlite" else nullcontext(), engine.begin() as conn:
        insert_ignore_columns(conn, RoutingDecision.__table__, columns, encoded_json=("reasons",))
        set_column(conn, Item.__table__, "id", "state", dict(zip(item_ids, map(STATE_AFTER.__getitem__, routes))))
    return Counter(routes)


def _floats_or_none(values: np.ndarray) -> list[float | None]:
    return [None if v != v else v for v in np.asarray(values, dtype=float).tolist()]  # NaN -> None


def _reasons_json(reasons: tuple[tuple[str, ...], ...]) -> list[str]:
    """`json.dumps(list(r))` per item; items share a handful of reason tuples, so each is encoded once."""
    encoded: dict[tuple[str, ...], str] = {}
    return [encoded.get(r) or encoded.setdefault(r, json.dumps(list(r))) for r in reasons]


@flow(name="route", log_prints=True)
def route_flow(cycle: int | None = None, database_url: str | None = None) -> dict[str, Any]:
    """Route every scored item under the active policy, per segment and model version."""
    logger = get_run_logger()
    engine = engine_for(database_url)
    version = promoted_model(engine)
    rows = scored_items(engine, version.version if version else None)
    groups: dict[tuple[str, str], list] = {}
    for row in rows:
        groups.setdefault((row[1], row[2]), []).append(row)
    # quote(): Prefect would otherwise walk every row of every group looking for futures (seconds per 100k rows)
    futures = [route_group.submit(quote(group), cycle, database_url) for group in groups.values()]
    counts: Counter[str] = Counter()
    for future in futures:
        counts.update(future.result())
    summary = {"routed": sum(counts.values()), **{r.value: counts.get(r.value, 0) for r in Route}}
    logger.info("route: %s", summary)
    return summary
