"""Bulk writes that stay idempotent on both SQLite and PostgreSQL: insert-or-ignore and chunked look-ups."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

# SQLite allows 32,766 bound parameters per statement; PostgreSQL 65,535. Stay well under both.
LOOKUP_CHUNK = 5_000


def chunked(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def insert_ignore(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows`, skipping any that collide with a unique key already present."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "sqlite":
        statement = sqlite.insert(table).on_conflict_do_nothing()
    elif dialect == "postgresql":
        statement = postgresql.insert(table).on_conflict_do_nothing()
    else:
        raise ValueError(f"unsupported database dialect {dialect!r}: Sluice runs on SQLite or PostgreSQL")
    conn.execute(statement, list(rows))


def existing_keys(conn: Connection, column: Any, keys: Iterable[Any]) -> set[Any]:
    """Which of `keys` are already present in `column`."""
    keys = list(keys)
    found: set[Any] = set()
    for part in chunked(keys, LOOKUP_CHUNK):
        found.update(conn.execute(select(column).where(column.in_(part))).scalars())
    return found


def set_column(conn: Connection, table: Table, key: str, column: str, values: dict[Any, Any]) -> None:
    """Set `column` to a per-row value for the rows whose `key` is in `values` (one executemany)."""
    if not values:
        return
    statement = (
        update(table)
        .where(table.c[key] == bindparam("_key"))
        .values({column: bindparam("_value")})
        .execution_options(synchronize_session=False)
    )
    conn.execute(statement, [{"_key": k, "_value": v} for k, v in values.items()])
