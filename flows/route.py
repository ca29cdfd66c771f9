"""Route flow: every scored item gets one route, with its reasons and the versions that decided it."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine, and_, func, select
from sqlmodel import Session

from calibration.recalibrators import calibrator_from_dict
from calibration.report import CalibrationReport, GateResult, calibration_gate, is_stale
from flows.common import (
    UPSTREAM_MODEL, active_policy, as_utc, derive_rng, engine_for, promoted_model, utcnow,
)
from routing.decide import Route, route
from routing.policy import SegmentPolicy
from store.bulk import chunked, insert_ignore, set_column
from store.models import CalibrationReportRow, Item, ItemState, Prediction, RoutingDecision

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
        for part in chunked(item_ids, 5_000):
            found.update(conn.execute(
                select(RoutingDecision.item_id, func.max(RoutingDecision.id))
                .where(RoutingDecision.item_id.in_(part)).group_by(RoutingDecision.item_id)
            ).all())
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
    calibrated = raw if report_row is None else calibrator_from_dict(report_row.calibrator).predict(
        np.nan_to_num(raw, nan=0.0))
    calibrated = np.where(np.isfinite(raw), calibrated, np.nan)
    rng = derive_rng("route", policy_version, model_version, segment, item_ids)
    result = route(calibrated, policy=segment_policy, calibration=gate_now(report_row, segment_policy), rng=rng)
    previous = previous_decisions(engine, item_ids)
    now = utcnow()
    decisions = [
        {
            "item_id": item_id, "segment": segment, "route": str(result.routes[i]),
            "reasons": list(result.reasons[i]), "policy_version": policy_version, "model_version": model_version,
            "calibration_id": report_row.id if report_row else None, "threshold": result.threshold,
            "raw_confidence": None if np.isnan(raw[i]) else float(raw[i]),
            "calibrated_confidence": None if np.isnan(calibrated[i]) else float(calibrated[i]),
            "predicted_label": rows[i][4],
            "inclusion_probability": None if np.isnan(result.inclusion_probability[i])
            else float(result.inclusion_probability[i]),
            "cycle": cycle, "supersedes_id": previous.get(item_id), "created_at": now,
        }
        for i, item_id in enumerate(item_ids)
    ]
    with engine.begin() as conn:
        insert_ignore(conn, RoutingDecision.__table__, decisions)
        set_column(conn, Item.__table__, "id", "state", {d["item_id"]: STATE_AFTER[d["route"]] for d in decisions})
    return Counter(d["route"] for d in decisions)


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
    futures = [route_group.submit(group, cycle, database_url) for group in groups.values()]
    counts: Counter[str] = Counter()
    for future in futures:
        counts.update(future.result())
    summary = {"routed": sum(counts.values()), **{r.value: counts.get(r.value, 0) for r in Route}}
    logger.info("route: %s", summary)
    return summary
