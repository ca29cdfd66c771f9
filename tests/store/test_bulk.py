"""store.bulk on SQLite and PostgreSQL: insert-or-ignore, chunked look-ups past the bound-parameter limit, per-row updates."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select

from store import bulk
from store.models import Item, Watermark, utcnow

ITEMS = Item.__table__
WATERMARKS = Watermark.__table__


def _items(ids):
    now = utcnow()
    return [{"id": i, "segment": "default", "text": f"t{i}", "received_at": now} for i in ids]


def test_chunked_covers_every_value_once():
    values = list(range(23))
    parts = list(bulk.chunked(values, 5))
    assert [len(p) for p in parts] == [5, 5, 5, 5, 3]
    assert [v for p in parts for v in p] == values
    assert list(bulk.chunked([], 5)) == []


def test_insert_ignore_skips_rows_whose_key_exists(engine):
    with engine.begin() as conn:
        bulk.insert_ignore(conn, ITEMS, _items(["a", "b"]))
        bulk.insert_ignore(conn, ITEMS, [{**_items(["b"])[0], "text": "changed"}, *_items(["c"])])
        bulk.insert_ignore(conn, ITEMS, [])
    with engine.connect() as conn:
        rows = dict(conn.execute(select(ITEMS.c.id, ITEMS.c.text).order_by(ITEMS.c.id)).all())
    assert rows == {"a": "ta", "b": "tb", "c": "tc"}


@pytest.mark.parametrize("n_rows", [10, bulk.COPY_MIN_ROWS + 10])
def test_a_column_insert_counts_the_rows_it_wrote_not_the_ones_it_skipped(engine, n_rows):
    """Ingest trusts the count to skip its look-up of ids stored earlier: by executemany (few rows) and by COPY
    (PostgreSQL, from COPY_MIN_ROWS), a conflict is not counted."""
    ids = [f"i{k:05d}" for k in range(n_rows)]

    def columns(keys):
        rows = _items(keys)
        return {name: [row[name] for row in rows] for name in rows[0]}

    with engine.begin() as conn:
        first = bulk.insert_ignore_columns(conn, ITEMS, columns(ids[: n_rows // 2]))
        second = bulk.insert_ignore_columns(conn, ITEMS, columns(ids))
    assert (first, second) == (n_rows // 2, n_rows - n_rows // 2)


def test_insert_ignore_fills_a_left_out_column_from_its_python_default(engine):
    # items' received_at defaults to utcnow() in Python: SQLAlchemy must compute it, once per row
    rows = [{"id": i, "segment": "default", "text": f"t{i}"} for i in ("a", "b")]
    with engine.begin() as conn:
        bulk.insert_ignore(conn, ITEMS, rows)
        bulk.insert_ignore(conn, ITEMS, rows)
    with engine.connect() as conn:
        stored = conn.execute(select(ITEMS.c.id, ITEMS.c.received_at).order_by(ITEMS.c.id)).all()
    assert [row.id for row in stored] == ["a", "b"] and all(row.received_at is not None for row in stored)


def test_existing_keys_past_the_lookup_chunk(engine):
    present = [f"k{i}" for i in range(0, 2 * bulk.LOOKUP_CHUNK + 500, 2)]
    asked = [f"k{i}" for i in range(2 * bulk.LOOKUP_CHUNK + 500)]  # > LOOKUP_CHUNK keys: several queries
    with engine.begin() as conn:
        bulk.insert_ignore(conn, ITEMS, _items(present))
    with engine.connect() as conn:
        assert bulk.existing_keys(conn, ITEMS.c.id, iter(asked)) == set(present)
        assert bulk.existing_keys(conn, ITEMS.c.id, []) == set()


def test_set_column_sets_one_value_per_row(engine):
    with engine.begin() as conn:
        bulk.insert_ignore(conn, ITEMS, _items(["a", "b", "c"]))
        bulk.set_column(conn, ITEMS, "id", "text", {"a": "scored", "c": "routed", "missing": "queued"})
        bulk.set_column(conn, ITEMS, "id", "text", {})
    with engine.connect() as conn:
        texts = dict(conn.execute(select(ITEMS.c.id, ITEMS.c.text)).all())
    assert texts == {"a": "scored", "b": "tb", "c": "routed"}


def test_set_column_on_a_text_key(engine):
    with engine.begin() as conn:
        bulk.insert_ignore(conn, WATERMARKS, [{"name": "pull", "value": "0", "updated_at": utcnow()}])
        bulk.set_column(conn, WATERMARKS, "name", "value", {"pull": "42"})
    with engine.connect() as conn:
        assert conn.execute(select(WATERMARKS.c.value)).scalar_one() == "42"


def test_insert_ignore_refuses_other_databases(monkeypatch):
    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        monkeypatch.setattr(conn.dialect, "name", "mysql")
        with pytest.raises(ValueError, match="SQLite or PostgreSQL"):
            bulk.insert_ignore(conn, ITEMS, _items(["a"]))
    engine.dispose()


def test_the_cycle_collector_resumes_when_the_last_bulk_step_ends_and_stays_off_if_it_was_off() -> None:
    import gc
    import threading

    assert gc.isenabled()
    inside, release = threading.Event(), threading.Event()

    def other_step() -> None:
        with bulk.collector_paused():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other_step)
    with bulk.collector_paused():
        assert not gc.isenabled()
        thread.start()
        assert inside.wait(10)
    assert not gc.isenabled()  # the other thread's step still runs
    release.set()
    thread.join(10)
    assert gc.isenabled()

    def failing_step() -> None:
        with bulk.collector_paused():
            assert not gc.isenabled()
            raise RuntimeError("step failed")

    with pytest.raises(RuntimeError):
        failing_step()
    assert gc.isenabled()
    gc.disable()  # a host that runs without the collector keeps it off
    try:
        with bulk.collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_runs_are_the_groups_of_consecutive_equal_keys() -> None:
    import random
    from itertools import groupby

    rng = random.Random(7)
    for _ in range(200):
        n = rng.randrange(0, 40)
        segments = sorted(rng.choice(["a", "b", "é", "Z", ""]) for _ in range(n))
        versions = [rng.choice(["m1", "m2", None]) for _ in range(n)]
        expected, start = [], 0
        for key, members in groupby(zip(segments, versions)):
            stop = start + len(list(members))
            expected.append((key, start, stop))
            start = stop
        assert bulk.runs(segments, versions) == expected
        assert bulk.columns_of(list(zip(segments, versions)), 2) == [segments, versions]
    assert bulk.runs() == [] and bulk.runs([]) == [] and bulk.columns_of([], 3) == [[], [], []]


def test_a_column_of_nones_is_stored_as_null_beside_bound_columns(engine):
    """On SQLite a column that is None in every row is written as a NULL in the statement, not bound row by row;
    what is stored is the same as binding them: NULLs where None was given, values where they were."""
    now = utcnow()
    columns = {"id": ["a", "b", "c"], "segment": ["s", "s", "t"], "text": ["ta", None, "tc"],
               "upstream_confidence": [None, None, None], "upstream_prediction": [None, None, None],
               "metadata": [None, None, None], "received_at": [now, now, now]}
    with engine.begin() as conn:
        assert bulk.insert_ignore_columns(conn, ITEMS, columns, encoded_json=("metadata",)) == 3
        assert bulk.insert_ignore_columns(conn, ITEMS, {"id": ["a", "d"], "segment": ["x", "s"], "text": [None, None],
                                                        "received_at": [now, now]}) == 1  # a: kept as it was
    with engine.connect() as conn:
        rows = [tuple(row) for row in conn.execute(select(
            ITEMS.c.id, ITEMS.c.segment, ITEMS.c.text, ITEMS.c.upstream_confidence, ITEMS.c.upstream_prediction,
            ITEMS.c.metadata).order_by(ITEMS.c.id))]
    assert rows == [("a", "s", "ta", None, None, None), ("b", "s", None, None, None, None),
                    ("c", "t", "tc", None, None, None), ("d", "s", None, None, None, None)]


def test_all_none_tells_a_column_with_nothing_in_it() -> None:
    assert bulk.all_none([]) and bulk.all_none([None, None]) and bulk.all_none((None,)) and bulk.all_none(iter([]))
    assert not bulk.all_none([None, "a"]) and not bulk.all_none(["a", None]) and not bulk.all_none(iter([None, 0]))
