"""Reading producer files (JSONL, CSV, Parquet) in chunks, checking each record against the contract."""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property, partial
from itertools import islice, repeat
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Engine, null, select

from store.bulk import chunked, collector_paused, existing_keys, insert_ignore, insert_ignore_columns
from store.models import Item, ItemSource, QuarantinedRecord
from store.passthrough import passthrough_prediction
from store.transitions import born_states

_fast_loads: Callable[[str | bytes], Any] | None
try:  # a fast JSON parser when present (Prefect brings it); json stays the reference for every edge case
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover
    _fast_loads = None

CHUNK_SIZE = 20_000
MAX_TEXT_CHARS = 100_000
MAX_ID_CHARS = 512
PROBS_TOLERANCE = 1e-3
KNOWN_FIELDS = {"id", "text", "features", "segment", "prediction", "confidence", "probs", "metadata", "kind",
                "prompt", "response", "context", "scores", "response_a", "response_b", "preference", "fields"}
JSON_COLUMNS = ("features", "probs", "metadata", "scores", "fields")
JSON_WHEN_LIST = ("prompt", "context")  # in CSV: a JSON list (chat messages, documents), else the plain text
KINDS = ("classification", "generation", "pairwise", "extraction")
ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")  # a \u0000 escape, not an escaped backslash + "u0000"


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
    """`raw` as a string any database can store: valid UTF-8 (lone surrogates replaced), no NUL, at most `limit`
    characters (the ellipsis included, so a clipped id still fits a `varchar(limit)` column)."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    if _has_surrogates(text):
        text = text.encode("utf-8", errors="replace").decode("utf-8")
    return text.replace("\x00", "\ufffd")  # replaced one-for-one, so the length stays within `limit`


def _show(value: Any, limit: int = 80) -> str:
    """A short repr for error details; never raises (huge ints and deep nesting cannot be repr'd)."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


# A record is its text (at most MAX_TEXT_CHARS, a few bytes a character), a payload and metadata: a line beyond
# this is refused unread rather than loaded whole (a 50 MB line would be parsed into memory before any check).
MAX_LINE_BYTES = 4_000_000


def bounded_lines(handle: Any, limit: int) -> Iterator[tuple[bytes, bool]]:
    """(line, whole) per line of a binary file, never holding more than `limit` + 1 bytes of one: the start of an
    oversized line with whole=False, the rest of it skipped in chunks."""
    while True:
        line = handle.readline(limit + 1)
        if not line:
            return
        if len(line) <= limit or line.endswith(b"\n"):
            yield line, True
            continue
        yield line[:200], False
        while line and not line.endswith(b"\n"):
            line = handle.readline(limit + 1)


def read_jsonl(path: Path) -> Iterator[RawRecord]:
    with path.open("rb") as handle:
        for number, (line, whole) in enumerate(bounded_lines(handle, MAX_LINE_BYTES), start=1):
            record = _jsonl_record(number, line, whole)
            if record is not None:
                yield record


def _jsonl_record(number: int, line: bytes, whole: bool) -> RawRecord | None:
    """The record of line `number` of a JSONL file (None for a blank line): its object, or why it has none."""
    if not whole:
        return RawRecord(number, None, _clip(line), RecordError(
            "record_too_large", f"the line is longer than {MAX_LINE_BYTES:,} bytes; not read"))
    if not line.strip():
        return None
    try:
        text = line.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        return RawRecord(number, None, _clip(line), RecordError("undecodable_text", str(exc)))
    try:
        value = _loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, int digit limit, deep nesting
        return RawRecord(number, None, _clip(text), RecordError("invalid_json", str(exc)))
    if not isinstance(value, dict):
        return RawRecord(number, None, _clip(text), RecordError("not_an_object", type(value).__name__))
    return RawRecord(number, value, text)


_PLAIN_TYPES = frozenset({str, int, bool, type(None)})
_FLOAT_FROM_BIG_INT = float(2**63)  # orjson reads an integer beyond 64 bits as a float; json keeps the int


def _loads(text: str) -> Any:
    """`json.loads(text)`, through orjson when it gives the same value: a flat object of strings, numbers,
    booleans and nulls (nested values, huge integers, NaN and anything orjson refuses go through json)."""
    if _fast_loads is None:
        return json.loads(text)
    try:
        value = _fast_loads(text)
    except ValueError:
        return json.loads(text)
    if type(value) is not dict:
        return json.loads(text)
    for v in value.values():
        kind = type(v)
        if kind is float:
            if not -_FLOAT_FROM_BIG_INT < v < _FLOAT_FROM_BIG_INT:
                return json.loads(text)
        elif kind not in _PLAIN_TYPES:
            return json.loads(text)
    return value


def _csv_value(column: str, value: str) -> Any:
    if value == "":
        return None
    if column in JSON_COLUMNS or (column in JSON_WHEN_LIST and value.lstrip().startswith("[")):
        return json.loads(value)
    if column in ("confidence", "preference"):
        return float(value)
    return value


class _Lines:
    """The physical lines of a file for `csv.reader`, numbered, keeping those of the record being read so that a
    broken record can be set aside and the lines after its first read again."""

    def __init__(self, lines: Iterator[str], start: int = 1) -> None:
        self.lines, self.next_number = lines, start
        self.pending: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        self.pending.append(line)
        self.next_number += 1
        return line

    def record_start(self) -> int:
        return self.next_number - len(self.pending)


def read_csv(path: Path) -> Iterator[RawRecord]:
    """The records of a CSV file with a header row naming its columns (one must be `id`). A record that breaks
    CSV's quoting (an unterminated quote would swallow every row after it) is quarantined by its first line and
    reading goes on from the next line; a row with more or fewer fields than the header is quarantined, never
    read into the wrong columns. Records are numbered by the line they start on."""
    csv.field_size_limit(2**31 - 1)
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        lines = _Lines(iter(handle))
        header: list[str] | None = None
        reader = csv.reader(lines, strict=True)
        while True:
            lines.pending = []
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                start, (first, *rest) = lines.record_start(), lines.pending
                if header is None:
                    raise ValueError(f"{path.name}: the header row is not valid CSV ({exc})") from None
                yield RawRecord(start, None, _clip(first), RecordError("csv_quoting", f"{exc}: from line {start}, "
                                                                       "reading went on at the next line"))
                lines = _Lines(itertools.chain(rest, lines.lines), start + 1)
                reader = csv.reader(lines, strict=True)
                continue
            start, raw = lines.record_start(), "".join(lines.pending).rstrip("\r\n")
            if not row:
                continue  # a blank line
            if header is None:
                header = [name.strip() for name in row]
                if "id" not in header:
                    raise ValueError(f"{path.name}: the first line must name the columns, one of them `id`; it is "
                                     f"{_clip(raw)!r} (a file without a header row?)")
                continue
            if len(row) != len(header):
                reason = "extra_columns" if len(row) > len(header) else "missing_columns"
                yield RawRecord(start, None, _clip(raw), RecordError(
                    reason, f"{len(row)} fields where the header names {len(header)} columns"))
                continue
            if any(_has_surrogates(v) for v in row):
                yield RawRecord(start, None, _clip(raw.encode("utf-8", "surrogateescape")),
                                RecordError("undecodable_text", "bytes that are not UTF-8"))
                continue
            try:
                value = {k: _csv_value(k, v) for k, v in zip(header, row)}
            except (ValueError, RecursionError) as exc:  # includes json.JSONDecodeError
                yield RawRecord(start, None, _clip(raw), RecordError("invalid_field", str(exc)))
                continue
            yield RawRecord(start, {k: v for k, v in value.items() if v is not None or k == "id"}, raw)


def check_file(path: Path) -> None:
    """Raise a one-line ValueError for a file that cannot be read as items at all, before anything starts (a bad
    record is quarantined, a bad file refused): not a regular file (a FIFO would block), an unknown suffix, text
    in UTF-16 or UTF-32 (every line would be quarantined as undecodable), a `.parquet` that is not Parquet, a CSV
    without a header naming `id`."""
    if not path.is_file():
        raise ValueError(f"{path} is not a regular file")
    read = reader_for(path)
    with path.open("rb") as handle:
        start = handle.read(4)
    if read is not read_parquet and start.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")):
        raise ValueError(f"{path.name} is UTF-16 or UTF-32 text: save it as UTF-8 (for example `iconv -f UTF-16 -t "
                         "UTF-8`)")
    if read is read_parquet:
        import pyarrow.parquet as pq

        try:
            pq.ParquetFile(path)
        except Exception as error:  # pyarrow raises its own ArrowInvalid and OSError variants
            raise ValueError(f"{path.name} is not a Parquet file ({str(error).splitlines()[0]})") from None
    if read is read_csv:
        next(iter(read_csv(path)), None)


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


def _float(value: Any) -> float | None:
    """`value` as a float when it is a real number (not a bool) that fits one; else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an int beyond float's range
        return None


def _number(value: Any, name: str) -> float:
    number = _float(value)
    if number is None:
        raise RecordError(f"{name}_invalid", f"{name} must be a number, got {_show(value)}")
    if math.isnan(number) or not 0.0 <= number <= 1.0:
        raise RecordError(f"{name}_invalid", f"{name} must lie in [0, 1], got {_show(value)}")
    return number


def _storable_string(text: str, reason: str, name: str) -> str:
    """`text`, unless it cannot be stored: lone surrogates are not UTF-8, and PostgreSQL text cannot hold NUL."""
    if _has_surrogates(text):
        raise RecordError(reason, f"{name} holds characters that are not valid UTF-8")
    if "\x00" in text:
        raise RecordError(reason, f"{name} holds a NUL character, which PostgreSQL cannot store")
    return text


def _storable_json(value: Any, reason: str, name: str) -> Any:
    """`value`, unless it cannot be stored as standard JSON (NaN, Infinity, non-JSON types, bad strings)."""
    try:
        encoded = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise RecordError(reason, f"{name} is not storable as JSON: {_clip(str(exc), 200)}") from None
    if _has_surrogates(encoded):
        raise RecordError(reason, f"{name} holds characters that are not valid UTF-8")
    if _JSON_NUL.search(encoded):  # PostgreSQL stores it but then cannot extract the field (->> fails)
        raise RecordError(reason, f"{name} holds a NUL character, which PostgreSQL cannot store")
    return value


def _check_id(value: dict[str, Any]) -> str:
    item_id = value.get("id")
    if item_id is None or item_id == "":
        raise RecordError("missing_id", "the record has no id")
    if isinstance(item_id, bool) or not isinstance(item_id, (str, int)):
        raise RecordError("invalid_id", f"id must be a string, got {_show(item_id)}")
    if isinstance(item_id, int) and abs(item_id) >= 10**MAX_ID_CHARS:  # also beyond str()'s int digit limit
        raise RecordError("invalid_id", f"id longer than {MAX_ID_CHARS} characters")
    item_id = str(item_id)
    if len(item_id) > MAX_ID_CHARS:
        raise RecordError("invalid_id", f"id longer than {MAX_ID_CHARS} characters")
    if item_id != item_id.strip():
        # "a1 " and "a1" would be two items that look the same everywhere they are shown
        raise RecordError("invalid_id", f"id {_show(item_id)} starts or ends with whitespace")
    if not item_id.isascii() and not _has_surrogates(item_id) and \
            unicodedata.normalize("NFC", item_id) != item_id:
        # the same visible id in composed (NFC) and decomposed (NFD) form would be two items
        raise RecordError("invalid_id", f"id {_show(item_id)} is not in Unicode normal form NFC: send it composed")
    return _storable_string(item_id, "invalid_id", "id")


def _check_text(value: dict[str, Any]) -> str | None:
    text = value.get("text")
    if text is None:
        return None
    if not isinstance(text, str):
        raise RecordError("text_invalid", f"text must be a string, got {type(text).__name__}")
    if _has_surrogates(text):
        raise RecordError("undecodable_text", "text holds characters that are not valid UTF-8")
    _storable_string(text, "text_invalid", "text")
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
        number = _float(x)
        if number is None or not math.isfinite(number):
            raise RecordError("features_invalid", f"features must be finite numbers, got {_show(x)}")
        out.append(number)
    return out


def _check_probs(value: dict[str, Any], labels: frozenset[str] | None) -> dict[str, float] | None:
    probs = value.get("probs")
    if probs is None:
        return None
    if not isinstance(probs, dict) or not probs:
        raise RecordError("probs_invalid", "probs must be an object mapping label to probability")
    checked = {_storable_string(str(k), "probs_invalid", "a probs label"): _number(v, "probs")
               for k, v in probs.items()}
    total = sum(checked.values())
    if abs(total - 1.0) > PROBS_TOLERANCE:
        raise RecordError("probs_not_normalised", f"probabilities sum to {total:.6g}, not 1")
    if labels is not None and not set(checked) <= labels:
        raise RecordError("unknown_label", f"probs name labels outside the label set: {sorted(set(checked) - labels)}")
    return checked


_FAST_FIELDS = frozenset({"id", "text", "prediction", "confidence", "segment"})


# how far below the largest probability the predicted label's may lie (ties and rounding): the passthrough's own
ARGMAX_TOLERANCE = 1e-9


def _fast_row(value: dict[str, Any], labels: frozenset[str] | None) -> dict[str, Any] | None:
    """The item row of the common well-formed record (string id, text, prediction and segment, float
    confidence), checked with a few type tests; None sends the record through `validate_record`'s full checks,
    so a record accepted here is one `validate_record` accepts with the same row."""
    if not value.keys() <= _FAST_FIELDS:
        return None
    item_id, text = value.get("id"), value.get("text")
    if type(item_id) is not str or type(text) is not str or not item_id or len(item_id) > MAX_ID_CHARS \
            or len(text) > MAX_TEXT_CHARS or not item_id.isascii() or item_id != item_id.strip():
        return None
    confidence = value.get("confidence")
    if confidence is not None and (type(confidence) is not float or not 0.0 <= confidence <= 1.0):
        return None
    prediction = value.get("prediction")
    if prediction is not None and (type(prediction) is not str or (labels is not None and prediction not in labels)):
        return None
    if confidence is not None and prediction is None:
        return None  # refused by validate_record
    segment = value.get("segment") or "default"
    if type(segment) is not str or len(segment) > 128:
        return None
    joined = item_id + text + segment + (prediction or "")
    if "\x00" in joined or (not joined.isascii() and _has_surrogates(joined)):
        return None
    return _plain_row(item_id, segment, text, prediction, confidence)


def _plain_row(item_id: str, segment: str, text: str, prediction: str | None,
               confidence: float | None) -> dict[str, Any]:
    """The item row of a record of `_FAST_FIELDS` alone."""
    return {
        "id": item_id, "segment": segment, "text": text, "features": None, "upstream_prediction": prediction,
        "upstream_confidence": confidence, "upstream_probs": None, "metadata": None, "kind": "classification",
        "payload": None,
    }


@dataclass
class _Block:
    """Consecutive lines of a JSONL file, the first numbered `start`, each one record `_fast_row` accepts, checked
    and kept column by column (`_fast_block`): what ingest writes without a dict or a `RawRecord` per line."""

    start: int
    lines: list[bytes]
    ids: list[str]
    segments: list[str]
    texts: list[str]
    predictions: list[str | None]
    confidences: list[float | None]

    def __len__(self) -> int:
        return len(self.ids)

    def row(self, position: int) -> dict[str, Any]:
        """The item row of the record at `position`, as `validate_record` gives it."""
        return _plain_row(self.ids[position], self.segments[position], self.texts[position],
                          self.predictions[position], self.confidences[position])

    def record(self, position: int) -> RawRecord:
        """The record at `position`, read as `read_jsonl` reads it."""
        return cast(RawRecord, _jsonl_record(self.start + position, self.lines[position], True))

    def row_of(self, item_id: str) -> dict[str, Any]:
        """`row` of the record with id `item_id`."""
        return self.row(self._positions[item_id])

    def record_of(self, item_id: str) -> RawRecord:
        """`record` of the record with id `item_id`."""
        return self.record(self._positions[item_id])

    @cached_property
    def _positions(self) -> dict[str, int]:
        """Each id's position, built only when an id's row or record is asked for (a conflict)."""
        return {item_id: position for position, item_id in enumerate(self.ids)}


_BOM = b"\xef\xbb\xbf"


def _fast_block(lines: list[tuple[bytes, bool]], start: int, labels: frozenset[str] | None) -> _Block | None:
    """`lines` (from `bounded_lines`, the first numbered `start`) as a `_Block` when every one holds a record that
    `_fast_row` accepts: each line parsed on its own by orjson, then each check of `_fast_row` made once over a
    column (a set of its types, its extremes, one scan of its joined text). None when any line fails any check
    (a blank line, a line too long, a parse error, another shape or type): then the lines go through
    `_jsonl_record` and `validate_record` one by one, as every line did before, and are kept or quarantined as
    each deserves. So a block accepts exactly the records `_fast_row` accepts, with the same rows."""
    if _fast_loads is None or not all(whole for _, whole in lines):
        return None
    raw = [line for line, _ in lines]
    texts_in = raw if start != 1 or not raw[0].startswith(_BOM) else [raw[0][len(_BOM):], *raw[1:]]
    try:  # orjson refuses blank lines, NaN, bytes that are not UTF-8, lone surrogates and a second value
        values = list(map(_fast_loads, texts_in))
    except ValueError:
        return None
    if set(map(type, values)) != {dict} or not all(set(shape) <= _FAST_FIELDS for shape in set(map(tuple, values))):
        return None
    column = partial(map, dict.get, values)
    ids, texts = list(column(repeat("id"))), list(column(repeat("text")))
    predictions, confidences = list(column(repeat("prediction"))), list(column(repeat("confidence")))
    segments = list(column(repeat("segment")))
    if set(map(type, ids)) != {str} or set(map(type, texts)) != {str}:
        return None
    joined_ids = "".join(ids)
    if min(map(len, ids)) == 0 or max(map(len, ids)) > MAX_ID_CHARS or not joined_ids.isascii() \
            or list(map(str.strip, ids)) != ids or max(map(len, texts)) > MAX_TEXT_CHARS:
        return None
    try:
        predicted, segmented = set(predictions), set(segments)
    except TypeError:  # a list or an object where a label or segment belongs
        return None
    if any(p is not None and (type(p) is not str or (labels is not None and p not in labels)) for p in predicted):
        return None
    kinds = set(map(type, confidences))
    if not kinds <= {float, type(None)}:
        return None
    given = confidences if type(None) not in kinds else [c for c in confidences if c is not None]
    if given and not (0.0 <= min(given) and max(given) <= 1.0):
        return None
    if given and None in predicted and any(c is not None and p is None for c, p in zip(confidences, predictions)):
        return None  # a confidence without its prediction: refused by validate_record
    if any(s and (type(s) is not str or len(s) > 128) for s in segmented):
        return None
    if any(not s for s in segmented):
        segments = [s or "default" for s in segments]
    joined = joined_ids + "".join(texts) + "".join(s for s in segmented if s) + "".join(p for p in predicted if p)
    if "\x00" in joined or (not joined.isascii() and _has_surrogates(joined)):
        return None
    return _Block(start, raw, ids, segments, texts, predictions, confidences)


def _short_text(value: Any, reason: str, name: str, *, required: bool = True) -> str | None:
    """A non-empty, storable string of at most MAX_TEXT_CHARS characters (None when absent and not required)."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise RecordError(reason, f"{name} must be a non-empty string, got {_show(value)}")
    if len(value) > MAX_TEXT_CHARS:
        raise RecordError("text_too_long", f"{name} has {len(value)} characters, the limit is {MAX_TEXT_CHARS}")
    return _storable_string(value, reason, name)


def _check_prompt(value: Any) -> str | list[dict[str, str]]:
    """A prompt: a string, or chat messages `[{"role", "content"}, ...]` with known roles."""
    if isinstance(value, list):
        if not value or not all(isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)
                                for m in value):
            raise RecordError("prompt_invalid", "prompt messages must be a non-empty list of {role, content} with "
                                                f"roles in {sorted(ROLES)}")
        _storable_json(value, "prompt_invalid", "prompt")
        return [{"role": m["role"], "content": m["content"]} for m in value]
    return _short_text(value, "missing_prompt", "prompt")  # type: ignore[return-value]


