"""Alembic environment: Sluice's tables from the SQLModel metadata."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

import store.models  # noqa: F401  (registers the tables)
from store.db import make_engine

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
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:  # a table rebuild drops the old table, which foreign keys pointing at it would refuse
            _sqlite_foreign_keys(connection, on=False)
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=sqlite)
        with context.begin_transaction():
            context.run_migrations()
        if sqlite:
            _sqlite_foreign_keys(connection, on=True)
    engine.dispose()


def _sqlite_foreign_keys(connection: Connection, *, on: bool) -> None:
    """SQLite's procedure for a schema change (its documentation, *Making Other Kinds Of Table Schema Changes*):
    foreign keys off outside the transaction, and once it has committed, every foreign key checked before they are
    on again. A violation stops the upgrade with the rows that break it."""
    connection.commit()  # the pragma is a no-op inside a transaction
    if on:
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise RuntimeError(f"the migration left {len(broken)} rows whose foreign keys point at nothing, "
                               f"e.g. {[tuple(row) for row in broken[:5]]}")
    connection.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    connection.commit()


run_migrations()
