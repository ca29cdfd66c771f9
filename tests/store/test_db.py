"""store.db: migrations on SQLite and PostgreSQL, SQLite pragmas, and choosing the database from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

import store.models  # noqa: F401  (registers the tables)
from store import db
from store.models import AuditEvent
from store.settings import get_settings
from tests.items import insert_items

EXPECTED_TABLES = {
    "items", "predictions", "model_versions", "policy_versions", "calibration_reports", "routing_decisions",
    "routing_batches", "item_sources",
    "review_tasks", "annotations", "labels", "audit_events", "quarantine", "cycle_reports", "watermarks",
    "threshold_evidence", "guard_halts", "store_lock_holders", "accounts", "policy_changes", "row_history",
    "review_draws", "backlog_draws", "item_states",
}


def _tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _revision(engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_the_model_knows_every_expected_table():
    assert set(SQLModel.metadata.tables) == EXPECTED_TABLES


def test_migration_creates_every_table(engine):
    assert _tables(engine) == EXPECTED_TABLES | {"alembic_version"}
    assert _revision(engine) is not None


def test_migrated_schema_matches_the_models(engine):
    """Autogenerate against the migrated database finds nothing to do: the migration and models.py agree, but for
    the foreign keys PostgreSQL enforces with triggers instead (the model declares them for SQLite), which the
    migrations' own filter leaves out (so `alembic revision --autogenerate` does not propose them again)."""
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
        filtered = compare_metadata(MigrationContext.configure(
            conn, opts={"include_object": db.autogenerate_filter(engine.dialect.name)}), SQLModel.metadata)
    added = {(fk.parent.table.name, fk.parent.name, fk.column.table.name)
             for kind, constraint in (d for d in diff if d[0] == "add_fk") for fk in constraint.elements}
    if engine.dialect.name == "postgresql":
        assert added == db.trigger_checked_references() and len(added) == 5
        assert [d for d in diff if d[0] != "add_fk"] == []
    else:
        assert diff == []
    assert filtered == []


def test_migrating_twice_is_a_no_op(database_url):
    db.migrate(database_url)
    engine = db.make_engine(database_url)
    try:
        with engine.begin() as conn:
            insert_items(conn, [{"id": "kept", "segment": "default", "state": "received",
                                                   "received_at": store.models.utcnow(),
                                                   "updated_at": store.models.utcnow()}])
        before = (_tables(engine), _revision(engine))
        db.migrate(database_url)
        assert (_tables(engine), _revision(engine)) == before
        with engine.connect() as conn:
            assert conn.execute(text("select id from items")).scalars().all() == ["kept"]
    finally:
        engine.dispose()


def test_get_engine_migrates_once_and_reuses_the_engine(database_url):
    first = db.get_engine(database_url)
    assert db.get_engine(database_url) is first
    assert _tables(first) >= EXPECTED_TABLES


def test_dispose_engines_forgets_engines(database_url):
    first = db.get_engine(database_url)
    db.dispose_engines()
    second = db.get_engine(database_url)
    assert second is not first
    assert _tables(second) >= EXPECTED_TABLES


def test_session_scope_commits_and_rolls_back(engine):
    with db.session_scope(engine) as session:
        session.add(AuditEvent(kind="test.commit", payload={"n": 1}))
    with pytest.raises(RuntimeError, match="boom"):
        with db.session_scope(engine) as session:
            session.add(AuditEvent(kind="test.rollback"))
            session.flush()
            raise RuntimeError("boom")
    with engine.connect() as conn:
        kinds = conn.execute(text("select kind from audit_events")).scalars().all()
    assert kinds == ["test.commit"]


def test_foreign_keys_are_enforced(engine):
    from sqlalchemy.exc import IntegrityError

    from store.models import Prediction

    with pytest.raises(IntegrityError):
        with db.session_scope(engine) as session:
            session.add(Prediction(item_id="no-such-item", model_version="m1"))


# --- SQLite specifics -----------------------------------------------------------------------------------------


def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_url):
    engine = db.get_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
        # a bulk step's transaction stays in the page cache, and the log is checkpointed every 10,000 pages
        assert conn.execute(text("PRAGMA cache_size")).scalar() == -32 * 1024
        assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 10_000
        assert conn.execute(text("PRAGMA journal_size_limit")).scalar() == 64 * 1024 * 1024
    assert Path(sqlite_url.split("///", 1)[1]).is_file()