def _check_context(value: Any) -> str | list[str] | None:
    """Documents the pipeline used: a string or a list of strings."""
    if value is None:
        return None
    if isinstance(value, list):
        if not all(isinstance(document, str) for document in value):
            raise RecordError("context_invalid", "context must be a string or a list of strings")
        _storable_json(value, "context_invalid", "context")
        return value
    return _short_text(value, "context_invalid", "context")


def _check_scores(value: Any) -> dict[str, float] | None:
    """Upstream scores `{name: number}` (a judge's, a trust score): finite numbers."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise RecordError("scores_invalid", "scores must be an object mapping a name to a number")
    checked = {}
    for name, score in value.items():
        number = _float(score)
        if number is None or not math.isfinite(number):
            raise RecordError("scores_invalid", f"score {name!r} must be a finite number, got {_show(score)}")
        checked[str(name)] = number
    return checked


def _check_fields(value: Any) -> dict[str, dict[str, Any]]:
    """Extracted fields `{name: {"value", "confidence"}}`, each with its confidence in [0, 1]."""
    if not isinstance(value, dict) or not value:
        raise RecordError("missing_fields", "an extraction needs fields: {name: {value, confidence}}")
    checked = {}
    for name, field_value in value.items():
        if not isinstance(field_value, dict) or "value" not in field_value:
            raise RecordError("field_invalid", f"field {name!r} must be an object with a value and a confidence")
        if field_value.get("confidence") is None:
            raise RecordError("field_confidence_missing", f"field {name!r} has no confidence")
        confidence = _float(field_value["confidence"])
        if confidence is None or not 0.0 <= confidence <= 1.0:
            raise RecordError("field_confidence_invalid",
                              f"field {name!r}: confidence must lie in [0, 1], got {_show(field_value['confidence'])}")
        checked[_storable_string(str(name), "field_invalid", "field name")] = {
            "value": field_value["value"], "confidence": confidence}
    _storable_json(checked, "field_invalid", "fields")
    return checked


def _kind_row(kind: str, value: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(the item's text, its payload) for a record of an LLM pipeline's `kind`: the text the risk signals and
    people read first (the response; the prompt of a pair; the document), the payload all the kind carries."""
    if kind == "generation":
        prompt, response = _check_prompt(value.get("prompt")), _short_text(value.get("response"),
                                                                            "missing_response", "response")
        payload: dict[str, Any] = {"prompt": prompt, "response": response,
                                   "context": _check_context(value.get("context")),
                                   "scores": _check_scores(value.get("scores"))}
        if value.get("confidence") is not None:
            payload["confidence"] = _number(value["confidence"], "confidence")
        return str(response), {k: v for k, v in payload.items() if v is not None}
    if kind == "pairwise":
        prompt = _check_prompt(value.get("prompt"))
        a = _short_text(value.get("response_a"), "missing_response", "response_a")
        b = _short_text(value.get("response_b"), "missing_response", "response_b")
        if str(a).strip() == str(b).strip():
            raise RecordError("responses_identical", "response_a and response_b are the same text: nothing to prefer")
        payload = {"prompt": prompt, "response_a": a, "response_b": b,
                   "context": _check_context(value.get("context"))}
        if value.get("preference") is not None:
            payload["preference"] = _number(value["preference"], "preference")
        text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
        return text, {k: v for k, v in payload.items() if v is not None}
    short = _short_text(value.get("text"), "missing_content", "text")
    return str(short), {"fields": _check_fields(value.get("fields"))}


