"""Reading producer files (JSONL, CSV, Parquet) in chunks, checking each record against the contract."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from store.bulk import existing_keys, insert_ignore
from store.models import Item, ItemState, QuarantinedRecord

CHUNK_SIZE = 20_000
MAX_TEXT_CHARS = 100_000
MAX_ID_CHARS = 512
PROBS_TOLERANCE = 1e-3
KNOWN_FIELDS = {"id", "text", "features", "segment", "prediction", "confidence", "probs", "metadata"}
JSON_COLUMNS = ("features", "probs", "metadata")


class RecordError(ValueError):
    """A record that breaks the input contract; `reason` is machine-readable."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class RawRecord:
    number: int
    value: dict[str, Any] | None
    raw: str
    error: RecordError | None = None


@dataclass
class IngestSummary:
    source: str
    accepted: int = 0
    duplicate: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.accepted + self.duplicate + sum(self.quarantined.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "quarantined": dict(self.quarantined),
            "total": self.total,
        }


def _clip(raw: str | bytes, limit: int = 2_000) -> str:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return text if len(text) <= limit else text[:limit] + "…"


def read_jsonl(path: Path) -> Iterator[RawRecord]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield RawRecord(number, None, _clip(line), RecordError("undecodable_text", str(exc)))
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                yield RawRecord(number, None, _clip(text), RecordError("invalid_json", str(exc)))
                continue
            if not isinstance(value, dict):
                yield RawRecord(number, None, _clip(text), RecordError("not_an_object", type(value).__name__))
                continue
            yield RawRecord(number, value, text)


def _csv_value(column: str, value: str) -> Any:
    if value == "":
        return None
    if column in JSON_COLUMNS:
        return json.loads(value)
    if column == "confidence":
        return float(value)
    return value


def read_csv(path: Path) -> Iterator[RawRecord]:
    csv.field_size_limit(2**31 - 1)
    with path.open("r", encoding="utf-8", errors="surrogateescape", newline="") as handle:
        reader = csv.DictReader(handle)
        for number, row in enumerate(reader, start=2):
            raw = ",".join(v or "" for v in row.values() if isinstance(v, str))
            if any(isinstance(v, str) and _has_surrogates(v) for v in row.values()):
                yield RawRecord(number, None, _clip(raw.encode("utf-8", "surrogateescape")),
                                RecordError("undecodable_text", "bytes that are not UTF-8"))
                continue
            try:
                value = {k: _csv_value(k, v) for k, v in row.items() if k is not None and v is not None}
            except (ValueError, json.JSONDecodeError) as exc:
                yield RawRecord(number, None, _clip(raw), RecordError("invalid_field", str(exc)))
                continue
            yield RawRecord(number, value, raw)


def read_parquet(path: Path) -> Iterator[RawRecord]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_SIZE):
        for value in batch.to_pylist():
            number += 1
            if isinstance(value.get("probs"), list):  # Parquet maps arrive as (key, value) pairs
                value["probs"] = dict(value["probs"])
            yield RawRecord(number, value, "")


READERS: dict[str, Callable[[Path], Iterator[RawRecord]]] = {
    ".jsonl": read_jsonl,
    ".ndjson": read_jsonl,
    ".json": read_jsonl,
    ".csv": read_csv,
    ".parquet": read_parquet,
    ".pq": read_parquet,
}


def reader_for(path: Path) -> Callable[[Path], Iterator[RawRecord]]:
    try:
        return READERS[path.suffix.lower()]
    except KeyError:
        raise ValueError(
            f"cannot read {path.name!r}: expected one of {', '.join(sorted(READERS))} (JSONL, CSV or Parquet)"
        ) from None


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(f"{name}_invalid", f"{name} must be a number, got {value!r}")
    value = float(value)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise RecordError(f"{name}_invalid", f"{name} must lie in [0, 1], got {value!r}")
    return value


def _check_id(value: dict[str, Any]) -> str:
    item_id = value.get("id")
    if item_id is None or item_id == "":
        raise RecordError("missing_id", "the record has no id")
    if isinstance(item_id, bool) or not isinstance(item_id, (str, int)):
        raise RecordError("invalid_id", f"id must be a string, got {item_id!r}")
    item_id = str(item_id)
    if len(item_id) > MAX_ID_CHARS:
        raise RecordError("invalid_id", f"id longer than {MAX_ID_CHARS} characters")
    return item_id


def _check_text(value: dict[str, Any]) -> str | None:
    text = value.get("text")
    if text is None:
        return None
    if not isinstance(text, str):
        raise RecordError("text_invalid", f"text must be a string, got {type(text).__name__}")
    if _has_surrogates(text):
        raise RecordError("undecodable_text", "text holds characters that are not valid UTF-8")
    if len(text) > MAX_TEXT_CHARS:
        raise RecordError("text_too_long", f"text has {len(text)} characters, the limit is {MAX_TEXT_CHARS}")
    return text


