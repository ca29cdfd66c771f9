"""Item state transitions: the lifecycle of docs/architecture.md as data, and the one function that moves items along it.

`received -> scored -> routed -> (auto_accepted | queued -> annotated -> resolved)`, with the loop's returns
(a routed item a newer model rescores goes back to scored; an item whose annotators disagreed goes back to the
queue, its label withdrawn) and a seed label resolving any live item. An item's state is its narrow
``item_states`` row (``store.models.ItemStateRow``), so a move never rewrites the item. `move_items` writes only
legal moves: an item already in the target state is left alone (re-running a step is a no-op) and an item in any
other state is left alone too and counted as refused. Each call records who moved how many items where, as one
audit event.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import NamedTuple

from sqlalchemy import ColumnElement, Connection, Engine, Integer, case, func, insert, literal_column, select, update

from store.bulk import chunked, keys_among
from store.models import AuditEvent, Item, ItemStateRow
from store.predictions import upstream_predicted
from store.vocab import ItemState

__all__ = ["SOURCES", "Moved", "born_states", "movable_into", "move_items", "record_moves", "states_of"]

_LIVE = frozenset({ItemState.received, ItemState.scored, ItemState.routed, ItemState.auto_accepted,
                   ItemState.queued, ItemState.annotated})
# The states an item may be moved *from* into each state.
SOURCES: dict[ItemState, frozenset[ItemState]] = {
    ItemState.scored: frozenset({ItemState.received, ItemState.routed}),  # first scoring, or a newer model's
    ItemState.routed: frozenset({ItemState.scored}),
    ItemState.auto_accepted: frozenset({ItemState.scored}),
    ItemState.queued: frozenset({ItemState.routed, ItemState.annotated, ItemState.resolved}),  # escalation
    ItemState.annotated: frozenset({ItemState.queued}),
    ItemState.resolved: _LIVE,  # a human label (a review's, or a seed label for any live item)
    ItemState.quarantined: _LIVE,
    ItemState.failed: _LIVE,
}


@contextmanager
def born_states(conn: Connection) -> Iterator[None]:
    """Every item inserted inside gets its state row, in the caller's transaction: born ``scored`` when its row
    holds its upstream prediction (``store.predictions.upstream_predicted``), else ``received``, moved when it was
    received. An item skipped by an insert's conflict (stored earlier) keeps the state row it has.

    PostgreSQL writes the rows itself, in the items' own statement (a trigger over the statement's rows, migration
    0019). SQLite's triggers run once per row, which cost as much as the items' insert itself (200,000 items in raw
    ``sqlite3``: 1.08 s without state rows, 2.05 s with the trigger, 1.41 s with this), so there the rows inserted
    inside are found after it by rowid (a rowid table numbers new rows above every row it holds; the write
    transaction keeps any other writer out) and given their state rows in one ``INSERT ... SELECT`` (migration
    0020 dropped the trigger)."""
    if conn.dialect.name != "sqlite":
        yield
        return
    rowid: ColumnElement[int] = literal_column("items.rowid", Integer)
    last = conn.execute(select(func.max(rowid)).select_from(Item)).scalar() or 0
    yield
    born = case((upstream_predicted(), ItemState.scored.value), else_=ItemState.received.value)
    conn.execute(insert(ItemStateRow).from_select(
        ["item_id", "state", "segment", "updated_at"],
        select(Item.id, born, Item.segment, Item.received_at).where(rowid > last)))


class Moved(NamedTuple):
    """How many items moved into each state, and how many asked to move did not (already there, or refused)."""

    moved: dict[str, int]
    unmoved: int


def move_items(conn: Connection, targets: Mapping[str, str], *, by: str) -> Moved:
    """Move each item id of `targets` into its target state where the lifecycle allows it (see the module
    docstring), in the caller's transaction; record the counts as one ``item_states`` audit event by `by`."""
    wanted: dict[ItemState, list[str]] = {}
    for item_id, state in targets.items():
        wanted.setdefault(ItemState(state), []).append(item_id)
    now = datetime.now(timezone.utc)
    moved: Counter[str] = Counter()
    chosen, chunk = keys_among(conn, ItemStateRow.item_id)  # one array parameter per chunk of ids
    for state, ids in wanted.items():
        statement = (
            update(ItemStateRow)
            .where(chosen, movable_into(state))
            .values(state=state.value, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        for part in chunked(ids, chunk):
            moved[state.value] += conn.execute(statement, {"ids": list(part)}).rowcount
    record_moves(conn, moved, {s.value: len(ids) for s, ids in wanted.items()}, by=by, now=now)
    return Moved(dict(moved), len(targets) - sum(moved.values()))


def movable_into(state: ItemState) -> ColumnElement[bool]:
    """True for a state row the lifecycle lets move into `state`. The test wraps the column in a function: SQLite
    would otherwise pick the state index and scan every item in the source states for each chunk of ids."""
    return func.coalesce(ItemStateRow.state, "").in_(sorted(SOURCES[state]))


def record_moves(conn: Connection, moved: Mapping[str, int], requested: Mapping[str, int], *, by: str,
                 now: datetime) -> None:
    """One ``item_states`` audit event: how many items `by` moved into each state, of how many it asked to move
    there; none when nothing moved (a step run again writes nothing)."""
    if not sum(moved.values()):
        return
    conn.execute(insert(AuditEvent).values(
        kind="item_states", actor=by, created_at=now,
        payload={"moved": dict(moved), "unmoved": sum(requested.values()) - sum(moved.values()),
                 "requested": dict(requested)}))


def states_of(engine: Engine) -> dict[str, str]:
    """The state of every stored item."""
    with engine.connect() as conn:
        return {item_id: state for item_id, state in conn.execute(select(ItemStateRow.item_id, ItemStateRow.state))}