def validate_record(value: dict[str, Any], *, labels: frozenset[str] | None = None) -> dict[str, Any]:
    """The item row for a contract-abiding record; raises RecordError with a machine-readable reason."""
    fast = _fast_row(value, labels) if type(value) is dict else None
    if fast is not None:
        return fast
    kind = value.get("kind") or "classification"
    if kind not in KINDS:
        raise RecordError("unknown_kind", f"kind must be one of {list(KINDS)}, got {_show(kind)}")
    if kind != "classification":
        return _llm_record(kind, value)
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
        if isinstance(prediction, bool) or not isinstance(prediction, (str, int)):
            raise RecordError("prediction_invalid", f"prediction must be a label string, got {_show(prediction)}")
        if isinstance(prediction, int) and abs(prediction) >= 10**64:  # also beyond str()'s int digit limit
            raise RecordError("prediction_invalid", "prediction is an implausibly long number")
        prediction = _storable_string(str(prediction), "prediction_invalid", "prediction")
        if labels is not None and prediction not in labels:
            raise RecordError("unknown_label", f"prediction {prediction!r} is not in the label set")
        if probs is not None and probs.get(prediction, 0.0) < max(probs.values()) - ARGMAX_TOLERANCE:
            raise RecordError("prediction_not_argmax", f"prediction {prediction!r} has probability "
                                                       f"{probs.get(prediction, 0.0):.6g}, below the largest of its "
                                                       f"probs ({max(probs.values()):.6g})")
    if confidence is not None and probs is None and prediction is None:
        # a confidence is the confidence in a prediction: alone it scores nothing (and the model would skip it)
        raise RecordError("prediction_missing", "confidence is given without the prediction it is the confidence of")
    segment = value.get("segment") or "default"
    if not isinstance(segment, str) or len(segment) > 128:
        raise RecordError("segment_invalid", f"segment must be a short string, got {_show(segment)}")
    _storable_string(segment, "segment_invalid", "segment")
    metadata = value.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise RecordError("metadata_invalid", "metadata must be an object")
    if metadata is not None:
        _storable_json(metadata, "metadata_invalid", "metadata")
    return {
        "id": item_id,
        "segment": segment,
        "text": text,
        "features": features,
        "upstream_prediction": prediction,
        "upstream_confidence": confidence,
        "upstream_probs": probs,
        "metadata": metadata,
        "kind": "classification",
        "payload": None,
    }


