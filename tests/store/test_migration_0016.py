"""Migration 0016 upgrades a store whose decisions carried their route run's constants in every row: each decision
keeps its id and reads back whole, with the same values, through ``store.decision_batches.full_decisions``; rows
that point at decisions (review tasks, draws, later decisions) still point at them; decisions that shared their
constants share one batch row; and a downgrade puts every column back."""

from __future__ import annotations

from datetime import datetime, timezone

from alembic import command
from sqlalchemy import create_engine, select, text

from store import db
from store.decision_batches import full_decisions
from store.models import CalibrationReportRow, PolicyVersion, ReviewDraw, ReviewTask, ThresholdEvidence

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
LATER = datetime(2026, 12, 2, tzinfo=timezone.utc)
COLUMNS = ("id", "item_id", "segment", "route", "policy_version", "model_version", "calibration_id", "threshold",
           "raw_confidence", "calibrated_confidence", "predicted_label", "inclusion_probability", "cycle",
           "supersedes_id", "audit_rate", "evidence_id")
# (id, item, segment, route, policy, model, calibration, threshold, raw, calibrated, predicted, pi, cycle,
#  supersedes, audit rate, evidence, created at)
DECISIONS = [
    (1, "a", "s", "auto_accept", "p1", "m1", 1, 0.9, 0.95, 0.93, "x", 0.1, 1, None, 0.1, 1, NOW),
    (2, "b", "s", "spot_check", "p1", "m1", 1, 0.9, 0.97, 0.96, "x", 0.1, 1, None, 0.1, 1, NOW),
    (3, "c", "t", "review", "p1", "m1", None, None, 0.4, None, "y", None, 1, None, None, None, NOW),
    (4, "d", "t", "review", "p1", "m1", None, None, None, None, None, None, None, None, None, None, NOW),
    (5, "c", "t", "auto_accept", "p1", "m2", None, 0.5, 0.8, None, "y", 0.2, 2, 3, 0.2, None, LATER),
]


def _store_at_0015(url: str) -> None:
    command.upgrade(db._alembic_config(url), "0015")
    engine = create_engine(url)
    with engine.begin() as conn:  # the tables 0016 leaves alone, through today's models (their defaults)
        conn.execute(PolicyVersion.__table__.insert(), [{"version": "p1", "name": "p", "document": "",
                                                         "author": "ops", "created_at": NOW}])
        conn.execute(text("INSERT INTO items (id, segment, state, kind, received_at, updated_at) "  # as 0015 had it
                          "VALUES (:id, 's', 'routed', 'classification', :now, :now)"),
                     [{"id": i, "now": NOW} for i in "abcd"])
        conn.execute(CalibrationReportRow.__table__.insert(), [{
            "id": 1, "model_version": "m1", "segment": "s", "data_hash": "h", "method": "isotonic", "n": 10, "ece": 0.0,
            "ece_low": 0.0, "ece_high": 0.0, "mce": 0.0, "brier": 0.0, "passed": True, "created_at": NOW}])
        conn.execute(ThresholdEvidence.__table__.insert(), [{
            "id": 1, "model_version": "m1", "segment": "s", "policy_version": "p1", "label_fingerprint": "f",
            "alpha": 0.05, "delta": 0.1, "created_at": NOW}])
        for row in DECISIONS:
            conn.execute(text(
                f"INSERT INTO routing_decisions ({', '.join(COLUMNS)}, reasons, created_at) VALUES "
                f"({', '.join(':' + c for c in COLUMNS)}, '[\"r\"]', :created_at)"),
                {**dict(zip(COLUMNS, row[:16])), "created_at": row[16]})
        conn.execute(ReviewTask.__table__.insert(), [{"item_id": "b", "decision_id": 2, "selection_reason": "audit",
                                                      "selection_probability": 0.1, "created_at": NOW}])
        conn.execute(ReviewDraw.__table__.insert(), [{"decision_id": 3, "item_id": "c", "probability": 0.5,
                                                      "drawn": True, "labelled": True, "created_at": NOW}])
    engine.dispose()


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def test_every_decision_reads_back_whole_and_keeps_what_points_at_it(database_url) -> None:
    _store_at_0015(database_url)
    engine = db.get_engine(database_url)  # migrates to the head
    decisions = full_decisions()
    with engine.connect() as conn:
        rows = {row.id: row for row in conn.execute(select(decisions))}
        batches = conn.execute(text("SELECT count(*) FROM routing_batches")).scalar_one()
        task = conn.execute(text("SELECT decision_id FROM review_tasks")).scalar_one()
        draw = conn.execute(text("SELECT decision_id FROM review_draws")).scalar_one()
    assert sorted(rows) == [1, 2, 3, 4, 5]
    for expected in DECISIONS:
        row = rows[expected[0]]
        assert tuple(getattr(row, c) for c in COLUMNS) == expected[:16]
        assert row.reasons == ["r"] and _as_utc(row.created_at) == expected[16] and row.run_id is None
    assert rows[1].batch_id == rows[2].batch_id  # one route run's group: one batch row
    assert batches == 4  # decisions 1 and 2 share theirs; 3, 4 and 5 differ in some constant
    assert (task, draw) == (2, 3)


def test_a_downgrade_puts_every_column_back(database_url) -> None:
    _store_at_0015(database_url)
    config = db._alembic_config(database_url)
    command.upgrade(config, "0016")
    command.downgrade(config, "0015")
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = {row.id: row for row in conn.execute(text(
            f"SELECT {', '.join(COLUMNS)}, created_at FROM routing_decisions"))}
        tables = set(conn.execute(text(
            "SELECT name FROM sqlite_master WHERE type = 'table'" if engine.dialect.name == "sqlite" else
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")).scalars())
    engine.dispose()
    assert "routing_batches" not in tables
    for expected in DECISIONS:
        row = rows[expected[0]]
        assert tuple(getattr(row, c) for c in COLUMNS) == expected[:16]
        assert _as_utc(row.created_at if isinstance(row.created_at, datetime)
                       else datetime.fromisoformat(row.created_at)) == expected[16]
