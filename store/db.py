"""Engine and sessions: SQLite (WAL, foreign keys on) by default, PostgreSQL when the URL says so."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlmodel import Session

from store.settings import get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

_engines: dict[str, Engine] = {}
_migrated: set[str] = set()
_lock = threading.Lock()


# A bulk step's write transaction touches tens of megabytes of pages (20,000 items, their state rows and indexes):
# SQLite's stock page cache (2 MB a connection) spills them to the log mid-transaction, and its stock checkpoint
# (every 1,000 pages, 4 MB of log) copies the same pages back into the database file again and again. With a 32 MB
# cache and a checkpoint every 10,000 pages, the flows' own statements at 200,000 items (ingest, route's read,
# decisions and move; `bench/bench_write_floor.py`'s store design, four alternating rounds) took 3.55 s against
# 4.75 s. The log is cut back to 64 MB after each checkpoint, so it does not keep the size of the largest burst.
SQLITE_CACHE_KIB = 32 * 1024
SQLITE_CHECKPOINT_PAGES = 10_000
SQLITE_LOG_LIMIT_BYTES = 64 * 1024 * 1024


def sqlite_pragmas(dbapi_connection: Any, _record: Any = None) -> None:
    """The pragmas every connection to a SQLite store runs with (a SQLAlchemy `connect` listener; the floor bench
    calls it on its own connection)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
    cursor.execute(f"PRAGMA journal_size_limit={SQLITE_LOG_LIMIT_BYTES}")
    cursor.close()


# Connections a process uses besides its batch tasks' (one each, one at a time): the flow's own reads and writes,
# and the store lock's holder row.
SPARE_CONNECTIONS = 2
# Beyond the pool's steady size, a few more may open for a burst (the console, a bench) and close after use.
OVERFLOW_CONNECTIONS = 4


def pool_size_for(batch_threads: int) -> int:
    """Connections kept open for a process whose flows run `batch_threads` batch tasks at once: one per task
    (a task holds one connection at a time) and the flow's own, so no task waits for a connection."""
    return batch_threads + SPARE_CONNECTIONS