def _llm_record(kind: str, value: dict[str, Any]) -> dict[str, Any]:
    """The item row of a generation, pairwise or extraction record (its own checks; classification fields such as
    `prediction` or `probs` have no meaning here and are refused)."""
    item_id = _check_id(value)
    stray = sorted({"prediction", "probs", "features"} & value.keys())
    if stray:
        raise RecordError("field_not_for_kind", f"a {kind} record carries no {', '.join(stray)}")
    text, payload = _kind_row(kind, value)
    segment = value.get("segment") or "default"
    if not isinstance(segment, str) or len(segment) > 128:
        raise RecordError("segment_invalid", f"segment must be a short string, got {_show(segment)}")
    metadata = value.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise RecordError("metadata_invalid", "metadata must be an object")
    if metadata is not None:
        _storable_json(metadata, "metadata_invalid", "metadata")
    prediction, confidence, probs = _kind_upstream(kind, payload)
    return {"id": item_id, "segment": _storable_string(segment, "segment_invalid", "segment"), "text": text,
            "features": None, "upstream_prediction": prediction, "upstream_confidence": confidence,
            "upstream_probs": probs, "metadata": metadata, "kind": kind, "payload": payload}


def _kind_upstream(kind: str, payload: dict[str, Any]) -> tuple[str | None, float | None, dict[str, float] | None]:
    """The pipeline's own score of an LLM item as an upstream prediction over the kind's answers
    (`store.vocab.KIND_LABELS`), so it is calibrated, certified and routed like a classifier's.

    A response is predicted ``accept`` with its `confidence` (the probability people accept it), an extraction
    ``confirmed`` with the product of its fields' confidences (every field right, the fields taken as
    independent: calibration on people's answers corrects what that assumption gets wrong). Both are the
    pipeline's output put forward as it is, so the prediction stays even below 0.5 (a low score sends it to
    people, it never turns it into a rejection), and no probabilities go with it. A pair is predicted the side
    its `preference` favours, with both probabilities. None when the pipeline sent no such score (the item waits
    for a verifier)."""
    if kind == "generation" and "confidence" in payload:
        return "accept", float(payload["confidence"]), None
    if kind == "pairwise" and "preference" in payload:
        a = float(payload["preference"])
        return ("a" if a >= 0.5 else "b"), max(a, 1.0 - a), {"a": a, "b": 1.0 - a}
    if kind == "extraction":
        return "confirmed", math.prod(float(field["confidence"]) for field in payload["fields"].values()), None
    return None, None, None


