"""store.ingest on SQLite and PostgreSQL: JSONL, CSV and Parquet in, idempotent on id, bad records to quarantine."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from store import db
from store.ingest import (
    CHUNK_SIZE,
    KNOWN_FIELDS,
    MAX_ID_CHARS,
    MAX_TEXT_CHARS,
    PROBS_TOLERANCE,
    IngestSummary,
    RecordError,
    ingest_file,
    validate_record,
)
from store.models import Item, Prediction, QuarantinedRecord
from store.transitions import states_of

LABELS = frozenset({"pos", "neg"})
FORMATS = ["jsonl", "csv", "parquet"]
ITEMS = Item.__table__
QUARANTINE = QuarantinedRecord.__table__


# --- writing producer files -----------------------------------------------------------------------------------


def good_record(i: int, prefix: str = "item") -> dict[str, Any]:
    """A contract-abiding record; every fifth one carries features instead of text."""
    confidence = (i % 97) / 96
    record: dict[str, Any] = {
        "id": f"{prefix}-{i}",
        "segment": "billing" if i % 2 else "default",
        "prediction": "pos" if confidence >= 0.5 else "neg",
        "confidence": confidence,
        "probs": {"pos": confidence, "neg": 1.0 - confidence},
        "metadata": {"amount": float(i), "tier": "gold" if i % 3 else "basic"},
    }
    if i % 5 == 4:
        record["features"] = [float(i), 0.5, -1.25]
    else:
        record["text"] = f"text number {i}: ünïcödé ✓ 中文"
    return record


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


CSV_COLUMNS = ["id", "text", "features", "segment", "prediction", "confidence", "probs", "metadata"]


def csv_bytes(records: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({
            column: ("" if record.get(column) is None
                     else json.dumps(record[column]) if column in ("features", "probs", "metadata")
                     else repr(record[column]) if isinstance(record[column], float)
                     else record[column])
            for column in CSV_COLUMNS
        })
    return out.getvalue().encode("utf-8")


def write_csv(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_bytes(csv_bytes(records))
    return path


PARQUET_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("text", pa.string()),
    ("features", pa.list_(pa.float64())),
    ("segment", pa.string()),
    ("prediction", pa.string()),
    ("confidence", pa.float64()),
    ("probs", pa.map_(pa.string(), pa.float64())),
    ("metadata", pa.struct([("amount", pa.float64()), ("tier", pa.string())])),
])


def write_parquet(path: Path, records: list[dict[str, Any]], *, row_group_size: int | None = None) -> Path:
    rows = [{**r, "probs": None if r.get("probs") is None else list(r["probs"].items())} for r in records]
    pq.write_table(pa.Table.from_pylist(rows, schema=PARQUET_SCHEMA), path, row_group_size=row_group_size)
    return path


WRITERS = {"jsonl": write_jsonl, "csv": write_csv, "parquet": write_parquet}


def write(fmt: str, path: Path, records: list[dict[str, Any]]) -> Path:
    return WRITERS[fmt](path.with_suffix(f".{fmt}"), records)


# --- reading the store ----------------------------------------------------------------------------------------


def stored_items(engine) -> dict[str, dict[str, Any]]:
    """Every item row, with the path of the file it came from as ``source`` (stored once, in ``item_sources``)."""
    from store.models import ItemSource

    query = (select(ITEMS, ItemSource.path.label("source")).outerjoin(ItemSource, ItemSource.id == ITEMS.c.source_id)
             .order_by(ITEMS.c.id))
    with engine.connect() as conn:
        return {row["id"]: dict(row) for row in conn.execute(query).mappings()}


def stored_quarantine(engine) -> list[tuple[int, str, str | None]]:
    query = select(QUARANTINE.c.record_number, QUARANTINE.c.reason, QUARANTINE.c.record_id)
    with engine.connect() as conn:
        return sorted(tuple(row) for row in conn.execute(query.order_by(QUARANTINE.c.record_number)))


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def expected_row(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": record["id"],
        "segment": record.get("segment") or "default",
        "text": record.get("text"),
        "features": record.get("features"),
        "upstream_prediction": record.get("prediction"),
        "upstream_confidence": record.get("confidence"),
        "upstream_probs": record.get("probs"),
        "metadata": record.get("metadata"),
    }


def assert_stored(engine, records: list[dict[str, Any]], source: Path) -> None:
    """Every record stored as given; one carrying its producer's scores is born scored, with its upstream
    prediction in its own row (``store.predictions``): the producer's label, or the argmax of its probabilities, at
    their maximum (or the stated confidence without probabilities), and no prediction row."""
    items = stored_items(engine)
    assert sorted(items) == sorted(r["id"] for r in records)
    assert count(engine, Prediction.__table__) == 0
    born = {r["id"] for r in records if r.get("confidence") is not None or r.get("probs") is not None}
    states = states_of(engine)  # one state row per item, written with it
    assert sorted(states) == sorted(items)
    for record in records:
        row = items[record["id"]]
        got = {key: row[key] for key in expected_row(record)}
        want = expected_row(record)
        assert got.pop("upstream_probs") == pytest.approx(want.pop("upstream_probs"))
        probs = record.get("probs")
        assert got.pop("upstream_prediction") == (record.get("prediction") or (max(probs, key=probs.get)
                                                                              if probs else None))
        want.pop("upstream_prediction")
        given = want.pop("upstream_confidence")  # beside probs, the passthrough's confidence is their share
        assert got.pop("upstream_confidence") == pytest.approx(max(probs.values()) if probs else given)
        assert got == want
        assert states[record["id"]] == ("scored" if record["id"] in born else "received")
        assert row["source"] == str(source.resolve())
        assert row["received_at"] is not None


# --- good records, idempotence, duplicates --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_good_records_are_accepted(engine, tmp_path, fmt):
    records = [good_record(i) for i in range(25)]
    path = write(fmt, tmp_path / "batch", records)

    summary = ingest_file(engine, path, labels=LABELS)

    assert summary.as_dict() == {"source": str(path.resolve()), "accepted": 25, "duplicate": 0,
                                 "quarantined": {}, "total": 25}
    assert_stored(engine, records, path)
    assert count(engine, QUARANTINE) == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_ingesting_the_same_file_twice_adds_nothing(engine, tmp_path, fmt):
    records = [good_record(i) for i in range(12)]
    path = write(fmt, tmp_path / "batch", records)
    ingest_file(engine, path)
    before = stored_items(engine)

    again = ingest_file(engine, path)

    assert (again.accepted, again.duplicate, dict(again.quarantined)) == (0, 12, {})
    assert stored_items(engine) == before


@pytest.mark.parametrize("fmt", FORMATS)
def test_ids_already_ingested_from_another_file_are_duplicates(engine, tmp_path, fmt):
    ingest_file(engine, write(fmt, tmp_path / "first", [good_record(i) for i in range(10)]))
    summary = ingest_file(engine, write(fmt, tmp_path / "second", [good_record(i) for i in range(5, 15)]))
    assert (summary.accepted, summary.duplicate) == (5, 5)
    assert count(engine, ITEMS) == 15


def test_each_file_is_stored_once_and_its_items_point_at_it(engine, tmp_path):
    first, second = (write_jsonl(tmp_path / f"{name}.jsonl", [good_record(i) for i in ids])
                     for name, ids in (("first", range(10)), ("second", range(5, 15))))
    ingest_file(engine, first, chunk_size=4)  # three chunks, one source row
    ingest_file(engine, second)
    ingest_file(engine, first)
    from store.models import ItemSource

    assert count(engine, ItemSource.__table__) == 2
    sources = {item_id: row["source"] for item_id, row in stored_items(engine).items()}
    assert sources == {**{f"item-{i}": str(first.resolve()) for i in range(10)},
                       **{f"item-{i}": str(second.resolve()) for i in range(10, 15)}}


@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicate_ids_within_a_file_count_as_duplicates_and_the_first_wins(engine, tmp_path, fmt):
    records = [good_record(i) for i in range(6)]
    second_copy = {**good_record(2), "text": "a later copy", "features": None}
    path = write(fmt, tmp_path / "batch", [*records, second_copy, good_record(4), good_record(2)])

    summary = ingest_file(engine, path)

    # exact copies are duplicates; a copy with other content is reported (quarantined), never silently dropped
    assert (summary.accepted, summary.duplicate, summary.total) == (6, 2, 9)
    assert summary.quarantined == {"id_conflict": 1}
    assert stored_items(engine)["item-2"]["text"] == records[2]["text"]


def test_integer_ids_are_stored_as_strings(engine, tmp_path):
    path = write_jsonl(tmp_path / "ints.jsonl", [{"id": 7, "text": "seven"}, {"id": "7", "text": "seven"},
                                                 {"id": "7", "text": "other"}])
    summary = ingest_file(engine, path)
    assert (summary.accepted, summary.duplicate, dict(summary.quarantined)) == (1, 1, {"id_conflict": 1})
    assert list(stored_items(engine)) == ["7"]


def test_unusual_but_valid_strings_round_trip(engine, tmp_path):
    texts = ["emoji 🧪🚀", "rtl שלום", "combining é", 'quotes "\'`', "backslash-u \\u0000 literal",
             "newline\nand\ttab", "x" * MAX_TEXT_CHARS]
    records = [{"id": f"odd-{i} ✓", "text": t, "metadata": {"k\u00e9y": t[:50], "nested": {"a": [1, None]}}}
               for i, t in enumerate(texts)]
    path = write_jsonl(tmp_path / "odd.jsonl", records)
    summary = ingest_file(engine, path)
    assert (summary.accepted, dict(summary.quarantined)) == (len(texts), {})
    items = stored_items(engine)
    assert {r["id"]: items[r["id"]]["text"] for r in records} == {r["id"]: r["text"] for r in records}
    assert all(items[r["id"]]["metadata"] == r["metadata"] for r in records)


def test_a_byte_order_mark_does_not_hide_the_first_record(engine, tmp_path):
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + json.dumps({"id": "j1", "text": "t"}).encode() + b"\n")
    csv_path = tmp_path / "bom.csv"
    csv_path.write_bytes(b"\xef\xbb\xbf" + csv_bytes([{"id": "c1", "text": "t"}]))  # Excel's "CSV UTF-8"

    assert ingest_file(engine, jsonl).accepted == 1
    assert ingest_file(engine, csv_path).accepted == 1
    assert sorted(stored_items(engine)) == ["c1", "j1"]


def test_unknown_file_type_and_missing_file_are_refused(engine, tmp_path):
    (tmp_path / "data.xml").write_text("<items/>")
    with pytest.raises(ValueError, match="JSONL, CSV or Parquet"):
        ingest_file(engine, tmp_path / "data.xml")
    with pytest.raises(FileNotFoundError):
        ingest_file(engine, tmp_path / "absent.jsonl")


# --- quarantine -----------------------------------------------------------------------------------------------

TOO_LONG = "x" * (MAX_TEXT_CHARS + 1)

# (raw JSONL line, reason, the record_id kept with the quarantine row)
JSONL_BAD_LINES: list[tuple[bytes, str, str | None]] = [
    (b'{"text": "no id here"}', "missing_id", None),
    (b'{"id": "", "text": "empty id"}', "missing_id", ""),
    (b'{"id": "nan-conf", "text": "t", "confidence": NaN}', "confidence_invalid", "nan-conf"),
    (b'{"id": "inf-conf", "text": "t", "confidence": Infinity}', "confidence_invalid", "inf-conf"),
    (b'{"id": "high-conf", "text": "t", "confidence": 1.5}', "confidence_invalid", "high-conf"),
    (b'{"id": "low-conf", "text": "t", "confidence": -0.01}', "confidence_invalid", "low-conf"),
    (b'{"id": "str-conf", "text": "t", "confidence": "0.9"}', "confidence_invalid", "str-conf"),
    (b'{"id": "huge-conf", "text": "t", "confidence": ' + b"9" * 400 + b"}", "confidence_invalid", "huge-conf"),
    (b'{"id": "probs-sum", "text": "t", "probs": {"pos": 0.5, "neg": 0.6}}', "probs_not_normalised", "probs-sum"),
    (b'{"id": "probs-nan", "text": "t", "probs": {"pos": NaN, "neg": 1.0}}', "probs_invalid", "probs-nan"),
    (b'{"id": "bad-utf8", "text": "caf\xe9 \xff"}', "undecodable_text", None),
    (b'{"id": "surrogate", "text": "lone \\ud800 half"}', "undecodable_text", "surrogate"),
    (b'{"id": "too-long", "text": "' + TOO_LONG.encode() + b'"}', "text_too_long", "too-long"),
    (b'{"id": "unknown-pred", "text": "t", "prediction": "zebra"}', "unknown_label", "unknown-pred"),
    (b'{"id": "unknown-probs", "text": "t", "probs": {"pos": 0.5, "zebra": 0.5}}', "unknown_label",
     "unknown-probs"),
    (b'{"id": "broken", "text": ', "invalid_json", None),
    (b"{'id': 'single-quotes', 'text': 't'}", "invalid_json", None),
    (b"[" * 100_000 + b"]" * 100_000, "invalid_json", None),
    (b'{"id": ' + b"1" * 5_000 + b', "text": "t"}', "invalid_json", None),
    (b'{"id": "no-content"}', "missing_content", "no-content"),
    (b'{"id": "no-content-2", "text": null, "features": null}', "missing_content", "no-content-2"),
    (b'["id", "text"]', "not_an_object", None),
    (b'{"id": "nul", "text": "a\\u0000b"}', "text_invalid", "nul"),
    (b'{"id": "num-text", "text": 42}', "text_invalid", "num-text"),
    (b'{"id": "bad-features", "features": [1, NaN]}', "features_invalid", "bad-features"),
    (b'{"id": "empty-features", "features": []}', "features_invalid", "empty-features"),
    (b'{"id": "meta-nan", "text": "t", "metadata": {"amount": NaN}}', "metadata_invalid", "meta-nan"),
    (b'{"id": "meta-list", "text": "t", "metadata": [1]}', "metadata_invalid", "meta-list"),
    (b'{"id": {"nested": 1}, "text": "t"}', "invalid_id", "{'nested': 1}"),
    (b'{"id": "' + b"i" * (MAX_ID_CHARS + 1) + b'", "text": "t"}', "invalid_id",
     "i" * (MAX_ID_CHARS - 1) + "…"),  # clipped to fit the varchar(512) column
    (b'{"id": "seg", "text": "t", "segment": ["a"]}', "segment_invalid", "seg"),
    (b'{"id": "pred-obj", "text": "t", "prediction": {"label": "pos"}}', "prediction_invalid", "pred-obj"),
]


def _jsonl_with_bad_lines(path: Path) -> tuple[Path, list[str], list[tuple[int, str, str | None]]]:
    """Good and bad lines interleaved (plus blank lines, which are not records); what should be accepted/kept."""
    lines: list[bytes] = []
    good_ids: list[str] = []
    expected: list[tuple[int, str, str | None]] = []
    for i, (line, reason, record_id) in enumerate(JSONL_BAD_LINES):
        record = good_record(i)
        lines.append(json.dumps(record).encode())
        good_ids.append(record["id"])
        lines.append(line)
        expected.append((len(lines), reason, record_id))
        if i % 7 == 0:
            lines.append(b"   ")
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, good_ids, expected


def test_every_malformed_kind_is_quarantined_and_the_rest_goes_on(engine, tmp_path):
    path, good_ids, expected = _jsonl_with_bad_lines(tmp_path / "mixed.jsonl")

    summary = ingest_file(engine, path, labels=LABELS)

    reasons = [reason for _, reason, _ in expected]
    assert summary.accepted == len(good_ids)
    assert summary.duplicate == 0
    assert dict(summary.quarantined) == {r: reasons.count(r) for r in set(reasons)}
    assert sorted(stored_items(engine)) == sorted(good_ids)
    assert stored_quarantine(engine) == sorted(expected)


def test_quarantine_rows_keep_source_detail_and_a_storable_raw_copy(engine, tmp_path):
    path, _, expected = _jsonl_with_bad_lines(tmp_path / "mixed.jsonl")
    ingest_file(engine, path, labels=LABELS)
    with engine.connect() as conn:
        rows = {row["record_number"]: row for row in conn.execute(select(QUARANTINE)).mappings()}
    assert {row["source"] for row in rows.values()} == {str(path.resolve())}
    for number, reason, _ in expected:
        row = rows[number]
        assert re.fullmatch(r"[a-z_]+", row["reason"]) and row["reason"] == reason
        assert row["detail"] and len(row["detail"]) <= 500
        assert row["raw"] and len(row["raw"]) <= 2_000 and "\x00" not in row["raw"]
        assert row["created_at"] is not None
    bad_utf8 = next(n for n, reason, _ in expected if reason == "undecodable_text")
    assert "caf\ufffd" in rows[bad_utf8]["raw"]  # undecodable bytes kept as replacement characters


def test_reingesting_a_file_with_bad_records_does_not_duplicate_quarantine_rows(engine, tmp_path):
    path, good_ids, expected = _jsonl_with_bad_lines(tmp_path / "mixed.jsonl")
    first = ingest_file(engine, path, labels=LABELS)
    quarantine_before = stored_quarantine(engine)

    second = ingest_file(engine, path, labels=LABELS)

    assert (second.accepted, second.duplicate) == (0, len(good_ids))
    assert second.quarantined == first.quarantined  # still reported, so nothing is dropped silently ...
    assert count(engine, QUARANTINE) == len(expected)  # ... but stored once
    assert stored_quarantine(engine) == quarantine_before


def test_csv_malformed_records_are_quarantined(engine, tmp_path):
    header = ",".join(CSV_COLUMNS).encode()
    rows = [
        (b"c-good-1,hello,,,pos,0.9,,", None),
        (b",no id,,,,,,", "missing_id"),
        (b"c-nan,t,,,,NaN,,", "confidence_invalid"),
        (b"c-high,t,,,,1.5,,", "confidence_invalid"),
        (b"c-word,t,,,,very sure,,", "invalid_field"),
        (b'c-sum,t,,,,,"{""pos"": 0.5, ""neg"": 0.6}",', "probs_not_normalised"),
        (b'c-json,t,,,,,"{""pos"": 0.5",', "invalid_field"),
        (b"c-utf8,caf\xe9 \xff,,,,,,", "undecodable_text"),
        (b"c-long," + TOO_LONG.encode() + b",,,,,,", "text_too_long"),
        (b"c-label,t,,,zebra,,,", "unknown_label"),
        (b"c-empty,,,,,,,", "missing_content"),
        (b'c-feat,,"[1, 2.5]",,,,,', None),
        (b"c-good-2,bye,,billing,neg,0.1,,", None),
    ]
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"\n".join([header, *(row for row, _ in rows)]) + b"\n")

    summary = ingest_file(engine, path, labels=LABELS)

    expected = [(number, reason) for number, (_, reason) in enumerate(rows, start=2) if reason]
    assert summary.accepted == 3
    assert sum(summary.quarantined.values()) == len(expected)
    assert [(n, r) for n, r, _ in stored_quarantine(engine)] == expected
    items = stored_items(engine)
    assert sorted(items) == ["c-feat", "c-good-1", "c-good-2"]
    assert items["c-feat"]["features"] == [1.0, 2.5]
    assert (items["c-good-2"]["segment"], items["c-good-2"]["upstream_confidence"]) == ("billing", 0.1)


def test_parquet_malformed_records_are_quarantined(engine, tmp_path):
    good = good_record(0)
    cases = [
        ({**good, "id": None}, "missing_id"),
        ({**good, "id": "p-nan", "confidence": math.nan}, "confidence_invalid"),
        ({**good, "id": "p-high", "confidence": 1.5}, "confidence_invalid"),
        ({**good, "id": "p-sum", "probs": {"pos": 0.5, "neg": 0.6}}, "probs_not_normalised"),
        ({**good, "id": "p-long", "text": TOO_LONG}, "text_too_long"),
        ({**good, "id": "p-label", "prediction": "zebra"}, "unknown_label"),
        ({**good, "id": "p-label-probs", "probs": {"pos": 0.5, "zebra": 0.5}}, "unknown_label"),
        ({**good, "id": "p-empty", "text": None, "features": None}, "missing_content"),
        ({**good, "id": "p-feat", "text": None, "features": [1.0, math.inf]}, "features_invalid"),
    ]
    records = [good, *(record for record, _ in cases), good_record(1)]
    path = write_parquet(tmp_path / "mixed.parquet", records)

    summary = ingest_file(engine, path, labels=LABELS)

    assert summary.accepted == 2
    assert [(n, r) for n, r, _ in stored_quarantine(engine)] == [
        (number, reason) for number, (_, reason) in enumerate(cases, start=2)
    ]
    assert sorted(stored_items(engine)) == ["item-0", "item-1"]


# --- chunking and progress ------------------------------------------------------------------------------------


def _hundred_records(path: Path) -> Path:
    """100 records: good ones, a bad one every ninth, and ids repeated across chunk boundaries."""
    lines = []
    for i in range(100):
        if i % 9 == 8:
            lines.append(json.dumps({"id": f"bad-{i}", "text": "t", "confidence": 2.0}))
        elif i in (50, 51, 99):
            lines.append(json.dumps(good_record(i - 47)))  # the same ids as records 3, 4 and 52
        else:
            lines.append(json.dumps(good_record(i)))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_many_small_chunks_give_the_same_result_as_one(engine, tmp_path):
    path = _hundred_records(tmp_path / "hundred.jsonl")
    reference_engine = db.get_engine(f"sqlite:///{tmp_path / 'reference.db'}")
    one_chunk = ingest_file(reference_engine, path, chunk_size=10_000)

    many_chunks = ingest_file(engine, path, chunk_size=7)

    assert many_chunks.as_dict() == one_chunk.as_dict()
    assert (one_chunk.accepted, one_chunk.duplicate, sum(one_chunk.quarantined.values())) == (86, 3, 11)
    assert stored_items(engine).keys() == stored_items(reference_engine).keys()
    strip = lambda items: {k: {c: v for c, v in row.items() if c not in ("received_at", "updated_at")}  # noqa: E731
                           for k, row in items.items()}
    assert strip(stored_items(engine)) == strip(stored_items(reference_engine))
    assert stored_quarantine(engine) == stored_quarantine(reference_engine)


@pytest.mark.parametrize("fmt", FORMATS)
def test_progress_callback_totals_the_record_count(engine, tmp_path, fmt):
    path = write(fmt, tmp_path / "hundred", [good_record(i) for i in range(100)])
    progress: list[int] = []

    summary = ingest_file(engine, path, chunk_size=7, on_progress=progress.append)

    assert progress == [7] * 14 + [2]
    assert sum(progress) == summary.total == 100


def test_progress_counts_quarantined_and_duplicate_records_too(engine, tmp_path):
    path = _hundred_records(tmp_path / "hundred.jsonl")
    progress: list[int] = []
    summary = ingest_file(engine, path, chunk_size=7, on_progress=progress.append)
    assert sum(progress) == summary.total == 100


def test_a_file_bigger_than_one_chunk(engine, tmp_path):
    n = 50_000
    assert n > 2 * CHUNK_SIZE
    path = tmp_path / "big.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            handle.write(f'{{"id": "big-{i}", "text": "text {i}", "prediction": "pos", "confidence": {(i % 100) / 100}}}\n')
    progress: list[int] = []

    summary = ingest_file(engine, path, on_progress=progress.append)

    assert (summary.accepted, summary.duplicate, summary.total) == (n, 0, n)
    assert progress == [CHUNK_SIZE, CHUNK_SIZE, n - 2 * CHUNK_SIZE]
    assert count(engine, ITEMS) == n
    again = ingest_file(engine, path)
    assert (again.accepted, again.duplicate) == (0, n)
    assert count(engine, ITEMS) == n


def test_a_parquet_file_with_many_row_groups(engine, tmp_path):
    records = [good_record(i) for i in range(1_000)]
    path = write_parquet(tmp_path / "groups.parquet", records, row_group_size=64)
    summary = ingest_file(engine, path, chunk_size=300)
    assert (summary.accepted, summary.total) == (1_000, 1_000)
    assert count(engine, ITEMS) == 1_000


# --- validate_record ------------------------------------------------------------------------------------------


def test_validate_record_builds_the_item_row():
    row = validate_record({"id": 12, "text": "t", "prediction": "pos", "confidence": 1,
                           "probs": {"pos": 1, "neg": 0}, "metadata": {"a": 1}, "extra": "ignored"})
    assert row == {"id": "12", "segment": "default", "text": "t", "features": None, "upstream_prediction": "pos",
                   "upstream_confidence": 1.0, "upstream_probs": {"pos": 1.0, "neg": 0.0}, "metadata": {"a": 1},
                   "kind": "classification", "payload": None}


@pytest.mark.parametrize("total", [1 - PROBS_TOLERANCE / 2, 1 + PROBS_TOLERANCE / 2])
def test_probs_within_the_tolerance_are_accepted(total):
    assert validate_record({"id": "a", "text": "t", "probs": {"pos": total - 0.5, "neg": 0.5}})


@pytest.mark.parametrize("value, reason", [
    ({"text": "t"}, "missing_id"),
    ({"id": True, "text": "t"}, "invalid_id"),
    ({"id": 10**5000, "text": "t"}, "invalid_id"),  # beyond str()'s int digit limit
    ({"id": "a\ud800", "text": "t"}, "invalid_id"),
    ({"id": "a\x00", "text": "t"}, "invalid_id"),
    ({"id": "a", "text": "t", "confidence": 10**400}, "confidence_invalid"),  # beyond float's range
    ({"id": "a", "text": "t", "confidence": True}, "confidence_invalid"),
    ({"id": "a", "features": [10**400]}, "features_invalid"),
    ({"id": "a", "features": "1,2"}, "features_invalid"),
    ({"id": "a", "text": "t", "prediction": 10**5000}, "prediction_invalid"),
    ({"id": "a", "text": "t", "prediction": "p\x00"}, "prediction_invalid"),
    ({"id": "a", "text": "t", "probs": {"\ud800": 1.0}}, "probs_invalid"),
    ({"id": "a", "text": "t", "probs": [0.5, 0.5]}, "probs_invalid"),
    ({"id": "a", "text": "t", "segment": "s" * 129}, "segment_invalid"),
    ({"id": "a", "text": "t", "metadata": {"when": object()}}, "metadata_invalid"),
    ({"id": "a", "text": "t", "metadata": {"n": 10**5000}}, "metadata_invalid"),
    ({"id": "a", "text": "t", "metadata": {"s": "x\ud800"}}, "metadata_invalid"),
    ({"id": "a", "text": "t", "metadata": {"s": "x\x00"}}, "metadata_invalid"),
    ({"id": "a", "text": "t", "metadata": {"inf": math.inf}}, "metadata_invalid"),
])
def test_validate_record_rejects_with_a_reason(value, reason):
    with pytest.raises(RecordError) as caught:
        validate_record(value, labels=LABELS)
    assert caught.value.reason == reason
    assert caught.value.detail


def test_a_literal_backslash_u0000_in_metadata_is_not_a_nul():
    assert validate_record({"id": "a", "text": "t", "metadata": {"s": "\\u0000"}})["metadata"] == {"s": "\\u0000"}


_scalars = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**5000), max_value=10**5000)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text() | st.binary(max_size=8)
    | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.just("a\x00b")
)
_json_like = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
_field_values = {
    "id": st.text(max_size=20) | st.integers() | _json_like,
    "text": st.text() | _json_like,
    "features": st.lists(st.floats(allow_nan=True) | st.integers(), max_size=5) | _json_like,
    "segment": st.text(max_size=140) | _json_like,
    "prediction": st.sampled_from(["pos", "neg", "zebra"]) | _json_like,
    "confidence": st.floats(allow_nan=True, allow_infinity=True) | _json_like,
    "probs": st.dictionaries(st.sampled_from(["pos", "neg", "zebra"]), st.floats(0, 1), max_size=3) | _json_like,
    "metadata": st.dictionaries(st.text(max_size=5), _json_like, max_size=4) | _json_like,
}
_records = (
    st.fixed_dictionaries({}, optional={name: strategy for name, strategy in _field_values.items()})
    | st.dictionaries(st.sampled_from(sorted(KNOWN_FIELDS)) | st.text(max_size=5), _json_like, max_size=8)
)


def _assert_storable_row(row: dict[str, Any]) -> None:
    assert isinstance(row["id"], str) and 0 < len(row["id"]) <= MAX_ID_CHARS
    for name in ("id", "segment", "text", "upstream_prediction"):
        if row[name] is not None:
            assert isinstance(row[name], str)
            row[name].encode("utf-8")  # no lone surrogates
            assert "\x00" not in row[name]
    assert row["text"] is not None or row["features"] is not None
    assert row["text"] is None or len(row["text"]) <= MAX_TEXT_CHARS
    json.dumps([row["features"], row["upstream_probs"], row["metadata"]], allow_nan=False).encode("utf-8")
    if row["upstream_confidence"] is not None:
        assert 0.0 <= row["upstream_confidence"] <= 1.0
    if row["upstream_probs"] is not None:
        assert abs(sum(row["upstream_probs"].values()) - 1.0) <= PROBS_TOLERANCE


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_records, labels=st.none() | st.just(LABELS) | st.frozensets(st.text(max_size=3), max_size=3))
def test_validate_record_is_total(value, labels):
    """Any dict validates to a storable row with a str id, or raises RecordError with a reason; nothing else."""
    try:
        row = validate_record(value, labels=labels)
    except RecordError as exc:
        assert isinstance(exc.reason, str) and re.fullmatch(r"[a-z_]+", exc.reason)
        assert isinstance(exc.detail, str) and exc.detail
        return
    _assert_storable_row(row)


def test_ingest_summary_totals():
    summary = IngestSummary(source="s", accepted=2, duplicate=1)
    summary.quarantined["missing_id"] += 3
    assert summary.total == 6
    assert summary.as_dict()["quarantined"] == {"missing_id": 3}


def test_absent_json_fields_are_sql_null(engine, tmp_path):
    """`Item.upstream_probs.is_not(None)` (flows/score.py) must not match items that came without probs."""
    records = [{"id": "bare", "text": "t"}, {"id": "rich", "features": [1.0], "probs": {"pos": 1.0}, "metadata": {}}]
    ingest_file(engine, write_jsonl(tmp_path / "nulls.jsonl", records))
    with engine.connect() as conn:
        def ids_where(clause):
            return conn.execute(select(ITEMS.c.id).where(clause).order_by(ITEMS.c.id)).scalars().all()

        assert ids_where(ITEMS.c.features.is_(None)) == ["bare"]
        assert ids_where(ITEMS.c.upstream_probs.is_(None)) == ["bare"]
        assert ids_where(ITEMS.c.metadata.is_(None)) == ["bare"]
        assert ids_where(ITEMS.c.upstream_probs.is_not(None)) == ["rich"]
    assert stored_items(engine)["rich"]["metadata"] == {}


# ---- outputs of LLM pipelines: generation, pairwise, extraction (the input contract's `kind`)

GENERATION = {"id": "g1", "kind": "generation", "segment": "support",
              "prompt": [{"role": "system", "content": "Answer from the manual."},
                         {"role": "user", "content": "How do I reset the router?"}],
              "response": "Hold the reset button for ten seconds.", "context": ["Manual p.4: hold reset 10 s."],
              "confidence": 0.82, "scores": {"judge": 4, "trust": 0.9}}
PAIRWISE = {"id": "p1", "kind": "pairwise", "prompt": "Summarise the report.", "response_a": "Sales rose.",
            "response_b": "Sales fell slightly in Q3.", "preference": 0.3}
EXTRACTION = {"id": "x1", "kind": "extraction", "text": "Invoice 17 from ACME, total 120.50 EUR",
              "fields": {"vendor": {"value": "ACME", "confidence": 0.97}, "total": {"value": 120.5, "confidence": 0.6}}}


def test_each_llm_kind_becomes_an_item_with_its_payload():
    row = validate_record(GENERATION)
    assert (row["kind"], row["text"], row["segment"]) == ("generation", GENERATION["response"], "support")
    assert row["payload"] == {"prompt": GENERATION["prompt"], "response": GENERATION["response"],
                              "context": GENERATION["context"], "confidence": 0.82,
                              "scores": {"judge": 4.0, "trust": 0.9}}
    # the pipeline's own score becomes an upstream prediction over the kind's answers, to be calibrated on them
    assert (row["upstream_prediction"], row["upstream_confidence"]) == ("accept", 0.82)
    assert row["upstream_probs"] is None  # the response put forward as it is: no probability of the other answer
    assert validate_record({k: v for k, v in GENERATION.items() if k != "confidence"})["upstream_prediction"] is None
    pair = validate_record(PAIRWISE)
    assert pair["kind"] == "pairwise" and pair["text"] == "Summarise the report."
    assert pair["payload"]["preference"] == 0.3 and pair["payload"]["response_b"] == "Sales fell slightly in Q3."
    assert (pair["upstream_prediction"], pair["upstream_confidence"]) == ("b", pytest.approx(0.7))
    assert pair["upstream_probs"] == pytest.approx({"a": 0.3, "b": 0.7})
    extraction = validate_record(EXTRACTION)
    assert extraction["payload"] == {"fields": {"vendor": {"value": "ACME", "confidence": 0.97},
                                                "total": {"value": 120.5, "confidence": 0.6}}}
    # every field right: the product of the fields' confidences
    assert (extraction["upstream_prediction"], extraction["upstream_confidence"]) == ("confirmed",
                                                                                      pytest.approx(0.97 * 0.6))


@pytest.mark.parametrize("record, reason", [
    ({**GENERATION, "response": "  "}, "missing_response"),
    ({k: v for k, v in GENERATION.items() if k != "response"}, "missing_response"),
    ({**GENERATION, "prompt": None}, "missing_prompt"),
    ({**GENERATION, "prompt": [{"role": "hacker", "content": "x"}]}, "prompt_invalid"),
    ({**GENERATION, "confidence": 1.5}, "confidence_invalid"),
    ({**GENERATION, "scores": {"judge": "great"}}, "scores_invalid"),
    ({**GENERATION, "context": [1, 2]}, "context_invalid"),
    ({**GENERATION, "prediction": "x"}, "field_not_for_kind"),
    ({**PAIRWISE, "response_b": "Sales rose. "}, "responses_identical"),
    ({**PAIRWISE, "response_a": None}, "missing_response"),
    ({**PAIRWISE, "preference": -0.1}, "preference_invalid"),
    ({**EXTRACTION, "fields": {"vendor": {"value": "ACME"}}}, "field_confidence_missing"),
    ({**EXTRACTION, "fields": {"vendor": {"value": "ACME", "confidence": 2}}}, "field_confidence_invalid"),
    ({**EXTRACTION, "fields": {}}, "missing_fields"),
    ({**EXTRACTION, "fields": {"vendor": "ACME"}}, "field_invalid"),
    ({**GENERATION, "kind": "chat"}, "unknown_kind"),
])
def test_malformed_llm_records_are_refused_with_a_reason(record, reason):
    with pytest.raises(RecordError) as error:
        validate_record(record)
    assert error.value.reason == reason


def test_llm_records_are_ingested_beside_classification_and_the_bad_ones_quarantined(engine, tmp_path):
    import json as json_module

    from sqlalchemy import select

    from store.models import Item, QuarantinedRecord

    path = tmp_path / "mixed.jsonl"
    lines = [GENERATION, PAIRWISE, EXTRACTION, {"id": "c1", "text": "plain", "prediction": "x", "confidence": 0.9},
             {**PAIRWISE, "id": "p2", "response_b": PAIRWISE["response_a"]},
             {**EXTRACTION, "id": "x2", "fields": {"total": {"value": 3}}}]
    path.write_text("".join(json_module.dumps(line) + "\n" for line in lines))
    summary = ingest_file(engine, path)
    assert summary.accepted == 4
    assert dict(summary.quarantined) == {"responses_identical": 1, "field_confidence_missing": 1}
    with engine.connect() as conn:
        kinds = dict(conn.execute(select(Item.id, Item.kind)).all())
        payload = conn.execute(select(Item.payload).where(Item.id == "g1")).scalar_one()
        reasons = sorted(conn.execute(select(QuarantinedRecord.reason)).scalars())
    assert kinds == {"g1": "generation", "p1": "pairwise", "x1": "extraction", "c1": "classification"}
    assert payload["prompt"][1]["content"] == "How do I reset the router?" and payload["scores"]["judge"] == 4.0
    assert reasons == ["field_confidence_missing", "responses_identical"]
    assert ingest_file(engine, path).accepted == 0  # idempotent on id


def test_a_csv_carries_chat_prompts_contexts_and_fields_as_json(engine, tmp_path):
    import csv as csv_module
    import json as json_module

    path = tmp_path / "gen.csv"
    with path.open("w", newline="") as handle:
        writer = csv_module.writer(handle)
        writer.writerow(["id", "kind", "prompt", "response", "context", "confidence"])
        writer.writerow(["g9", "generation", json_module.dumps(GENERATION["prompt"]), "Hold reset.",
                         "Manual p.4", "0.7"])
        writer.writerow(["g10", "generation", "A plain question?", "An answer.", "", ""])
    assert ingest_file(engine, path).accepted == 2


# --- hardening: CSV that breaks its own quoting or columns ---------------------------------------------------------

def test_an_unterminated_quote_is_quarantined_and_the_rows_after_it_are_read(engine, tmp_path):
    path = tmp_path / "quotes.csv"
    path.write_text('id,text,segment\na1,"good one",s\na2,"broken quote,s\na3,fine,s\na4,also fine,s\n'
                    'a5,"ok",s\na6,"a quoted\nline break is text",s\n')
    summary = ingest_file(engine, path)
    assert (summary.accepted, summary.quarantined) == (5, {"csv_quoting": 1})
    assert [(n, r) for n, r, _ in stored_quarantine(engine)] == [(3, "csv_quoting")]
    items = stored_items(engine)
    assert sorted(items) == ["a1", "a3", "a4", "a5", "a6"]
    assert (items["a3"]["text"], items["a6"]["text"]) == ("fine", "a quoted\nline break is text")
    # the quote left open to the end of the file: the rows after it are still read
    tail = tmp_path / "tail.csv"
    tail.write_text('id,text\nb1,"never closed\nb2,two\nb3,three\n')
    assert ingest_file(engine, tail).accepted == 2 and {"b2", "b3"} <= set(stored_items(engine))


def test_rows_with_more_or_fewer_fields_than_the_header_are_quarantined(engine, tmp_path):
    path = tmp_path / "columns.csv"
    path.write_text("id,text\nc1,one,EXTRA\nc2\nc3,three\n\nc4,four\n")
    summary = ingest_file(engine, path)
    assert (summary.accepted, summary.quarantined) == (2, {"extra_columns": 1, "missing_columns": 1})
    assert [(n, r) for n, r, _ in stored_quarantine(engine)] == [(2, "extra_columns"), (3, "missing_columns")]
    assert sorted(stored_items(engine)) == ["c3", "c4"]


def test_a_csv_without_a_header_naming_id_is_refused_whole(engine, tmp_path):
    from store.ingest import check_file

    path = tmp_path / "no-header.csv"
    path.write_text("doc-1,hello world\ndoc-2,more\n")
    with pytest.raises(ValueError, match="without a header row"):
        check_file(path)
    with pytest.raises(ValueError, match="must name the columns"):
        ingest_file(engine, path)
    assert stored_items(engine) == {} and stored_quarantine(engine) == []


@pytest.mark.parametrize("record, reason", [
    ({"id": "r1", "text": "t", "prediction": "neg", "probs": {"pos": 0.8, "neg": 0.2}}, "prediction_not_argmax"),
    ({"id": "r2", "text": "t", "prediction": "neu", "probs": {"pos": 0.8, "neg": 0.2}}, "prediction_not_argmax"),
    ({"id": "r3", "text": "t", "confidence": 0.8}, "prediction_missing"),
])
def test_records_the_passthrough_could_never_score_are_quarantined_at_ingest(record, reason):
    with pytest.raises(RecordError) as caught:
        validate_record(record)
    assert caught.value.reason == reason


def test_a_record_with_probs_comes_back_a_duplicate_whatever_the_order_of_its_probs(engine, tmp_path):
    """The passthrough's confidence is the probabilities' share over their exact sum, so the stored item and the
    same record read again agree to the last digit: a duplicate, never an id conflict."""
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_text(json.dumps({"id": "p1", "text": "t", "probs": {"c": 0.1, "a": 0.2, "b": 0.7}}) + "\n")
    second.write_text(json.dumps({"id": "p1", "text": "t", "probs": {"a": 0.2, "b": 0.7, "c": 0.1},
                                  "confidence": 0.7}) + "\n")
    assert ingest_file(engine, first).accepted == 1
    for path in (first, second):
        again = ingest_file(engine, path)
        assert (again.accepted, again.duplicate, dict(again.quarantined)) == (0, 1, {}), path.name
    assert stored_items(engine)["p1"]["upstream_confidence"] == 0.7 / math.fsum([0.1, 0.2, 0.7])


def test_a_tie_at_the_top_or_probs_alone_still_score(engine, tmp_path):
    assert validate_record({"id": "t1", "text": "t", "prediction": "neg", "probs": {"pos": 0.5, "neg": 0.5}})
    assert validate_record({"id": "t2", "text": "t", "probs": {"pos": 0.3, "neg": 0.7}})["upstream_prediction"] is None


def test_the_same_line_of_an_overwritten_file_with_another_bad_record_is_kept_too(engine, tmp_path):
    path = tmp_path / "batch.jsonl"
    path.write_text('{"id": "ok-1", "text": "fine"}\n{"id": "bad", "text": 5}\n')
    first = ingest_file(engine, path)
    path.write_text('{"id": "ok-2", "text": "fine"}\n{"id": "bad-2"}\n')
    second = ingest_file(engine, path)
    assert (dict(first.quarantined), dict(second.quarantined)) == ({"text_invalid": 1}, {"missing_content": 1})
    assert [(n, r, i) for n, r, i in stored_quarantine(engine)] == [(2, "missing_content", "bad-2"),
                                                                   (2, "text_invalid", "bad")]
    # the same file read again adds nothing: the record is known by its line and its content
    ingest_file(engine, path)
    assert len(stored_quarantine(engine)) == 2


def test_an_oversized_line_is_quarantined_unread_and_the_next_lines_are_read(engine, tmp_path, monkeypatch):
    import store.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "MAX_LINE_BYTES", 1_000)  # the same logic as at 4 MB, on a small file
    path = tmp_path / "big-line.jsonl"
    huge = json.dumps({"id": "huge", "text": "t", "metadata": {"blob": "x" * 5_000}})
    path.write_text('{"id": "before", "text": "a"}\n' + huge + '\n{"id": "after", "text": "b"}\n')
    summary = ingest_file(engine, path)
    assert (summary.accepted, dict(summary.quarantined)) == (2, {"record_too_large": 1})
    assert sorted(stored_items(engine)) == ["after", "before"]
    assert [(n, r) for n, r, _ in stored_quarantine(engine)] == [(2, "record_too_large")]


def test_the_same_id_with_other_content_is_reported_not_silently_dropped(engine, tmp_path):
    first = tmp_path / "first.jsonl"
    first.write_text('{"id": "x1", "text": "the original"}\n{"id": "x2", "text": "same"}\n'
                     '{"id": "x3", "text": "twice in one file"}\n{"id": "x3", "text": "twice, changed"}\n'
                     '{"id": "x4", "text": "exact copy"}\n{"id": "x4", "text": "exact copy"}\n')
    one = ingest_file(engine, first)
    assert (one.accepted, one.duplicate, dict(one.quarantined)) == (4, 1, {"id_conflict": 1})
    second = tmp_path / "second.jsonl"
    second.write_text('{"id": "x1", "text": "a different text"}\n{"id": "x2", "text": "same"}\n')
    two = ingest_file(engine, second)
    assert (two.accepted, two.duplicate, dict(two.quarantined)) == (0, 1, {"id_conflict": 1})
    assert stored_items(engine)["x1"]["text"] == "the original"  # the first is kept
    conflicts = [(n, r, i) for n, r, i in stored_quarantine(engine)]
    assert sorted(conflicts) == [(1, "id_conflict", "x1"), (4, "id_conflict", "x3")]
    again = ingest_file(engine, second)  # the same file again: the same conflict, recorded once
    assert again.quarantined == {"id_conflict": 1} and len(stored_quarantine(engine)) == 2


def test_files_that_cannot_be_read_as_items_are_refused_whole_in_one_line(tmp_path):
    import os

    from store.ingest import check_file

    utf16 = tmp_path / "u16.jsonl"
    utf16.write_bytes('{"id": "a", "text": "x"}\n'.encode("utf-16"))
    not_parquet = tmp_path / "fake.parquet"
    not_parquet.write_text("id,text\na,b\n")
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    unknown = tmp_path / "x.txt"
    unknown.write_text("hello\n")
    for path, message in ((utf16, "UTF-16 or UTF-32"), (not_parquet, "not a Parquet file"),
                          (fifo, "not a regular file"), (unknown, "cannot read")):
        with pytest.raises(ValueError, match=message) as caught:
            check_file(path)
        assert "\n" not in str(caught.value)
    good = tmp_path / "good.jsonl"
    good.write_text('{"id": "a", "text": "x"}\n')
    check_file(good)


@pytest.mark.parametrize("item_id, message", [
    ("a1 ", "whitespace"), (" a1", "whitespace"), ("caf\u0065\u0301", "NFC"),
])
def test_ids_that_would_look_the_same_as_another_are_refused(item_id, message):
    with pytest.raises(RecordError, match=message) as caught:
        validate_record({"id": item_id, "text": "t"})
    assert caught.value.reason == "invalid_id"
    assert validate_record({"id": "caf\u00e9", "text": "t"})["id"] == "caf\u00e9"  # composed: fine


def test_seed_labels_stream_in_chunks_with_flat_memory_and_name_a_bad_line(engine, tmp_path, monkeypatch):
    """A labels file is read and stored LABEL_CHUNK pairs at a time (2 million labels: 22 s, linear); every known
    item is labelled once whatever the chunking; an overlong or malformed line is an error naming it."""
    import flows.ingest as seeding
    from store.models import Label

    records = [good_record(i) for i in range(40)]
    ingest_file(engine, write_jsonl(tmp_path / "items.jsonl", records))
    pairs = [{"id": r["id"], "label": "a"} for r in records] + [{"id": f"unknown-{i}", "label": "b"} for i in range(9)]
    pairs.append({"id": records[0]["id"], "label": "b"})  # a later chunk does not relabel an item
    path = write_jsonl(tmp_path / "labels.jsonl", pairs)
    monkeypatch.setattr(seeding, "LABEL_CHUNK", 7)
    chunks, original = [], seeding._seed_chunk

    def counted(engine, chunk, **kwargs):
        chunks.append(len(chunk))
        return original(engine, chunk, **kwargs)

    monkeypatch.setattr(seeding, "_seed_chunk", counted)
    summary = seeding.seed_labels(engine, seeding.iter_labels(path), holdout_share=0.5)
    assert max(chunks) == 7 and sum(chunks) == len(pairs)
    assert summary == {"added": 40, "holdout": summary["holdout"], "already_labelled": 1, "unknown_items": 9}
    assert 10 <= summary["holdout"] <= 30
    with engine.connect() as conn:
        stored = dict(conn.execute(select(Label.item_id, Label.label)).all())
    assert stored == {r["id"]: "a" for r in records}

    long_line = tmp_path / "long.jsonl"
    long_line.write_text(json.dumps({"id": "x", "label": "y" * 70_000}) + "\n")
    with pytest.raises(ValueError, match=r"long.jsonl:1: a label line longer than 65,536 bytes"):
        list(seeding.iter_labels(long_line))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "x", "label": "y"}\n{"id": "z", \n')
    with pytest.raises(ValueError, match=r"broken.jsonl:2: not a JSON object"):
        list(seeding.iter_labels(broken))



# --- the block path of common JSONL records -------------------------------------------------------------------


def _plain_line(i: int, **changes: Any) -> str:
    """A record of the common shape (id, text, prediction, confidence, segment), which the block path reads."""
    record: dict[str, Any] = {"id": f"plain-{i}", "text": f"plain text {i}", "prediction": "pos" if i % 2 else "neg",
                              "confidence": (i % 10) / 10, "segment": f"s{i % 3}"}
    return json.dumps({**record, **changes})


# Lines the block path must leave to the record-by-record path (or read exactly as it does): each breaks one of
# `_fast_row`'s checks, or is a record it accepts in a form a column check could misread.
TRICKY_LINES = {
    "blank": "   ",
    "NaN confidence": '{"id": "t-nan", "text": "x", "prediction": "pos", "confidence": NaN}',
    "integer confidence": '{"id": "t-int", "text": "x", "prediction": "pos", "confidence": 1}',
    "boolean confidence": '{"id": "t-bool", "text": "x", "prediction": "pos", "confidence": true}',
    "confidence above one": '{"id": "t-big", "text": "x", "prediction": "pos", "confidence": 1.5}',
    "confidence without prediction": '{"id": "t-alone", "text": "x", "confidence": 0.5}',
    "no confidence": '{"id": "t-noconf", "text": "x", "prediction": "pos"}',
    "no prediction nor confidence": '{"id": "t-bare", "text": "x", "segment": "s1"}',
    "unknown label": '{"id": "t-label", "text": "x", "prediction": "maybe", "confidence": 0.5}',
    "segment zero": '{"id": "t-seg0", "text": "x", "prediction": "pos", "confidence": 0.5, "segment": 0}',
    "segment empty": '{"id": "t-seg-empty", "text": "x", "prediction": "pos", "confidence": 0.5, "segment": ""}',
    "segment null": '{"id": "t-seg-null", "text": "x", "prediction": "pos", "confidence": 0.5, "segment": null}',
    "segment list": '{"id": "t-seg-list", "text": "x", "prediction": "pos", "confidence": 0.5, "segment": [1]}',
    "segment too long": json.dumps({"id": "t-seg-long", "text": "x", "segment": "s" * 129}),
    "id with a space": '{"id": " t-space", "text": "x", "prediction": "pos", "confidence": 0.5}',
    "id decomposed": json.dumps({"id": "te\u0301", "text": "x", "prediction": "pos", "confidence": 0.5}),
    "id composed": json.dumps({"id": "t\u00e9", "text": "x", "prediction": "pos", "confidence": 0.5},
                              ensure_ascii=False),
    "id a number": '{"id": 17, "text": "x", "prediction": "pos", "confidence": 0.5}',
    "id empty": '{"id": "", "text": "x", "prediction": "pos", "confidence": 0.5}',
    "id too long": json.dumps({"id": "t" * (MAX_ID_CHARS + 1), "text": "x"}),
    "text with NUL": '{"id": "t-nul", "text": "a\\u0000b", "prediction": "pos", "confidence": 0.5}',
    "text lone surrogate": '{"id": "t-surrogate", "text": "a\\ud800b", "prediction": "pos", "confidence": 0.5}',
    "text not ASCII": json.dumps({"id": "t-utf8", "text": "ünï ✓ 中文", "prediction": "neg", "confidence": 0.25},
                                 ensure_ascii=False),
    "text too long": json.dumps({"id": "t-long", "text": "x" * (MAX_TEXT_CHARS + 1)}),
    "text a number": '{"id": "t-textnum", "text": 5, "prediction": "pos", "confidence": 0.5}',
    "two objects": '{"id": "t-two", "text": "x"} {"id": "t-three", "text": "y"}',
    "extra field": '{"id": "t-meta", "text": "x", "prediction": "pos", "confidence": 0.5, "metadata": {"a": 1}}',
    "not an object": "[1, 2]",
    "invalid JSON": '{"id": "t-broken", ',
    "duplicate key": '{"id": "t-dupkey", "id": "t-dupkey-2", "text": "x", "prediction": "pos", "confidence": 0.5}',
    "same id, same content": _plain_line(1),
    "same id, other content": _plain_line(2, text="another text"),
}


def _ingest_both_ways(tmp_path: Path, name: str, content: bytes, chunk_size: int, monkeypatch,
                      earlier: bytes | None = None) -> tuple[Any, Any, int]:
    """Ingest `content` (after `earlier`, when given) into two new stores: through the block path, and with
    every line read record by record; the two engines and how many blocks went through the block path."""
    import store.ingest as ingest_module

    taken = []
    real = ingest_module._fast_block

    def counted(*args, **kwargs):
        block = real(*args, **kwargs)
        taken.append(block is not None)
        return block

    engines = []
    for way in ("blocks", "records"):
        path = tmp_path / way / f"{name}.jsonl"
        path.parent.mkdir(exist_ok=True)
        engine = db.get_engine(f"sqlite:///{tmp_path / way / 'store.db'}")
        monkeypatch.setattr(ingest_module, "_fast_block", counted if way == "blocks" else lambda *args: None)
        if earlier is not None:
            first = path.with_name("earlier.jsonl")
            first.write_bytes(earlier)
            ingest_file(engine, first, labels=LABELS, chunk_size=chunk_size)
        path.write_bytes(content)
        engines.append((engine, ingest_file(engine, path, labels=LABELS, chunk_size=chunk_size)))
    monkeypatch.setattr(ingest_module, "_fast_block", real)
    return *engines, sum(taken)


def _assert_same_store(blocks: tuple[Any, IngestSummary], records: tuple[Any, IngestSummary]) -> None:
    (fast, fast_summary), (slow, slow_summary) = blocks, records
    assert fast_summary.as_dict() | {"source": ""} == slow_summary.as_dict() | {"source": ""}
    strip = lambda items: {k: {c: v for c, v in row.items() if c not in ("received_at", "source", "source_id")}  # noqa: E731
                           for k, row in items.items()}
    assert strip(stored_items(fast)) == strip(stored_items(slow))
    assert states_of(fast) == states_of(slow)
    details = select(QUARANTINE.c.record_number, QUARANTINE.c.reason, QUARANTINE.c.record_id, QUARANTINE.c.raw,
                     QUARANTINE.c.fingerprint, QUARANTINE.c.detail).order_by(QUARANTINE.c.record_number)
    with fast.connect() as a, slow.connect() as b:
        fast_rows, slow_rows = list(a.execute(details)), list(b.execute(details))
    assert [row[:5] for row in fast_rows] == [row[:5] for row in slow_rows]
    assert [row[5].split(" (from ")[0] for row in fast_rows] == [row[5].split(" (from ")[0] for row in slow_rows]


@pytest.mark.parametrize("case", sorted(TRICKY_LINES))
def test_the_block_path_stores_exactly_what_the_record_path_stores(tmp_path, monkeypatch, case):
    """Each tricky line, in a block of common records: the block path leaves the block to the record-by-record
    path (or reads it alike), so the store, the summary and the quarantine are the same either way."""
    lines = [_plain_line(i) for i in range(4)] + [TRICKY_LINES[case]] + [_plain_line(i) for i in range(4, 8)]
    content = "".join(line + "\n" for line in lines).encode("utf-8")
    blocks, records, taken = _ingest_both_ways(tmp_path, "tricky", content, 3, monkeypatch)
    _assert_same_store(blocks, records)
    assert taken >= 1  # the blocks of common records around it still go through the block path


def test_a_file_of_common_records_goes_through_the_block_path_alone(tmp_path, monkeypatch):
    """Every block of a file of common records is read as one (a byte-order mark on the first line and ids out of
    order included); an id stored earlier with other content is quarantined as it is on the record path."""
    lines = [_plain_line(i) for i in (5, 3, 9, 0, 7, 1, 8, 2, 6, 4)]
    content = b"\xef\xbb\xbf" + "".join(line + "\n" for line in lines).encode("utf-8")
    earlier = (_plain_line(3) + "\n" + _plain_line(4, text="stored first") + "\n").encode("utf-8")
    blocks, records, taken = _ingest_both_ways(tmp_path, "common", content, 4, monkeypatch, earlier=earlier)
    _assert_same_store(blocks, records)
    assert taken == 1 + 3  # the earlier file's one block, and this one's three
    assert blocks[1].as_dict()["quarantined"] == {"id_conflict": 1}
    assert (blocks[1].accepted, blocks[1].duplicate) == (8, 1)