def make_engine(url: str, *, pool_size: int | None = None) -> Engine:
    """A new engine for `url`, its pool holding `pool_size` connections (default: enough for the settings'
    `batch_threads`); SQLite files get their folder created and the pragmas Sluice relies on."""
    size = pool_size or pool_size_for(get_settings().batch_threads_for(url))
    pool = {"pool_size": size, "max_overflow": OVERFLOW_CONNECTIONS, "pool_timeout": 60}
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        if make_url(url).database in (None, "", ":memory:"):
            pool = {}  # an in-memory database: SQLAlchemy's pool of one connection per thread, not a QueuePool
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool)
        event.listen(engine, "connect", sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


class StoreNotReady(RuntimeError):
    """The store a reader was pointed at does not exist yet, or has an older schema than this code."""


def _sqlite_read_only(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")  # any write fails: a reader cannot change the store by mistake
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def read_only_engine(url: str) -> Engine:
    """An engine that reads `url` and can write nothing, never migrates, and refuses a store that is missing or
    behind this code's schema (`StoreNotReady`, saying which command sets it up). The console uses it."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:" and not Path(path).exists():
            raise StoreNotReady(f"no Sluice store at {path}: run `sluice init` (or `make demo`) first")
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_read_only)
    else:
        engine = create_engine(url, pool_pre_ping=True,
                               connect_args={"options": "-c default_transaction_read_only=on"})
    current, head = schema_revision(engine), head_revision()
    if current != head:
        engine.dispose()
        state = "has no Sluice schema" if current is None else f"is at schema {current}, this code needs {head}"
        raise StoreNotReady(f"the store at {engine.url.render_as_string(hide_password=True)} {state}: "
                            "run `sluice init` to create or migrate it")
    return engine


def _alembic_config(url: str | None = None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def revision_module(filename: str) -> ModuleType:
    """A migration file of `MIGRATIONS_DIR`'s versions loaded as a module (a migration file is not importable by
    name), for a later migration that reuses what an earlier one built (its trigger DDL)."""
    import importlib.util

    path = MIGRATIONS_DIR / "versions" / filename
    spec = importlib.util.spec_from_file_location(f"sluice_migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the migrations whose `REFERENCES` (table, column, referenced table, referenced column, constraint name) PostgreSQL
# checks with statement triggers instead of foreign keys
_TRIGGER_CHECKED_IN = ("0018_statement_checked_references.py", "0019_item_states.py")


def trigger_checked_references() -> frozenset[tuple[str, str, str]]:
    """(table, column, referenced table) of the foreign keys the models declare that a PostgreSQL store checks with
    statement triggers instead (migrations 0018 and 0019): the database holds no such foreign key there."""
    return frozenset((table, column, parent) for name in _TRIGGER_CHECKED_IN
                     for table, column, parent, _, _ in revision_module(name).REFERENCES)


def autogenerate_filter(dialect: str) -> Callable[..., bool]:
    """Alembic's `include_object` for a store of `dialect`: on PostgreSQL it leaves out the foreign keys that
    triggers check instead (`trigger_checked_references`), so `alembic revision --autogenerate` does not propose
    them again; elsewhere it keeps everything."""
    checked = trigger_checked_references() if dialect == "postgresql" else frozenset()

    def include(obj: Any, _name: str | None, type_: str, _reflected: bool, _compare_to: Any) -> bool:
        if type_ != "foreign_key_constraint" or not checked:
            return True
        return not any((element.parent.table.name, element.parent.name,
                        element.target_fullname.rsplit(".", 2)[-2]) in checked for element in obj.elements)

    return include


def head_revision() -> str | None:
    """The newest migration this code knows (None only if it knew none)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def schema_revision(engine: Engine) -> str | None:
    """The migration the database at `engine` is at; None when it has no Sluice schema."""
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(url: str) -> None:
    """Bring the database at `url` to the newest schema (creates it when new)."""
    from alembic import command

    command.upgrade(_alembic_config(url), "head")


def get_engine(url: str | None = None, *, migrate_first: bool = True, pool_size: int | None = None) -> Engine:
    """The process-wide engine for `url` (default: the settings' database), migrated on first use, its pool
    holding at least `pool_size` connections (default: enough for the settings' `batch_threads`). A call asking
    for a larger pool than the engine has gets a new engine (the old one stays usable by those holding it)."""
    url = url or get_settings().resolved_database_url
    with _lock:
        if migrate_first and url not in _migrated:
            migrate(url)
            _migrated.add(url)
        engine = _engines.get(url)
        size = getattr(engine.pool, "size", None) if engine is not None else None
        if engine is None or (pool_size is not None and callable(size) and size() < pool_size):
            engine = _engines[url] = make_engine(url, pool_size=pool_size)
        return engine


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _migrated.clear()


# SQLite takes one writer at a time: the writers of one process (batch tasks in threads) queue here, in order,
# instead of in SQLite's unfair busy handler. Other databases take concurrent writers; the lock is then a no-op.
_sqlite_writer = threading.Lock()


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """`engine.begin()` under the process's one SQLite write lock (no lock for other databases)."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    with _sqlite_writer, engine.begin() as conn:
        yield conn


def refresh_statistics(engine: Engine, *tables: str) -> None:
    """After a bulk write, let PostgreSQL's planner see the new row counts (ANALYZE): on freshly filled tables it
    otherwise plans nested loops over what it takes for empty tables (measured: reading a 20,000-item review
    backlog took 49 s before, well under a second after). SQLite plans from its indexes; nothing to do there."""
    if engine.dialect.name != "postgresql" or not tables:
        return
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("ANALYZE " + ", ".join(engine.dialect.identifier_preparer.quote(t) for t in tables)))


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine or get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
