"""Bulk writes that stay idempotent on both SQLite and PostgreSQL: insert-or-ignore, chunked look-ups, the
content fingerprints idempotency keys are made of, bulk reads in the driver's own values, and the pause of
Python's cycle collector around bulk steps."""

from __future__ import annotations

import gc
import hashlib
import json
import threading
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import compress, pairwise
from operator import itemgetter, ne
from typing import Any, cast

from sqlalchemy import ARRAY, JSON, Connection, Float, Table, any_, bindparam, func, literal_column, null, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.schema import ScalarElementColumnDefault

# SQLite allows 32,766 bound parameters per statement; PostgreSQL 65,535. Stay well under both.
LOOKUP_CHUNK = 5_000
_UNSET = object()
_FLOAT_VALUES = frozenset({float, type(None)})


def fingerprint(values: Any) -> str:
    """32 hex digits of the sha256 of `values` as sorted-key JSON: a content key (a label set, a training set)
    that a re-run with the same content reproduces."""
    return hashlib.sha256(json.dumps(values, default=str, sort_keys=True).encode()).hexdigest()[:32]


class _CollectorPause:
    """How many bulk steps of this process run with the cycle collector paused, and whether the pause turned it
    off (a collector its host turned off stays off)."""

    lock = threading.Lock()
    steps = 0
    paused = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run a bulk step (parsing, reading, deciding or writing many rows) with Python's cycle collector paused,
    resumed when the last such step of the process ends (route and ingest run steps on threads side by side).

    The rows are tuples, strings, numbers and flat lists, which reference counting frees as they go, without the
    collector. But the collector runs after every 700 new container objects, and each of its older-generation
    passes walks every live row: at 200,000 items on SQLite, ingest took 0.77-0.91× and route 0.83-0.88× the
    time with the pause (`bench/bench_collector_pause.py`, two runs of 4 alternating repeats). Cycles made
    meanwhile (none by the rows) are collected at the collector's next pass after the step."""
    with _CollectorPause.lock:
        if _CollectorPause.steps == 0 and gc.isenabled():
            gc.disable()
            _CollectorPause.paused = True
        _CollectorPause.steps += 1
    try:
        yield
    finally:
        with _CollectorPause.lock:
            _CollectorPause.steps -= 1
            if _CollectorPause.steps == 0 and _CollectorPause.paused:
                _CollectorPause.paused = False
                gc.enable()


