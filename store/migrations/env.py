"""Alembic environment: Sluice's tables from the SQLModel metadata."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, Engine, event
from sqlmodel import SQLModel

import store.models  # noqa: F401  (registers the tables)
from store.db import autogenerate_filter, make_engine

target_metadata = SQLModel.metadata


def run_migrations() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    if url is None:
        raise RuntimeError("the Alembic config names no sqlalchemy.url to migrate")
    engine = make_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        _sqlite_transactional_ddl(engine)
    applied: list[str] = []
    try:
        with engine.connect() as connection:
            if sqlite:  # a table rebuild drops the old table, which foreign keys pointing at it would refuse
                _driver_pragma(connection, "foreign_keys=OFF")
            # transactional_ddl: Alembic would otherwise commit each SQLite migration on its own
            context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=sqlite,
                              transactional_ddl=True if sqlite else None,
                              include_object=autogenerate_filter(engine.dialect.name),
                              on_version_apply=lambda **kw: applied.append(str(kw["step"])))
            with context.begin_transaction():
                context.run_migrations()
                if sqlite and applied:
                    _refuse_broken_foreign_keys(connection)
            if sqlite:
                _driver_pragma(connection, "foreign_keys=ON")
    finally:
        engine.dispose()


def _driver_pragma(connection: Connection, pragma: str) -> None:
    """A pragma run on the driver's connection, outside SQLAlchemy's transaction (foreign_keys is a no-op inside)."""
    driver = connection.connection.driver_connection
    assert driver is not None  # an open connection has its driver's
    driver.execute(f"PRAGMA {pragma}")


def _sqlite_transactional_ddl(engine: Engine) -> None:
    """SQLite's procedure for a schema change (its documentation, *Making Other Kinds Of Table Schema Changes*):
    foreign keys off outside the transaction, every change in one transaction, every foreign key checked before it
    commits. The driver would otherwise run DDL outside any transaction (it begins one only before DML), so here
    SQLAlchemy's begin emits the BEGIN itself: a failed or refused migration then leaves nothing behind."""

    @event.listens_for(engine, "connect")
    def _driver_autocommit(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        connection.exec_driver_sql("BEGIN")


def _refuse_broken_foreign_keys(connection: Connection) -> None:
    """Roll the migration back when any row's foreign key points at nothing (rows broken before it count too: the
    store stays as it was, at its old revision, until they are mended)."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise RuntimeError(
            f"the store was not migrated: {len(broken)} rows have foreign keys that point at nothing (table, rowid, "
            f"missing parent), e.g. {[tuple(row[:3]) for row in broken[:5]]}; mend or delete them and run again")


run_migrations()