def test_every_sqlite_connection_gets_the_pragmas(sqlite_url):
    engine = db.get_engine(sqlite_url)
    connections = [engine.connect() for _ in range(3)]  # several pool connections, each set up by the event
    try:
        assert [c.execute(text("PRAGMA foreign_keys")).scalar() for c in connections] == [1, 1, 1]
    finally:
        for conn in connections:
            conn.close()


def test_sqlite_file_folder_is_created(tmp_path):
    url = f"sqlite:///{tmp_path / 'nested' / 'deeper' / 'sluice.db'}"
    try:
        engine = db.get_engine(url)
        assert (tmp_path / "nested" / "deeper" / "sluice.db").is_file()
        assert _tables(engine) >= EXPECTED_TABLES
    finally:
        db.dispose_engines()


def test_in_memory_sqlite_url_creates_no_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    engine = db.make_engine("sqlite://")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("select 1")).scalar() == 1
    finally:
        engine.dispose()
    assert list(tmp_path.iterdir()) == []


# --- choosing the database from the environment -----------------------------------------------------------------


@pytest.fixture
def clean_settings(monkeypatch):
    for name in ("SLUICE_DATABASE_URL", "SLUICE_HOME"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()
    db.dispose_engines()


def test_sluice_home_puts_the_sqlite_file_there(clean_settings, tmp_path):
    clean_settings.setenv("SLUICE_HOME", str(tmp_path / "state"))
    assert get_settings().resolved_database_url == f"sqlite:///{tmp_path / 'state' / 'sluice.db'}"
    engine = db.get_engine()
    assert engine.url.database == str(tmp_path / "state" / "sluice.db")
    assert (tmp_path / "state" / "sluice.db").is_file()
    assert _tables(engine) >= EXPECTED_TABLES


def test_sluice_database_url_wins_over_sluice_home(clean_settings, tmp_path):
    clean_settings.setenv("SLUICE_HOME", str(tmp_path / "home"))
    clean_settings.setenv("SLUICE_DATABASE_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    engine = db.get_engine()
    assert engine.url.database == str(tmp_path / "elsewhere.db")
    assert not (tmp_path / "home" / "sluice.db").exists()
    assert _tables(engine) >= EXPECTED_TABLES


@pytest.mark.integration
def test_sluice_database_url_selects_postgresql(clean_settings, fresh_postgres_url):
    clean_settings.setenv("SLUICE_DATABASE_URL", fresh_postgres_url)
    engine = db.get_engine()
    assert engine.dialect.name == "postgresql"
    assert _tables(engine) == EXPECTED_TABLES | {"alembic_version"}


def test_settings_are_cached_until_cleared(clean_settings, tmp_path):
    clean_settings.setenv("SLUICE_HOME", str(tmp_path / "a"))
    first = get_settings()
    clean_settings.setenv("SLUICE_HOME", str(tmp_path / "b"))
    assert get_settings() is first  # lru_cache: a changed environment is not seen ...
    get_settings.cache_clear()
    assert get_settings().resolved_home == (tmp_path / "b").resolve()  # ... until the cache is cleared


# --- the read-only engine the console uses ------------------------------------------------------------------------


def test_a_read_only_engine_reads_and_refuses_every_write(database_url):
    db.migrate(database_url)
    reader = db.read_only_engine(database_url)
    try:
        with reader.connect() as conn:
            assert conn.execute(text("select count(*) from items")).scalar() == 0
        with pytest.raises(Exception, match="(?i)read.only|readonly|attempt to write"):
            with reader.begin() as conn:
                insert_items(conn, [{"id": "x", "segment": "default", "state": "received",
                                                       "received_at": store.models.utcnow(),
                                                       "updated_at": store.models.utcnow()}])
    finally:
        reader.dispose()


def test_a_read_only_engine_refuses_a_missing_or_unmigrated_store_and_creates_nothing(tmp_path, database_url):
    missing = tmp_path / "nowhere" / "sluice.db"
    with pytest.raises(db.StoreNotReady, match="no Sluice store at .*: run `sluice init`"):
        db.read_only_engine(f"sqlite:///{missing}")
    assert not missing.parent.exists()
    empty = db.make_engine(database_url)
    with empty.connect():  # the database exists (an empty SQLite file, a fresh PostgreSQL one), never migrated
        pass
    empty.dispose()
    with pytest.raises(db.StoreNotReady, match="has no Sluice schema: run `sluice init`"):
        db.read_only_engine(database_url)