ITEM_COLUMNS = ("segment", "text", "features", "upstream_prediction", "upstream_confidence", "upstream_probs",
                "metadata", "kind", "payload")
_JSON_ITEM_COLUMNS = frozenset({"features", "upstream_probs", "metadata", "payload"})
_SQL_NULL = null()


def _item_columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The item rows column by column; absent JSON fields as SQL NULL (a bare None would be stored as the JSON text
    'null', which `IS NULL` misses)."""
    columns: dict[str, list[Any]] = {"id": [row["id"] for row in rows]}
    for name in ITEM_COLUMNS:
        values = [row[name] for row in rows]
        if name in _JSON_ITEM_COLUMNS:
            values = [_SQL_NULL if v is None else v for v in values]
        columns[name] = values
    return columns


def _block_columns(block: _Block) -> dict[str, list[Any]]:
    """The item rows of `block` column by column, in id order (`_item_columns` of its rows, without the rows): the
    columns its records vary in, and each other column of `_plain_row` repeated."""
    columns: dict[str, list[Any]] = {"id": block.ids, "segment": block.segments, "text": block.texts,
                                     "upstream_prediction": block.predictions,
                                     "upstream_confidence": block.confidences}
    n = len(block)
    order = sorted(range(n), key=block.ids.__getitem__)
    if order != list(range(n)):
        columns = {name: [values[i] for i in order] for name, values in columns.items()}
    for name, value in _plain_row("", "", "", None, None).items():
        if name not in columns:
            columns[name] = [_SQL_NULL if value is None and name in _JSON_ITEM_COLUMNS else value] * n
    return columns


def _fill_passthrough(rows: list[dict[str, Any]]) -> None:
    """Fill in the upstream passthrough's prediction of every row that carries upstream scores
    (``store.passthrough.passthrough_prediction``: a label and confidence derived from ``probs`` when they were not
    given): such an item is born scored, its prediction in its own row (``store.predictions``), and the score step
    has nothing to do for it (each new item gets its state row as it is written:
    ``store.transitions.born_states``)."""
    for row in rows:
        if row["upstream_probs"] is None:
            continue
        scored = passthrough_prediction(row["upstream_prediction"], row["upstream_confidence"], row["upstream_probs"])
        if scored is not None:
            row["upstream_prediction"], row["upstream_confidence"] = scored


def _write_chunk(
    engine: Engine, source: str, rows: list[dict[str, Any]], records: list[RawRecord], bad: list[dict[str, Any]],
    summary: IngestSummary,
) -> None:
    unique: dict[str, dict[str, Any]] = {}
    record_of: dict[str, RawRecord] = {}
    conflicts: list[tuple[RawRecord, str]] = []
    for row, record in zip(rows, records):
        first = unique.get(row["id"])
        if first is None:
            unique[row["id"]], record_of[row["id"]] = row, record
        elif _content(first) == _content(row):
            summary.duplicate += 1
        else:
            conflicts.append((record, "the same file gave this id other content earlier"))
    _fill_passthrough(list(unique.values()))
    columns = _item_columns([unique[item_id] for item_id in sorted(unique)])
    _store_chunk(engine, source, columns, unique.__getitem__, record_of.__getitem__, conflicts, bad, summary)


def _write_block(engine: Engine, source: str, block: _Block, summary: IngestSummary) -> None:
    """`_write_chunk` for a block of common records, kept in columns: no dict per row unless an id is given twice
    in it or was stored before."""
    if len(set(block.ids)) < len(block):  # the same id twice: compared record by record
        positions = range(len(block))
        _write_chunk(engine, source, [block.row(i) for i in positions], [block.record(i) for i in positions], [],
                     summary)
        return
    _store_chunk(engine, source, _block_columns(block), block.row_of, block.record_of, [], [], summary)


def _store_chunk(
    engine: Engine, source: str, columns: dict[str, list[Any]], row_of: Callable[[str], dict[str, Any]],
    record_of: Callable[[str], RawRecord], conflicts: list[tuple[RawRecord, str]], bad: list[dict[str, Any]],
    summary: IngestSummary,
) -> None:
    """Write a chunk's items (`columns`, ids unique and in order) with their state rows, and its quarantined
    records (`bad`, and the `conflicts`: each record with where its id was given other content), in one
    transaction; an item stored before with other content is quarantined as a conflict too (`row_of` and
    `record_of` give an id's row and record)."""
    now = datetime.now(timezone.utc)
    ids = columns["id"]
    with engine.begin() as conn:
        if ids:
            # One executemany, in id order: two ingests writing overlapping ids at once then wait on each other's
            # rows in one order, never in a cycle (a deadlock, which PostgreSQL breaks by failing one of them).
            # The rows it skipped as already present are the ones received at another moment: stored earlier, or
            # by another ingest that committed while this one waited on them. Whole rows are read for those only.
            # The insert reports how many rows it wrote: when that is all of them, nothing was present.
            n = len(ids)
            columns.update(source_id=[source_id(conn, source)] * n, received_at=[now] * n)
            with born_states(conn):
                inserted = insert_ignore_columns(conn, Item.__table__, columns)
            before = [] if inserted == n else sorted(existing_keys(conn, Item.id, ids, Item.received_at != now))
            present = _stored_rows(conn, before) if before else {}
            accepted, present_count = n - len(before), len(present)
        else:
            present, accepted, present_count = {}, 0, 0
        for item_id, stored in present.items():
            if _content(stored) != _content(row_of(item_id)):
                present_count -= 1
                conflicts.append((record_of(item_id), f"stored earlier with other content (from {stored['source']})"))
        for record, where in conflicts:
            summary.quarantined["id_conflict"] += 1
            bad.append(_quarantine_row(source, record, RecordError(
                "id_conflict",
                f"id {(record.value or {}).get('id')!r} was {where}: the first is kept, this one set aside")))
        for row in bad:
            row["created_at"] = now
        insert_ignore(conn, QuarantinedRecord.__table__, bad)
    summary.accepted += accepted
    summary.duplicate += present_count


def _content(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """What an item says (not when or from where it came), comparable between a record and a stored row."""
    return tuple(json.dumps(row.get(name), sort_keys=True, default=str) for name in ITEM_COLUMNS)


def source_id(conn: Connection, path: str) -> int:
    """The id of the source row of `path`, written the first time a file's items are (in the caller's
    transaction: a chunk that rolls back leaves no source behind)."""
    fingerprint = hashlib.sha256(path.encode("utf-8")).hexdigest()
    insert_ignore(conn, ItemSource.__table__, [{"path": path, "fingerprint": fingerprint,
                                                "created_at": datetime.now(timezone.utc)}])
    return cast(int, conn.execute(select(ItemSource.id).where(ItemSource.fingerprint == fingerprint)).scalar_one())


def _stored_rows(conn: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    table = Item.__table__
    found: dict[str, dict[str, Any]] = {}
    for part in chunked(ids, 10_000):
        query = select(table.c.id, ItemSource.path.label("source"), table.c.received_at,
                       *(table.c[name] for name in ITEM_COLUMNS)).outerjoin(
            ItemSource, ItemSource.id == table.c.source_id).where(table.c.id.in_(part))
        found.update({row["id"]: dict(row) for row in conn.execute(query).mappings()})
    return found


def _raw_text(record: RawRecord, *, clip: bool = True) -> str:
    if record.raw:
        raw = record.raw if isinstance(record.raw, str) else record.raw.decode("utf-8", "replace")
        return _clip(raw) if clip else raw
    try:
        text = json.dumps(record.value, default=str)
        return _clip(text) if clip else text
    except (ValueError, RecursionError):  # huge ints, deep nesting
        return _show(record.value, 2_000)


def _quarantine_row(source: str, record: RawRecord, exc: RecordError) -> dict[str, Any]:
    record_id = record.value.get("id") if isinstance(record.value, dict) else None
    if record_id is not None and not isinstance(record_id, str):
        record_id = _show(record_id, MAX_ID_CHARS)
    raw = _raw_text(record, clip=False)
    return {
        "source": source, "record_number": record.number, "reason": exc.reason,
        "fingerprint": hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest(),
        "detail": _clip(exc.detail, 500), "raw": _clip(raw),
        "record_id": None if record_id is None else _clip(record_id, MAX_ID_CHARS),
    }


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
    parts = _jsonl_parts(path, chunk_size, labels) if read is read_jsonl else _in_lists(read(path), chunk_size)
    with collector_paused():  # the rows are freed by reference counting (see store.bulk)
        for part in parts:
            if isinstance(part, _Block):
                _write_block(engine, source, part, summary)
            elif part:
                _write_chunk(engine, source, *_checked(part, source, labels, summary), summary)
            if on_progress and len(part):
                on_progress(len(part))
    return summary


def _in_lists(records: Iterator[RawRecord], size: int) -> Iterator[list[RawRecord]]:
    """`records` in lists of `size` (the last one shorter): the chunks ingest writes."""
    while part := list(islice(records, size)):
        yield part


def _jsonl_parts(path: Path, size: int, labels: frozenset[str] | None) -> Iterator[_Block | list[RawRecord]]:
    """The chunks of a JSONL file, `size` lines each: a `_Block` when all of them are common records
    (`_fast_block`), else their records one by one (`_jsonl_record`; a blank line has none)."""
    with path.open("rb") as handle:
        lines = bounded_lines(handle, MAX_LINE_BYTES)
        start = 1
        while part := list(islice(lines, size)):
            block = _fast_block(part, start, labels)
            if block is not None:
                yield block
            else:
                yield [record for number, (line, whole) in enumerate(part, start=start)
                       if (record := _jsonl_record(number, line, whole)) is not None]
            start += len(part)


def _checked(records: list[RawRecord], source: str, labels: frozenset[str] | None,
             summary: IngestSummary) -> tuple[list[dict[str, Any]], list[RawRecord], list[dict[str, Any]]]:
    """The item rows of the contract-abiding `records` with those records, and the quarantine rows of the rest
    (counted in `summary` by reason)."""
    rows: list[dict[str, Any]] = []
    kept: list[RawRecord] = []
    bad: list[dict[str, Any]] = []
    for record in records:
        try:
            if record.error is not None:
                raise record.error
            rows.append(validate_record(record.value or {}, labels=labels))
            kept.append(record)
        except RecordError as exc:
            summary.quarantined[exc.reason] += 1
            bad.append(_quarantine_row(source, record, exc))
    return rows, kept, bad
