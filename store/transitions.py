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

from store.bulk import chunked, existing_keys, keys_among
from store.models import AuditEvent, Item, ItemStateRow
from store.predictions import upstream_predicted
from store.vocab import ItemState

__all__ = ["SOURCES", "Moved", "born_states", "move_items", "states_of"]

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
    """How many items moved into each state, and how many asked to move did not (already there, or refused); with
    ``returning``, the ids of the items that moved."""

    moved: dict[str, int]
    unmoved: int
    ids: frozenset[str] | None = None


def move_items(conn: Connection, targets: Mapping[str, str], *, by: str, returning: bool = False) -> Moved:
    """Move each item id of `targets` into its target state where the lifecycle allows it (see the module
    docstring), in the caller's transaction; record the counts as one ``item_states`` audit event by `by`. With
    `returning`, the result also says which items moved (see `_moved_ids`)."""
    wanted: dict[ItemState, list[str]] = {}
    for item_id, state in targets.items():
        wanted.setdefault(ItemState(state), []).append(item_id)
    now = datetime.now(timezone.utc)
    moved: Counter[str] = Counter()
    chosen, chunk = keys_among(conn, ItemStateRow.item_id)  # PostgreSQL takes the ids as one array parameter
    for state, ids in wanted.items():
        # the state test wraps the column in a function: SQLite would otherwise pick the state index and scan
        # every item in the source states for each chunk of ids
        statement = (
            update(ItemStateRow)
            .where(chosen, func.coalesce(ItemStateRow.state, "").in_(sorted(SOURCES[state])))
            .values(state=state.value, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        for part in chunked(ids, chunk):
            moved[state.value] += conn.execute(statement, {"ids": list(part)}).rowcount
    result = Moved(dict(moved), len(targets) - sum(moved.values()),
                   _moved_ids(conn, targets, sum(moved.values()), now) if returning else None)
    if result.moved and sum(result.moved.values()):  # a re-run that moves nothing writes nothing
        conn.execute(insert(AuditEvent).values(
            kind="item_states", actor=by, created_at=now,
            payload={"moved": result.moved, "unmoved": result.unmoved,
                     "requested": {s.value: len(ids) for s, ids in wanted.items()}}))
    return result


def _moved_ids(conn: Connection, targets: Mapping[str, str], n_moved: int, now: datetime) -> frozenset[str]:
    """The items of `targets` that this call moved: all of them when as many moved as were asked to (the normal
    case, at no cost); else the ones whose state row now carries this call's own timestamp, read back (an item already
    in its target state or refused was not written). Cheaper than an ``UPDATE ... RETURNING`` of every id, which
    doubled the moves' time on PostgreSQL at 200,000 items."""
    if n_moved == len(targets):
        return frozenset(targets)
    if not n_moved:
        return frozenset()
    return frozenset(existing_keys(conn, ItemStateRow.__table__.c.item_id, list(targets),
                                   ItemStateRow.updated_at == now))


def states_of(engine: Engine) -> dict[str, str]:
    """The state of every stored item."""
    with engine.connect() as conn:
        return {item_id: state for item_id, state in conn.execute(select(ItemStateRow.item_id, ItemStateRow.state))}
