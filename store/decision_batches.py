"""Decisions written as batches: what a route run held constant for a group of items is one ``routing_batches`` row,
and each decision row carries only what varies per item (its route, reasons, confidences, draw probability, the
decision it supersedes) and its batch's id.

`write_decisions` writes both in the caller's transaction; `full_decisions` reads them back joined, with every
column a decision had before the split, for the queries and records that want a decision whole.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from sqlalchemy import Connection, Subquery, insert, select

from store.bulk import insert_ignore_columns
from store.models import RoutingBatch, RoutingDecision, utcnow

__all__ = ["BATCH_FIELDS", "DecisionBatch", "ITEM_FIELDS", "full_decisions", "record_decisions", "write_decisions"]

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

    def only(self, item_ids: Collection[str]) -> DecisionBatch:
        """The same batch with the decisions of `item_ids` alone."""
        return self.take([i for i, item_id in enumerate(self.columns["item_id"]) if item_id in item_ids])


def write_decisions(conn: Connection, batches: Sequence[DecisionBatch]) -> int:
    """Write each non-empty batch's row and its decisions, in the caller's transaction; the number of decisions."""
    batches = [batch for batch in batches if len(batch)]
    if not batches:
        return 0
    unknown = {name for batch in batches for name in batch.constants} - set(BATCH_FIELDS)
    if unknown:
        raise ValueError(f"not a batch column: {sorted(unknown)}")
    now = utcnow()
    rows = [{name: batch.constants.get(name) for name in BATCH_FIELDS} for batch in batches]
    for row in rows:
        row["created_at"] = row["created_at"] or now
    ids = conn.execute(insert(RoutingBatch).returning(RoutingBatch.id, sort_by_parameter_order=True), rows).scalars()
    columns: dict[str, list[Any]] = {name: [] for name in (*ITEM_FIELDS, "batch_id")}
    for batch, batch_id in zip(batches, ids.all()):
        for name in ITEM_FIELDS:
            columns[name].extend(batch.columns[name])
        columns["batch_id"].extend([batch_id] * len(batch))
    insert_ignore_columns(conn, RoutingDecision.__table__, columns, encoded_json=("reasons",))
    return len(columns["item_id"])


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