def _check_features(value: dict[str, Any]) -> list[float] | None:
    features = value.get("features")
    if features is None:
        return None
    if not isinstance(features, list) or not features:
        raise RecordError("features_invalid", "features must be a non-empty list of numbers")
    out = []
    for x in features:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise RecordError("features_invalid", f"features must be finite numbers, got {x!r}")
        out.append(float(x))
    return out


def _check_probs(value: dict[str, Any], labels: frozenset[str] | None) -> dict[str, float] | None:
    probs = value.get("probs")
    if probs is None:
        return None
    if not isinstance(probs, dict) or not probs:
        raise RecordError("probs_invalid", "probs must be an object mapping label to probability")
    checked = {str(k): _number(v, "probs") for k, v in probs.items()}
    total = sum(checked.values())
    if abs(total - 1.0) > PROBS_TOLERANCE:
        raise RecordError("probs_not_normalised", f"probabilities sum to {total:.6g}, not 1")
    if labels is not None and not set(checked) <= labels:
        raise RecordError("unknown_label", f"probs name labels outside the label set: {sorted(set(checked) - labels)}")
    return checked


def validate_record(value: dict[str, Any], *, labels: frozenset[str] | None = None) -> dict[str, Any]:
    """The item row for a contract-abiding record; raises RecordError with a machine-readable reason."""
    item_id = _check_id(value)
    text = _check_text(value)
    features = _check_features(value)
    if text is None and features is None:
        raise RecordError("missing_content", "the record has neither text nor features")
    confidence = value.get("confidence")
    confidence = None if confidence is None else _number(confidence, "confidence")
    probs = _check_probs(value, labels)
    prediction = value.get("prediction")
    if prediction is not None:
        prediction = str(prediction)
        if labels is not None and prediction not in labels:
            raise RecordError("unknown_label", f"prediction {prediction!r} is not in the label set")
    segment = value.get("segment") or "default"
    if not isinstance(segment, str) or len(segment) > 128:
        raise RecordError("segment_invalid", f"segment must be a short string, got {segment!r}")
    metadata = value.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise RecordError("metadata_invalid", "metadata must be an object")
    return {
        "id": item_id,
        "segment": segment,
        "text": text,
        "features": features,
        "upstream_prediction": prediction,
        "upstream_confidence": confidence,
        "upstream_probs": probs,
        "metadata": metadata,
    }


def _write_chunk(
    engine: Engine, source: str, rows: list[dict[str, Any]], bad: list[dict[str, Any]], summary: IngestSummary
) -> None:
    now = datetime.now(timezone.utc)
    unique: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["id"] in unique:
            summary.duplicate += 1
        else:
            unique[row["id"]] = row
    with engine.begin() as conn:
        present = existing_keys(conn, Item.__table__.c.id, unique)
        fresh = [
            {**row, "state": ItemState.received.value, "source": source, "received_at": now, "updated_at": now}
            for item_id, row in unique.items()
            if item_id not in present
        ]
        insert_ignore(conn, Item.__table__, fresh)
        for row in bad:
            row["created_at"] = now
        insert_ignore(conn, QuarantinedRecord.__table__, bad)
    summary.accepted += len(fresh)
    summary.duplicate += len(present)


def ingest_file(
    engine: Engine,
    path: Path,
    *,
    labels: frozenset[str] | None = None,
    chunk_size: int = CHUNK_SIZE,
    on_progress: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Stream `path` into the store in chunks; idempotent on `id`; bad records go to quarantine."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such input file: {path}")
    read = reader_for(path)
    source = str(path.resolve())
    summary = IngestSummary(source=source)
    rows: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    for record in read(path):
        try:
            if record.error is not None:
                raise record.error
            rows.append(validate_record(record.value or {}, labels=labels))
        except RecordError as exc:
            summary.quarantined[exc.reason] += 1
            record_id = record.value.get("id") if record.value else None
            bad.append({
                "source": source, "record_number": record.number, "reason": exc.reason,
                "detail": _clip(exc.detail, 500), "raw": _clip(record.raw or json.dumps(record.value, default=str)),
                "record_id": None if record_id is None else _clip(str(record_id), MAX_ID_CHARS),
            })
        if len(rows) + len(bad) >= chunk_size:
            _write_chunk(engine, source, rows, bad, summary)
            if on_progress:
                on_progress(len(rows) + len(bad))
            rows, bad = [], []
    if rows or bad:
        _write_chunk(engine, source, rows, bad, summary)
        if on_progress:
            on_progress(len(rows) + len(bad))
    return summary
