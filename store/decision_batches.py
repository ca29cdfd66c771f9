"""Decisions written as batches: what a route run held constant for a group of items is one ``routing_batches`` row,
and each decision row carries only what varies per item (its route, reasons, confidences, draw probability, the
decision it supersedes) and its batch's id.

`write_decisions` writes both in the caller's transaction; `full_decisions` reads them back joined, with every
column a decision had before the split, for the queries and records that want a decision whole.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import groupby
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Subquery, and_, case, delete, exists, func, insert, select, update

from store.bulk import insert_ignore_columns
from store.models import ItemStateRow, RoutingBatch, RoutingDecision, utcnow
from store.transitions import SOURCES, movable_into, record_moves
from store.vocab import ItemState

__all__ = ["BATCH_FIELDS", "DecisionBatch", "ITEM_FIELDS", "full_decisions", "record_decisions", "settle_decisions",
           "write_decisions"]

BATCH_FIELDS = ("segment", "policy_version", "model_version", "calibration_id", "threshold", "evidence_id",
                "audit_rate", "cycle", "run_id", "created_at")
ITEM_FIELDS = ("item_id", "route", "reasons", "raw_confidence", "calibrated_confidence", "predicted_label",
               "inclusion_probability", "supersedes_id")


@dataclass(frozen=True)
class DecisionBatch:
    """One batch row (`constants`, keyed by `BATCH_FIELDS`; any left out are NULL, ``created_at`` now) and its
    decisions as columns (`columns`, keyed by `ITEM_FIELDS`, equally long; ``reasons`` as encoded JSON text)."""

    constants: Mapping[str, Any]
    columns: Mapping[str, Sequence[Any]]

    def __len__(self) -> int:
        return len(self.columns["item_id"])

    def take(self, positions: Sequence[int]) -> DecisionBatch:
        """The same batch with the decisions at `positions` alone (in that order)."""
        if len(positions) == len(self):
            return self
        return DecisionBatch(self.constants, {name: [values[i] for i in positions]
                                              for name, values in self.columns.items()})


def write_decisions(conn: Connection, batches: Sequence[DecisionBatch]) -> int:
    """Write each non-empty batch's row and its decisions, in the caller's transaction, and point each decided
    item's state row at its newest decision (``ItemStateRow.decision_id``) without moving it; the number of
    decisions. Route writes its own with `settle_decisions`."""
    written = _insert(conn, batches)
    if written is None:
        return 0
    decisions = RoutingDecision.__table__
    newest = (select(decisions.c.item_id, func.max(decisions.c.id).label("id"))
              .where(written.among(decisions.c)).group_by(decisions.c.item_id).subquery())
    conn.execute(update(ItemStateRow).where(ItemStateRow.item_id == newest.c.item_id)
                 .values(decision_id=newest.c.id).execution_options(synchronize_session=False))
    return written.count


def settle_decisions(conn: Connection, batches: Sequence[DecisionBatch], state_after: Mapping[str, str], *,
                     by: str) -> Counter[str]:
    """Write the batches' decisions and move each decided item from ``scored`` into the state its route leads to
    (`state_after`), pointing its state row at the decision, in the caller's transaction: the move is one
    statement joining the new decisions to the state rows. A decision whose item was no longer scored (moved since
    it was read, or a batch run again) is deleted again, and a batch row left without decisions with it. Records
    the moves as ``store.transitions.move_items`` does; how many kept decisions took each route."""
    written = _insert(conn, batches)
    if written is None:
        return Counter()
    now = datetime.now(timezone.utc)
    decisions = RoutingDecision.__table__
    ours = written.among(decisions.c)
    into = {ItemState(state) for state in state_after.values()}
    sources = {frozenset(SOURCES[state]) for state in into}
    if len(sources) != 1:
        raise ValueError(f"the states {sorted(into)} are not reached from the same states")
    moved = conn.execute(
        update(ItemStateRow)
        .where(ItemStateRow.item_id == decisions.c.item_id, ours, movable_into(next(iter(into))))
        .values(state=case(*((decisions.c.route == route, state) for route, state in state_after.items())),
                decision_id=decisions.c.id, updated_at=now)
        .execution_options(synchronize_session=False)).rowcount
    routes = asked = Counter(route for batch in batches for route in batch.columns["route"])
    if moved < written.count:
        settled = exists().where(ItemStateRow.item_id == decisions.c.item_id, ItemStateRow.decision_id == decisions.c.id)
        conn.execute(delete(decisions).where(ours, ~settled))
        conn.execute(delete(RoutingBatch).where(RoutingBatch.id.in_(written.batch_ids),
                                                ~exists().where(decisions.c.batch_id == RoutingBatch.id)))
        routes = Counter({route: n for route, n in conn.execute(
            select(decisions.c.route, func.count()).where(ours).group_by(decisions.c.route))})
    record_moves(conn, _into_states(routes, state_after), _into_states(asked, state_after), by=by, now=now)
    return routes


def _into_states(routes: Counter[str], state_after: Mapping[str, str]) -> Counter[str]:
    """How many items went into each state, from how many decisions took each route."""
    states: Counter[str] = Counter()
    for route, n in routes.items():
        states[state_after[route]] += n
    return states


@dataclass(frozen=True)
class _Written:
    """The decisions one call wrote: those with an id above `after` in `batch_ids` (its own batch rows, which no
    other transaction writes into), `count` of them."""

    after: int
    batch_ids: list[int]
    count: int

    def among(self, columns: Any) -> ColumnElement[bool]:
        """True for a decision row of `columns` (the decisions table's) that this call wrote: an id range first,
        which both databases read through the primary key."""
        return and_(columns.id > self.after, columns.batch_id.in_(self.batch_ids))


def _insert(conn: Connection, batches: Sequence[DecisionBatch]) -> _Written | None:
    """Write each non-empty batch's row and its decisions; None when there were none."""
    batches = [batch for batch in batches if len(batch)]
    if not batches:
        return None
    unknown = {name for batch in batches for name in batch.constants} - set(BATCH_FIELDS)
    if unknown:
        raise ValueError(f"not a batch column: {sorted(unknown)}")
    now = utcnow()
    rows = [{name: batch.constants.get(name) for name in BATCH_FIELDS} for batch in batches]
    for row in rows:
        row["created_at"] = row["created_at"] or now
    after = cast(int, conn.execute(select(func.coalesce(func.max(RoutingDecision.id), 0))).scalar_one())
    batch_ids = [cast(int, batch_id) for batch_id in conn.execute(
        insert(RoutingBatch).returning(RoutingBatch.id, sort_by_parameter_order=True), rows).scalars()]
    columns: dict[str, list[Any]] = {name: [] for name in (*ITEM_FIELDS, "batch_id")}
    for batch, batch_id in zip(batches, batch_ids):
        for name in ITEM_FIELDS:
            columns[name].extend(batch.columns[name])
        columns["batch_id"].extend([batch_id] * len(batch))
    insert_ignore_columns(conn, RoutingDecision.__table__, columns, encoded_json=("reasons",))
    return _Written(after, batch_ids, len(columns["item_id"]))


def record_decisions(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
    """Write decisions given whole (every column of `BATCH_FIELDS` and `ITEM_FIELDS`, missing ones NULL, reasons
    as a list), in their order: each run of consecutive rows sharing their batch columns shares one batch row. For
    imports and hand-made stores."""
    runs = [list(run) for _, run in groupby(rows, key=lambda row: tuple(row.get(name) for name in BATCH_FIELDS))]
    batches = [
        DecisionBatch({name: run[0].get(name) for name in BATCH_FIELDS}, {
            name: [json.dumps(list(r.get(name) or [])) if name == "reasons" else r.get(name) for r in run]
            for name in ITEM_FIELDS})
        for run in runs
    ]
    return write_decisions(conn, batches)


def full_decisions(name: str = "decisions") -> Subquery:
    """Every decision with its batch's columns, under the names a decision row had before the split (and
    ``batch_id``): ``select(d.c.segment, ...).select_from(d)`` for ``d = full_decisions()``."""
    return (
        select(RoutingDecision.id, RoutingDecision.batch_id,
               *(getattr(RoutingDecision, f) for f in ITEM_FIELDS),
               *(getattr(RoutingBatch, f) for f in BATCH_FIELDS))
        .join(RoutingBatch, RoutingBatch.id == RoutingDecision.batch_id)
        .subquery(name)
    )
