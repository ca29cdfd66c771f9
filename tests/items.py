"""Items written straight into a test's store in the state a test asks for (``store.models.ItemStateRow``): for
tests that need items in a given state without running the steps that put them there."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, bindparam

from store.models import Item, ItemStateRow, utcnow
from store.transitions import born_states
from store.vocab import ItemState

_STATE_ONLY = ("state", "updated_at")


def insert_items(conn: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert item rows given as the items table's columns plus ``state`` (default received) and ``updated_at``
    (default the item's ``received_at``); ``segment`` defaults to ``default`` and ``received_at`` to now. Each item
    gets its born state row as ingest's do (``store.transitions.born_states``); this sets it to the state asked
    for."""
    now = utcnow()
    items, states = [], []
    for row in rows:
        item = {key: value for key, value in row.items() if key not in _STATE_ONLY}
        item.setdefault("segment", "default")
        item.setdefault("received_at", now)
        items.append(item)
        states.append({"key": item["id"], "state": str(row.get("state", ItemState.received)),
                       "updated_at": row.get("updated_at", item["received_at"])})
    if items:
        with born_states(conn):
            conn.execute(Item.__table__.insert(), items)
        table = ItemStateRow.__table__
        conn.execute(table.update().where(table.c.item_id == bindparam("key")), states)
