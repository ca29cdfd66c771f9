"""The calibrate flow as a real Prefect flow run on a real SQLite store: report rows, reliability diagrams,
idempotent re-runs, and the drift watch marking a report stale."""

from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select

from store.models import CalibrationReportRow, Prediction
from tests.items import insert_items

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _report_rows(engine) -> list[CalibrationReportRow]:
    with engine.connect() as conn:
        return [r._mapping for r in conn.execute(select(CalibrationReportRow.__table__)).all()]


def _prepared_store(dataset_files):
    from flows.common import engine_for
    from flows.ingest import ingest_flow, read_labels, seed_labels
    from flows.retrain import retrain_flow
    from flows.score import score_flow

    items, labels = dataset_files
    engine = engine_for(None)
    ingest_flow(str(items))
    seed_labels(engine, read_labels(labels)[:400], holdout_share=0.5)
    retrain_flow()
    score_flow()
    return engine


def test_calibrate_writes_report_and_png_and_a_rerun_writes_nothing(sluice_home, dataset_files):
    from flows.calibrate import calibrate_flow
    from store.settings import get_settings

    engine = _prepared_store(dataset_files)
    results = calibrate_flow()
    assert results and all(r["status"] == "fitted" for r in results)
    rows = _report_rows(engine)
    assert len(rows) == len(results)
    pngs = sorted(get_settings().reports_dir.glob("*.png"))
    assert len(pngs) == len(rows)
    for row in rows:
        report = row["report"]
        assert report["drift"] == {"psi": None, "ks": None, "n_expected": row["n"], "n_actual": 0,
                                   "max_psi": 0.25, "stale": False}
        png = get_settings().reports_dir / report["diagram"].rsplit("/", 1)[-1]
        assert png in pngs and png.read_bytes()[:8] == PNG_SIGNATURE
    snapshot = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in pngs}

    again = calibrate_flow()
    assert [r["status"] for r in again] == ["unchanged"] * len(results)
    assert _report_rows(engine) == rows
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in get_settings().reports_dir.glob("*.png")} == snapshot


def test_drift_in_newer_confidences_marks_the_report_stale(sluice_home, dataset_files):
    from flows.calibrate import calibrate_flow
    from flows.common import utcnow

    engine = _prepared_store(dataset_files)
    calibrate_flow()
    row = _report_rows(engine)[0]
    version, segment = row["model_version"], row["segment"]
    new_ids = [f"drifted-{i:04d}" for i in range(300)]
    with engine.begin() as conn:  # the model now meets inputs it is unsure about: confidence ~0.4
        insert_items(conn, [{"id": i, "segment": segment, "text": "unfamiliar", "state": "scored"}
                                    for i in new_ids])
        conn.execute(insert(Prediction), [
            {"item_id": i, "model_version": version, "label": "sport", "confidence": 0.38 + (n % 5) / 100,
             "created_at": utcnow()} for n, i in enumerate(new_ids)
        ])
    results = calibrate_flow()
    assert all(r["status"] == "unchanged" for r in results)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(CalibrationReportRow)).scalar_one() == len(results)
    drift = next(r for r in _report_rows(engine) if r["id"] == row["id"])["report"]["drift"]
    assert drift["stale"] is True and drift["psi"] > 0.25 and drift["n_actual"] == 300
    # the route flow reads exactly this key
    assert next(r for r in _report_rows(engine) if r["id"] == row["id"])["report"].get("drift", {}).get("stale")
