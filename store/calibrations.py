"""Calibration reports: storing them, reading the newest per model and segment, and recent confidences."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import Engine, bindparam, select, update
from sqlmodel import Session

from store.bulk import chunked, insert_ignore
from store.models import CalibrationReportRow, Item
from store.predictions import predictions_of

__all__ = [
    "calibration_report_for", "calibration_reports", "latest_calibration_method", "latest_calibrations", "latest_ece",
    "recent_confidences", "save_calibration_report", "StoredCalibration", "update_calibration_report",
]


def latest_ece(engine: Engine, model_version: str) -> dict[str, tuple[int, float]]:
    """Per segment (or pool): (n, ECE) of the newest calibration report of `model_version`."""
    query = (
        select(CalibrationReportRow.segment, CalibrationReportRow.n, CalibrationReportRow.ece)
        .where(CalibrationReportRow.model_version == model_version)
        .order_by(CalibrationReportRow.created_at, CalibrationReportRow.id)
    )
    with engine.connect() as conn:
        return {row.segment: (row.n, row.ece) for row in conn.execute(query)}


def calibration_reports(engine: Engine, *, model_versions: list[str] | None = None) -> list[CalibrationReportRow]:
    """Every calibration report (of the given models only, when named), newest first."""
    query = select(CalibrationReportRow).order_by(CalibrationReportRow.created_at.desc(),
                                                  CalibrationReportRow.id.desc())
    if model_versions is not None:
        query = query.where(CalibrationReportRow.model_version.in_(model_versions))
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(query).all())


def latest_calibration_method(engine: Engine, model_version: str, segment: str) -> str | None:
    """The recalibration method of the newest report of (model, segment); None when there is none."""
    query = (
        select(CalibrationReportRow.method)
        .where(CalibrationReportRow.model_version == model_version, CalibrationReportRow.segment == segment)
        .order_by(CalibrationReportRow.created_at.desc(), CalibrationReportRow.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        return conn.execute(query).scalar()


class StoredCalibration(NamedTuple):
    """A stored calibration report's identity, age and report document."""

    id: int
    created_at: datetime
    report: dict[str, Any]


def calibration_report_for(engine: Engine, model_version: str, segment: str,
                           data_hash: str) -> StoredCalibration | None:
    """The report of (model, segment) fitted on the labels fingerprinted `data_hash`; None when there is none."""
    query = select(CalibrationReportRow.id, CalibrationReportRow.created_at, CalibrationReportRow.report).where(
        CalibrationReportRow.model_version == model_version,
        CalibrationReportRow.segment == segment,
        CalibrationReportRow.data_hash == data_hash,
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else StoredCalibration(row.id, row.created_at, row.report or {})


def save_calibration_report(engine: Engine, row: dict[str, Any]) -> None:
    """Store a fitted report; one of the same (model, segment, labels) stored already is left as it is."""
    with engine.begin() as conn:
        insert_ignore(conn, CalibrationReportRow.__table__, [row])


def update_calibration_report(engine: Engine, report_id: int, report: dict[str, Any]) -> None:
    """Replace the report document (drift, diagram) of a stored report; its fitted figures never change."""
    with engine.begin() as conn:
        conn.execute(update(CalibrationReportRow).where(CalibrationReportRow.id == report_id).values(report=report))


def recent_confidences(engine: Engine, model_version: str, segments: list[str], since: datetime) -> np.ndarray:
    """Confidences `model_version` gave items of `segments` after `since`."""
    predicted = predictions_of(model_version)  # the passthrough's: when each item was received
    query = (
        select(predicted.c.confidence)
        .join(Item, Item.id == predicted.c.item_id)
        .where(predicted.c.created_at > since, predicted.c.confidence.is_not(None),
               Item.segment.in_(bindparam("segments", expanding=True)))
    )
    with engine.connect() as conn:
        values = [v for part in chunked(segments, 5_000)
                  for v in conn.execute(query, {"segments": list(part)}).scalars().all()]
    return np.asarray(values, dtype=float)


def latest_calibrations(engine: Engine, model_version: str, segments: list[str]) -> dict[str, CalibrationReportRow]:
    """The newest calibration report of each of `segments` under `model_version`, in one query per 5,000."""
    newest: dict[str, CalibrationReportRow] = {}
    with Session(engine, expire_on_commit=False) as session:
        for part in chunked(segments, 5_000):
            rows = session.scalars(
                select(CalibrationReportRow)
                .where(CalibrationReportRow.model_version == model_version, CalibrationReportRow.segment.in_(part))
                .order_by(CalibrationReportRow.created_at, CalibrationReportRow.id)
            ).all()
            newest.update((row.segment, row) for row in rows)  # later rows win
    return newest
