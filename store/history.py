"""Append-only history of annotations and labels: before one is changed or withdrawn, its old row is kept whole in
`row_history` with when and why, so every earlier answer and label can be read back (for audits)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Table, select

from store.bulk import chunked
from store.models import RowHistory

__all__ = ["keep_history"]


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, (datetime, date)) else value


def keep_history(conn: Connection, table: Table, key: str, keys: Sequence[Any], *, reason: str,
                 at: datetime, where: Any = None) -> int:
    """Copy the rows of `table` whose `key` column is in `keys` (and that meet `where`) into `row_history`, in the
    caller's transaction, before it changes or deletes them; returns how many were kept."""
    kept = 0
    for part in chunked(list(keys), 5_000):
        query = select(table).where(table.c[key].in_(part))
        if where is not None:
            query = query.where(where)
        rows = [dict(row) for row in conn.execute(query).mappings()]
        if rows:
            conn.execute(RowHistory.__table__.insert(), [
                {"table_name": table.name, "row_key": str(row[key]), "old": {k: _plain(v) for k, v in row.items()},
                 "reason": reason, "replaced_at": at} for row in rows])
            kept += len(rows)
    return kept
