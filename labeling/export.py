"""Training data out: `sluice export sft|dpo|extraction OUT.jsonl` (README, "Training data out").

Each run appends to OUT the records of the answers it does not hold yet, one JSON object a line, so exporting is
incremental and idempotent: a second run with no new answers writes nothing. A record is known by its
``metadata.record_key``, a hash of the item, the label it came from and the record's content; an answer people
changed later (an edited correction) gives a new record with a later ``answered_at``, and readers keep the latest
per ``item_id`` (and ``source`` for DPO). A line cut short by a crash mid-write is dropped before anything is
appended, so a crash never leaves a broken file or a lost record (the next run writes it again).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from labeling.training_data import dpo_from_correction, dpo_from_pair, extraction_record, sft_record
from store.training import AnsweredItem, answered_items
from store.vocab import ItemKind

__all__ = ["EXPORTS", "Exported", "export_training_data", "metadata_of", "records_for"]


@dataclass(frozen=True)
class Exported:
    written: int  # new records appended
    known: int  # records OUT already held (skipped)
    answers: int  # answers read
    no_record: int  # answers that make no record of this form (a rejection without correction, a tie, ...)


def metadata_of(row: AnsweredItem) -> dict[str, Any]:
    """The provenance every record carries."""
    return {
        "item_id": row.item_id, "segment": row.segment, "route": row.route,
        "selection_reason": row.selection_reason, "selection_probability": row.selection_probability,
        "annotators": row.annotators, "agreement": row.agreement, "resolution": row.resolution,
        "label": row.label, "label_id": row.label_id, "split": row.split, "label_source": row.source,
        "policy_version": row.policy_version, "model_version": row.model_version, "cycle": row.cycle,
        "answered_at": row.answered_at.isoformat(),
    }


def _sft(row: AnsweredItem) -> list[dict[str, Any]]:
    if row.label not in ("accept", "reject"):
        return []
    record = sft_record(row.payload["prompt"], row.payload["response"], verdict=row.label,
                        correction=(row.answer or {}).get("correction"), metadata=metadata_of(row))
    return [record] if record is not None else []


def _dpo(row: AnsweredItem) -> list[dict[str, Any]]:
    payload = row.payload
    if "response_a" in payload:
        if row.label not in ("a", "b", "tie"):
            return []
        meta = {**metadata_of(row), "shown_left": (row.answer or {}).get("left_is")}
        record = dpo_from_pair(payload["prompt"], payload["response_a"], payload["response_b"],
                               preferred=row.label, metadata=meta)
    else:
        if row.label != "reject":
            return []
        record = dpo_from_correction(payload["prompt"], payload["response"], (row.answer or {}).get("correction"),
                                     metadata=metadata_of(row))
    return [record] if record is not None else []


def _extraction(row: AnsweredItem) -> list[dict[str, Any]]:
    fields = (row.answer or {}).get("fields")
    if fields is None:
        return []
    known = set(row.payload["fields"])
    record = extraction_record(row.text or "", row.payload["fields"],
                               {name: value for name, value in fields.items() if name in known},
                               metadata={**metadata_of(row),
                                         "review_fields": (row.answer or {}).get("review_fields", [])})
    return [record]


#: form -> (the item kinds it reads, the records of one answer)
EXPORTS: dict[str, tuple[tuple[str, ...], Callable[[AnsweredItem], list[dict[str, Any]]]]] = {
    "sft": ((ItemKind.GENERATION,), _sft),
    "dpo": ((ItemKind.PAIRWISE, ItemKind.GENERATION), _dpo),
    "extraction": ((ItemKind.EXTRACTION,), _extraction),
}


def _key(record: dict[str, Any]) -> str:
    content = {k: v for k, v in record.items() if k != "metadata"}
    meta = record["metadata"]
    basis = json.dumps([meta["item_id"], meta["label_id"], meta.get("source"), content], sort_keys=True,
                       ensure_ascii=False)
    return hashlib.sha256(basis.encode()).hexdigest()[:32]


def records_for(engine: Engine, form: str, *, since: datetime | None = None) -> Iterator[dict[str, Any] | None]:
    """The records of `form` from the resolved answers (changed at or after `since`), each with its
    ``record_key``; None for an answer that makes none."""
    if form not in EXPORTS:
        raise ValueError(f"export form must be one of {sorted(EXPORTS)}, got {form!r}")
    item_kinds, build = EXPORTS[form]
    for kind in item_kinds:
        for row in answered_items(engine, kind, since=since):
            made = build(row)
            if not made:
                yield None
            for record in made:
                record["metadata"]["record_key"] = _key(record)
                yield record


def _existing_keys(out: Path) -> set[str]:
    """The record keys OUT holds, after cutting off a last line a crash left half-written."""
    if not out.exists():
        return set()
    keys: set[str] = set()
    good = 0
    with out.open("rb") as handle:
        for raw in handle:
            try:
                record = json.loads(raw)
            except ValueError:
                if raw.endswith(b"\n"):
                    raise ValueError(f"{out}: a line that is not JSON at byte {good}; not a Sluice export, "
                                     "nothing was written") from None
                break  # the last line, cut short by a crash mid-write: dropped below and written again
            if not raw.endswith(b"\n"):
                break
            key = (record.get("metadata") or {}).get("record_key") if isinstance(record, dict) else None
            if not key:
                raise ValueError(f"{out}: a record without metadata.record_key at byte {good}; not a Sluice "
                                 "export, nothing was written")
            keys.add(key)
            good += len(raw)
    if good != out.stat().st_size:
        with out.open("r+b") as handle:
            handle.truncate(good)
    return keys


def export_training_data(engine: Engine, form: str, out: Path, *, since: datetime | None = None,
                         progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None) -> Exported:
    """Append to `out` the records of `form` it does not hold yet (see the module docstring)."""
    if out.suffix.lower() != ".jsonl":
        raise ValueError(f"training data is written as JSON lines: give a .jsonl file, got {out.name!r}")
    known = _existing_keys(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = skipped = answers = empty = 0
    records = records_for(engine, form, since=since)
    with out.open("a", encoding="utf-8") as handle:
        for record in progress(records) if progress else records:
            answers += 1
            if record is None:
                empty += 1
                continue
            if record["metadata"]["record_key"] in known:
                skipped += 1
                continue
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            known.add(record["metadata"]["record_key"])
            written += 1
        handle.flush()
        os.fsync(handle.fileno())
    return Exported(written=written, known=skipped, answers=answers, no_record=empty)
