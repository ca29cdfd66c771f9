"""The whole loop as real Prefect flow runs on a real SQLite file, with direct (simulated) annotators."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from store.models import (
    Annotation, CalibrationReportRow, CycleReport, Item, ItemStateRow, Label, ModelVersion, Prediction, ReviewTask,
    RoutingDecision,
)
from store.predictions import predictions_of

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

COUNTED = (Item, Prediction, RoutingDecision, ReviewTask, Annotation, Label, ModelVersion, CalibrationReportRow)


def row_counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t.__tablename__: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in COUNTED}


def test_simulation_writes_the_promised_json(sluice_home, dataset_files, tmp_path):
    from flows.simulate import SimulationConfig, run_simulation

    items, labels = dataset_files
    config = SimulationConfig(items=items, labels=labels, seed_labels=200, cycles=3, batch_size=150, budget=20,
                              strategy="margin", annotator="direct", test_share=0.2, seed=1, home=sluice_home)
    result = run_simulation(config)
    out = tmp_path / "sim.json"
    out.write_text(json.dumps(result))
    cycles = json.loads(out.read_text())["cycles"]
    assert [c["cycle"] for c in cycles] == [1, 2, 3]
    for row in cycles:
        assert set(row) == {"cycle", "labels_total", "labels_train", "accuracy", "automation_rate", "auto_error_rate", "ece",
                            "review_count", "labels_spent", "labels_spent_total", "target_error", "auto_accepted",
                            "auto_errors", "halted_segments"}
        assert 0.0 <= row["accuracy"] <= 1.0
        assert 0.0 <= row["automation_rate"] <= 1.0
        assert row["target_error"] == 0.05 and row["halted_segments"] == []  # the default policy's target
        # every task the direct annotators answered is a human label spent (budgeted reviews and audits)
        assert row["labels_spent"] == row["review_count"]
        assert 0 <= row["auto_errors"] <= row["auto_accepted"]
    assert cycles[-1]["labels_spent_total"] == 200 + sum(c["labels_spent"] for c in cycles)
    assert cycles[-1]["labels_total"] > cycles[0]["labels_total"] > 200
    assert result["test_items"] == 180
    assert all(c["review_count"] >= 20 for c in cycles)  # the budget is spent (audits come on top)


def test_rerunning_every_flow_adds_no_rows(sluice_home, dataset_files):
    from flows.calibrate import calibrate_flow
    from flows.common import engine_for
    from flows.ingest import ingest_flow, read_labels, seed_labels
    from flows.retrain import retrain_flow
    from flows.route import route_flow
    from flows.score import score_flow
    from flows.select import select_flow
    from tests.flows.seeded import AS_OF

    items, labels = dataset_files
    engine = engine_for(None)
    ingest_flow(str(items))
    truth = read_labels(labels)
    seed_labels(engine, truth[:300], holdout_share=0.5)
    steps = [
        lambda: ingest_flow(str(items)), lambda: seed_labels(engine, truth[:300], holdout_share=0.5),
        retrain_flow, score_flow, calibrate_flow, lambda: route_flow(cycle=1), lambda: select_flow(cycle=1, as_of=AS_OF),
    ]
    for step in steps:
        step()
    first = row_counts(engine)
    assert first["predictions"] >= 600 and first["routing_decisions"] == 600 and first["review_tasks"] > 0
    for step in steps:
        step()
    assert row_counts(engine) == first


def test_items_with_upstream_scores_are_routed_without_a_model(sluice_home, tmp_path):
    from flows.common import engine_for
    from flows.ingest import ingest_flow
    from flows.route import route_flow
    from flows.score import score_flow

    path = tmp_path / "upstream.jsonl"
    rows = [{"id": f"u{i}", "text": "x", "prediction": "a", "confidence": 0.99} for i in range(5)]
    rows += [{"id": "p1", "text": "y", "probs": {"a": 0.2, "b": 0.8}}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ingest_flow(str(path))
    with engine_for(None).connect() as conn:  # born scored: each upstream prediction in its item's row
        assert conn.execute(select(func.count()).select_from(Prediction)).scalar_one() == 0
        passthrough = {r.item_id: (r.label, r.confidence) for r in conn.execute(predictions_of("upstream").select())}
        assert set(conn.execute(select(ItemStateRow.state)).scalars()) == {"scored"}
    assert passthrough == {**{f"u{i}": ("a", 0.99) for i in range(5)}, "p1": ("b", 0.8)}
    assert score_flow()["scored"] == 0
    summary = route_flow(cycle=1)
    # no calibration for the upstream model yet: fail closed, nothing is auto-accepted
    assert summary["routed"] == 6 and summary["auto_accept"] == 0 and summary["review"] == 6
    with engine_for(None).connect() as conn:
        reasons = conn.execute(select(RoutingDecision.reasons)).scalars().all()
    assert all("calibration_missing" in r for r in reasons)


def test_cycle_report_is_stored(sluice_home, dataset_files):
    from flows.common import engine_for
    from flows.cycle import run_cycle
    from flows.ingest import ingest_flow, read_labels, seed_labels
    from flows.retrain import retrain_flow

    items, labels = dataset_files
    engine = engine_for(None)
    ingest_flow(str(items))
    seed_labels(engine, read_labels(labels)[:200], holdout_share=0.5)
    retrain_flow()
    result = run_cycle(push=False)
    with engine.connect() as conn:
        stored = conn.execute(select(CycleReport.figures).where(CycleReport.cycle == result["cycle"])).scalar_one()
    assert stored["routed"] == 700
    assert stored["review_tasks"] == result["steps"]["select"]["queued"]
    assert {"gain_per_100_labels", "model_agreement"} <= set(stored)
    if result["steps"]["retrain"]["status"] == "promoted":
        assert 0.0 <= stored["model_agreement"] <= 1.0


def test_a_store_copied_with_its_home_loads_its_own_models(sluice_home, dataset_files, tmp_path):
    """A home copied elsewhere (a backup restored, a store moved) scores with the models in its own folder, not
    with files at the original's paths: those may be gone, or belong to another store."""
    import shutil

    from flows.common import artifact_file, engine_for, load_scoring_model
    from flows.score import score_flow
    from store.registry import promoted_model
    from store.settings import get_settings
    from tests.flows.seeded import seed_and_route

    if get_settings().database_url:
        pytest.skip("a PostgreSQL store does not live in its home folder")
    seed_and_route(*dataset_files)
    copy = tmp_path / "copied-home"
    shutil.copytree(sluice_home, copy)
    shutil.rmtree(sluice_home / "models")  # the original's files are gone
    settings = get_settings().with_home(copy)
    version = promoted_model(engine_for(settings))
    assert artifact_file(version, settings) == copy.resolve() / "models" / f"{version.version}.joblib"
    assert load_scoring_model(version, settings).classes_.tolist() == ["finance", "sport", "weather"]
    assert score_flow(settings=settings)["model_version"] == version.version
