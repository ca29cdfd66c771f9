"""One item's whole story, for auditors: what it was, every routing decision with the versions, calibrator and
threshold evidence behind it, the review tasks it became, every human answer and the label they resolved to."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import IO, Any, NamedTuple

from sqlalchemy import Engine, select

from store.models import Annotation, CalibrationReportRow, Item, ItemSource, ItemStateRow, Label, ReviewTask
from store.decisions import DECISION_FIELDS, decision_trail, EVIDENCE_FIELDS

__all__ = ["TRAIL_COLUMNS", "ItemHistory", "item_history", "write_trail"]

TRAIL_COLUMNS = DECISION_FIELDS + tuple(f"evidence_{f}" for f in EVIDENCE_FIELDS)

TEXT_SHOWN = 2000  # characters of the item's text an auditor sees here (the store keeps all of it)


class ItemHistory(NamedTuple):
    item: dict[str, Any]
    decisions: list[dict[str, Any]]
    calibrators: dict[int, dict[str, Any]]  # calibration report id -> model, segment, method, n, ece, gate
    tasks: list[dict[str, Any]]
    answers: list[dict[str, Any]]
    label: dict[str, Any] | None


def _rows(engine: Engine, table: Any, *where: Any, order: Any = None) -> list[dict[str, Any]]:
    query = select(table).where(*where)
    if order is not None:
        query = query.order_by(order)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def item_history(engine: Engine, item_id: str) -> ItemHistory | None:
    """Everything the store knows of `item_id`, oldest first; None when there is no such item."""
    query = (select(Item.__table__, ItemStateRow.state, ItemStateRow.updated_at, ItemSource.path.label("source"))
             .outerjoin(ItemStateRow, ItemStateRow.item_id == Item.id)
             .outerjoin(ItemSource, ItemSource.id == Item.source_id).where(Item.id == item_id))
    with engine.connect() as conn:
        found = conn.execute(query).first()
    if found is None:
        return None
    item = dict(found._mapping)
    if item.get("text") and len(item["text"]) > TEXT_SHOWN:
        item["text"] = item["text"][:TEXT_SHOWN] + " …"
    decisions = list(decision_trail(engine, item_id=item_id))
    calibration_ids = sorted({d["calibration_id"] for d in decisions if d["calibration_id"] is not None})
    reports = CalibrationReportRow.__table__
    calibrators: dict[int, dict[str, Any]] = {
        row["id"]: {key: row[key] for key in ("model_version", "segment", "method", "n", "ece", "ece_high", "passed",
                                              "created_at") if key in row}
        for row in _rows(engine, reports, reports.c.id.in_(calibration_ids))} if calibration_ids else {}
    tasks = _rows(engine, ReviewTask.__table__, ReviewTask.__table__.c.item_id == item_id,
                  order=ReviewTask.__table__.c.id)
    answers = _rows(engine, Annotation.__table__, Annotation.__table__.c.item_id == item_id,
                    order=Annotation.__table__.c.id)
    labels = _rows(engine, Label.__table__, Label.__table__.c.item_id == item_id)
    return ItemHistory(item, decisions, calibrators, tasks, answers, labels[0] if labels else None)


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value as a spreadsheet opens it safely: text that starts like a formula (=, +, -, @, tab, carriage
    return) gets a leading apostrophe, so a segment or an item id such as `=HYPERLINK(...)` stays text (OWASP's
    CSV injection advice); numbers are left as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def write_trail(records: Iterable[dict[str, Any]], handle: IO[str], *, fmt: str) -> int:
    """Write decision records (`decision_trail`) as `jsonl` or `csv` (lists as JSON, text that starts like a
    formula escaped: `csv_cell`); returns how many. The CLI's `sluice audit export` and the console's export both
    write through here."""
    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"the audit trail is written as jsonl or csv, not {fmt!r}")
    writer = csv.writer(handle) if fmt == "csv" else None
    if writer:
        writer.writerow(TRAIL_COLUMNS)
    count = 0
    for record in records:
        if writer:
            writer.writerow([csv_cell(json.dumps(v) if isinstance(v, list) else v) for v in record.values()])
        else:
            handle.write(json.dumps(record, default=str) + "\n")
        count += 1
    return count