def chunked(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _insert_statement(conn: Connection, table: Table):
    dialect = conn.dialect.name
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    raise ValueError(f"unsupported database dialect {dialect!r}: Sluice runs on SQLite or PostgreSQL")


def insert_ignore(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> int | None:
    """Insert `rows`, skipping any that collide with a unique key already present.

    Returns how many rows were inserted (`insert_ignore_columns`), or None when SQLAlchemy inserted them.
    """
    if not rows:
        return 0
    statement = _insert_statement(conn, table)
    names = list(rows[0])
    try:
        columns = {name: [row[name] for row in rows] for name in names}
    except KeyError:  # rows with different keys: let SQLAlchemy sort them out
        columns = None
    if columns is not None and all(len(row) == len(names) for row in rows):
        return insert_ignore_columns(conn, table, columns)
    conn.execute(statement, list(rows))
    return None


def insert_ignore_columns(
    conn: Connection, table: Table, columns: Mapping[str, Sequence[Any]], *, encoded_json: Collection[str] = ()
) -> int | None:
    """`insert_ignore` for rows given column by column (every sequence one value per row).

    Columns named in `encoded_json` hold JSON text already encoded (None for SQL NULL). This is one DBAPI
    executemany (no per-row SQLAlchemy work: each column's values go through its type's bind processor once per
    distinct run), or on PostgreSQL from 1,000 rows a COPY (`_copy_insert`); it returns how many rows were
    inserted (the rows a conflict skipped are not counted), or None when SQLAlchemy had to insert them. On
    PostgreSQL psycopg runs the rows in its pipeline, each JSON column cast to JSON from what psycopg sends: the
    pre-encoded text, or the dialect's JSON adapter for values the bind processor encoded.
    """
    names = list(columns)
    lengths = {len(columns[name]) for name in names}
    if len(lengths) > 1:
        raise ValueError(f"columns of different lengths: { {n: len(columns[n]) for n in names} }")
    if not names or not lengths or lengths == {0}:
        return 0
    _insert_statement(conn, table)  # refuses unsupported dialects
    defaults = _scalar_defaults(table, names)
    if defaults is None:  # a column left out has a Python-side callable default: SQLAlchemy must compute it
        # (executed here, not through insert_ignore, which would hand the same rows straight back to this function)
        conn.execute(_insert_statement(conn, table), _rows_from_columns(columns, encoded_json))
        return None
    values = [_bound(conn, table, name, columns[name], name in encoded_json) for name in names]
    n_rows = lengths.pop()
    for name, default in defaults.items():
        names.append(name)
        values.append([_bound(conn, table, name, [default], False)[0]] * n_rows)
    quoted = ", ".join(conn.dialect.identifier_preparer.quote(name) for name in names)
    target = conn.dialect.identifier_preparer.format_table(table)
    if conn.dialect.name == "sqlite":
        nulls = _null_columns(values)
        marks = ", ".join("NULL" if i in nulls else "?" for i in range(len(names)))
        values = [column for i, column in enumerate(values) if i not in nulls]
    else:  # psycopg: JSON columns cast from the text or adapter psycopg sends; every other value is the driver's own
        marks = ", ".join("CAST(%s AS JSON)" if isinstance(table.c[name].type, JSON) else "%s" for name in names)
    sql = f"INSERT INTO {target} ({quoted}) VALUES ({marks}) ON CONFLICT DO NOTHING"
    cursor = conn.connection.cursor()
    try:
        if conn.dialect.name == "sqlite":
            cursor.executemany(sql, zip(*values))  # type: ignore[arg-type]  # sqlite3 takes any iterable of rows
            return cursor.rowcount
        if n_rows >= COPY_MIN_ROWS:
            return _copy_insert(cursor, target, quoted, values)
        cursor.executemany(sql, list(zip(*values)))
        return cursor.rowcount  # psycopg sums it over the rows
    finally:
        cursor.close()


def _null_columns(values: Sequence[Sequence[Any]]) -> set[int]:
    """The positions of the columns that are None in every row, when some column is not: SQLite's driver tries to
    adapt each None it binds (None is not among the types it binds as they are: a look-up of an adapter and of
    ``__conform__`` per value), so such a column is written as a ``NULL`` in the statement instead. Two such
    columns of 200,000 decisions cost 0.2 s of a 0.65 s insert (raw ``sqlite3``, medians of 7)."""
    nulls = {i for i, column in enumerate(values) if all_none(column)}
    return nulls if len(nulls) < len(values) else set()


def all_none(values: Sequence[Any]) -> bool:
    """True when every one of `values` is None (an empty sequence included): a column of a read or a write with
    nothing in it. Most columns are told by their first value, before any count (``list.count`` compares every
    string with None)."""
    if isinstance(values, (list, tuple)):
        return not values or (values[0] is None and values.count(None) == len(values))
    return all(value is None for value in values)


COPY_MIN_ROWS = 1_000  # PostgreSQL: from this many rows, COPY into a staging table beats an executemany
_STAGING = "sluice_copy_staging"


def _copy_insert(cursor: Any, target: str, quoted: str, values: list[Sequence[Any]]) -> int:
    """PostgreSQL's bulk path: COPY the rows into a temporary table shaped like the target's columns (no
    constraints, no defaults), then one INSERT ... SELECT ... ON CONFLICT DO NOTHING in the order they were
    copied (ingest writes ids in order, so that two ingests wait on each other's rows in one order), then drop it.
    It lives inside the caller's transaction: a failure rolls it back with everything else. Measured at 200,000
    items against the executemany (``bench/results/ingest-route-200k.md``): ingest 3.80 s -> 3.48 s, route 7.07 s
    -> 6.17 s; most of what is left is the server's own work per row (indexes, foreign keys). Returns how many rows
    the insert wrote."""
    cursor.execute(f"CREATE TEMPORARY TABLE {_STAGING} ON COMMIT DROP AS SELECT {quoted} FROM {target} WITH NO DATA")
    with cursor.copy(f"COPY {_STAGING} ({quoted}) FROM STDIN") as copy:
        for row in zip(*values):
            copy.write_row(row)
    cursor.execute(f"INSERT INTO {target} ({quoted}) SELECT {quoted} FROM {_STAGING} ORDER BY ctid "
                   "ON CONFLICT DO NOTHING")
    inserted = cursor.rowcount
    cursor.execute(f"DROP TABLE {_STAGING}")
    return inserted


def _rows_from_columns(columns: Mapping[str, Sequence[Any]], encoded_json: Collection[str]) -> list[dict]:
    decoded = {
        name: [null() if v is None else json.loads(v) for v in values] if name in encoded_json else values
        for name, values in columns.items()
    }
    return [dict(zip(decoded, row)) for row in zip(*decoded.values())]


def _scalar_defaults(table: Table, given: Sequence[str]) -> dict[str, Any] | None:
    """Python-side defaults of the columns left out, when every one of them is a plain value; else None."""
    defaults: dict[str, Any] = {}
    for column in table.columns:
        if column.name in given or column.default is None:
            continue
        if not column.default.is_scalar:
            return None
        defaults[column.name] = cast(ScalarElementColumnDefault, column.default).arg
    return defaults


def _bound(conn: Connection, table: Table, name: str, values: Sequence[Any], encoded: bool) -> Sequence[Any]:
    """`values` in the DBAPI's form through the column type's bind processor; a run of the same object (one
    timestamp for a batch, SQL NULL for an absent JSON field) is processed once."""
    if encoded:
        return values
    kind = table.c[name].type
    process: Callable[[Any], Any] | None = kind._cached_bind_processor(conn.dialect)
    if process is None:
        return values
    if isinstance(kind, Float) and not kind.asdecimal and set(map(type, values)) <= _FLOAT_VALUES:
        return values  # what the processor returns for floats and None: the values themselves
    out: list[Any] = []
    append = out.append
    last, last_out = _UNSET, None
    for value in values:
        if value is not last:
            last, last_out = value, process(value)
        append(last_out)
    return out


def driver_rows(conn: Connection, statement: Any, parameters: Mapping[str, Any] | None = None) -> list[tuple]:
    """Run `statement` through SQLAlchemy (its dialect and parameter style) and fetch the rows through the driver's
    cursor, as plain tuples of the driver's values: no SQLAlchemy row or result processing per row, which costs
    about twice the fetch itself over 100,000 rows. What the types would have converted is left to the caller:
    JSON arrives as text on SQLite and decoded on PostgreSQL (`json_reader` reads either); enumerations arrive as
    their stored strings."""
    result = conn.execute(statement, dict(parameters or {}))
    cursor = result.cursor
    assert cursor is not None  # a SELECT keeps its cursor until fetched
    try:
        return list(cursor.fetchall())
    finally:
        result.close()


def columns_of(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """`rows` (each `width` values long) as `width` columns, a list each: one pass in C per column, where
    transposing with ``zip(*rows)`` cost about twice as much (0.08 s against 0.18-0.21 s for 200,000 rows of ten)."""
    return [list(map(itemgetter(i), rows)) for i in range(width)]


def runs(*keys: Sequence[Any]) -> list[tuple[tuple[Any, ...], int, int]]:
    """The runs of consecutive positions where every one of the equally long `keys` columns holds the same value:
    ``(key values, start, stop)`` in order. Rows read in key order (``ORDER BY``) come out as one run per key,
    whatever order the database's collation gives them. The comparisons run in C, a column at a time."""
    n = len(keys[0]) if keys else 0
    if not n:
        return []
    starts = sorted(set().union(*(compress(range(1, n), map(ne, column[1:], column[:-1])) for column in keys)))
    bounds = [0, *starts, n]
    return [(tuple(column[start] for column in keys), start, stop) for start, stop in pairwise(bounds)]


def json_reader(conn: Connection) -> Callable[[Any], Any]:
    """What turns a JSON column's value, as `driver_rows` fetched it, into its Python value: SQLite's driver
    hands over the stored text, psycopg decodes JSON itself."""
    if conn.dialect.name == "sqlite":
        return lambda value: None if value is None else json.loads(value)
    return lambda value: value


ARRAY_CHUNK = 50_000  # keys per array parameter (PostgreSQL's array, SQLite's JSON array)


def keys_among(conn: Connection, column: Any, name: str = "ids") -> tuple[Any, int]:
    """A filter "`column` is one of the keys bound as `name`", and how many keys to bind per statement: one
    parameter of 50,000 keys, an array on PostgreSQL, a JSON array opened by ``json_each`` on SQLite; an expanding
    list of 5,000 elsewhere. On SQLite the JSON array spares SQLAlchemy writing out and binding a statement of
    5,000 placeholders each time: `move_items` alone moved 200,000 items in 0.77-1.05 s against 0.89-1.20 s (three
    alternating runs each; raw ``sqlite3`` runs both forms alike, 0.79 s against 0.81 s)."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(column.type))), ARRAY_CHUNK
    if conn.dialect.name == "sqlite":
        opened = func.json_each(bindparam(name, type_=JSON))
        return column.in_(select(literal_column("value")).select_from(opened)), ARRAY_CHUNK
    return column.in_(bindparam(name, expanding=True)), LOOKUP_CHUNK


def existing_keys(conn: Connection, column: Any, keys: Iterable[Any], *conditions: Any) -> set[Any]:
    """Which of `keys` are already present in `column` (in rows that also meet `conditions`), bound as
    `keys_among` binds them."""
    chosen, chunk = keys_among(conn, column)
    query = select(column).where(chosen, *conditions)
    found: set[Any] = set()
    for part in chunked(list(keys), chunk):
        found.update(conn.execute(query, {"ids": list(part)}).scalars())
    return found


def set_column(conn: Connection, table: Table, key: str, column: str, values: dict[Any, Any]) -> None:
    """Set `column` to a per-row value for the rows whose `key` is in `values`.

    When few distinct values are set (states, flags), one `UPDATE ... WHERE key IN (...)` per value and chunk;
    otherwise one executemany of per-row UPDATEs.
    """
    if not values:
        return
    by_value = _group_by_value(values)
    if by_value is not None and len(by_value) * 50 <= len(values):
        statement = (
            update(table)
            .where(table.c[key].in_(bindparam("_keys", expanding=True)))  # bound at execution, not compiled
            .values({column: bindparam("_value")})
            .execution_options(synchronize_session=False)
        )
        for value, keys in by_value.items():
            for part in chunked(keys, LOOKUP_CHUNK):
                conn.execute(statement, {"_keys": list(part), "_value": value})
        return
    statement = (
        update(table)
        .where(table.c[key] == bindparam("_key"))
        .values({column: bindparam("_value")})
        .execution_options(synchronize_session=False)
    )
    conn.execute(statement, [{"_key": k, "_value": v} for k, v in values.items()])


def _group_by_value(values: dict[Any, Any]) -> dict[Any, list[Any]] | None:
    groups: defaultdict[Any, list[Any]] = defaultdict(list)
    try:
        for k, v in values.items():
            groups[v].append(k)
    except TypeError:  # unhashable values
        return None
    return groups
