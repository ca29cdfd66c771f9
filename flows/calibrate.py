"""Calibrate flow: per model version and segment, fit a recalibrator on unbiased held-out labels and gate it."""

from __future__ import annotations

from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine, select

from calibration.report import calibration_gate, fit_and_select
from flows.common import active_policy, derive_rng, engine_for, fingerprint, promoted_model, utcnow
from store.bulk import insert_ignore
from store.models import CalibrationReportRow, Item, Label, Prediction

# Labels that were drawn without regard to the model's uncertainty; only these may certify calibration.
UNBIASED_SELECTIONS = ("seed", "audit", "gold", "random")


def calibration_data(engine: Engine, model_version: str) -> dict[str, tuple[list[str], np.ndarray, np.ndarray]]:
    """Per segment: item ids, confidence and correctness of `model_version` on unbiased held-out labels."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Item.segment, Label.item_id, Prediction.confidence, Prediction.label, Label.label)
            .join(Prediction, Prediction.item_id == Label.item_id)
            .join(Item, Item.id == Label.item_id)
            .where(
                Label.split == "holdout",
                Label.selection_reason.in_(UNBIASED_SELECTIONS),
                Prediction.model_version == model_version,
            )
            .order_by(Label.item_id)
        ).all()
    grouped: dict[str, list[tuple]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(row)
    return {
        segment: (
            [r[1] for r in seg_rows],
            np.array([r[2] for r in seg_rows], dtype=float),
            np.array([r[3] == r[4] for r in seg_rows], dtype=float),
        )
        for segment, seg_rows in grouped.items()
    }


@task(name="fit-calibration", cache_policy=NO_CACHE)
def fit_segment(
    model_version: str, segment: str, item_ids: list[str], confidence: np.ndarray, correct: np.ndarray,
    database_url: str | None,
) -> dict[str, Any]:
    engine = engine_for(database_url)
    policy, _ = active_policy(engine)
    limits = policy.for_segment(segment).calibration
    data_hash = fingerprint([model_version, segment, item_ids, correct.tolist()])
    with engine.connect() as conn:
        existing = conn.execute(
            select(CalibrationReportRow.id).where(
                CalibrationReportRow.model_version == model_version,
                CalibrationReportRow.segment == segment,
                CalibrationReportRow.data_hash == data_hash,
            )
        ).scalar()
    if existing is not None:
        return {"segment": segment, "model_version": model_version, "status": "unchanged", "id": existing}
    calibrator, report = fit_and_select(confidence, correct, rng=derive_rng("calibrate", model_version, data_hash))
    gate = calibration_gate(report, min_samples=limits.min_samples, max_ece=limits.max_ece)
    row = {
        "model_version": model_version, "segment": segment, "data_hash": data_hash, "method": report.method,
        "n": report.n, "ece": report.ece, "ece_low": report.ece_low, "ece_high": report.ece_high,
        "mce": report.mce, "brier": report.brier, "passed": gate.passed, "reasons": list(gate.reasons),
        "calibrator": calibrator.to_dict(), "report": report.to_dict(), "created_at": utcnow(),
    }
    with engine.begin() as conn:
        insert_ignore(conn, CalibrationReportRow.__table__, [row])
    return {"segment": segment, "model_version": model_version, "status": "fitted", "method": report.method,
            "n": report.n, "ece": report.ece, "ece_high": report.ece_high, "passed": gate.passed,
            "reasons": list(gate.reasons)}


def models_in_use(engine: Engine) -> list[str]:
    promoted = promoted_model(engine)
    with engine.connect() as conn:
        versions = set(conn.execute(select(Prediction.model_version).distinct()).scalars())
    keep = {"upstream"} & versions
    if promoted is not None:
        keep.add(promoted.version)
    return sorted(keep)


def _markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| model | segment | method | n | ECE | ECE upper | gate | reasons |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if r["status"] == "fitted":
            lines.append(
                f"| {r['model_version']} | {r['segment']} | {r['method']} | {r['n']} | {r['ece']:.4f} | "
                f"{r['ece_high']:.4f} | {'pass' if r['passed'] else 'fail'} | {', '.join(r['reasons'])} |"
            )
        else:
            lines.append(f"| {r['model_version']} | {r['segment']} | (unchanged) | | | | | |")
    return "\n".join(lines)


@flow(name="calibrate", log_prints=True)
def calibrate_flow(database_url: str | None = None) -> list[dict[str, Any]]:
    """Refit the recalibrator of every model in use and segment whose unbiased labels changed."""
    logger = get_run_logger()
    engine = engine_for(database_url)
    futures = []
    for version in models_in_use(engine):
        for segment, (ids, confidence, correct) in calibration_data(engine, version).items():
            futures.append(fit_segment.submit(version, segment, ids, confidence, correct, database_url))
    results = [f.result() for f in futures]
    if results:
        create_markdown_artifact(_markdown(results), key="calibration-report", description="Calibration per segment")
    logger.info("calibrate: %d segment(s), %d refitted", len(results), sum(r["status"] == "fitted" for r in results))
    return results
