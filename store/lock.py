"""The store's lock: one flow at a time on a store, released by the operating system or the database when its
holder dies, however it dies.

Mechanism, by database
----------------------
- **SQLite**: an exclusive `flock` on `<database file>.lock`, taken on a file descriptor of the holder's own. The
  kernel drops it when that descriptor closes, which the death of the process does (exit, exception, SIGTERM,
  SIGKILL, an out-of-memory kill): the next flow gets the lock at its next try, a fraction of a second later. The
  descriptor is opened close-on-exec, so no program the holder starts inherits the lock. SQLite stores are local
  files; the lock file lies beside the database, on the same machine.
- **PostgreSQL**: a session-level advisory lock (`pg_try_advisory_lock`) on a connection of its own (autocommit,
  no idle timeouts). The server drops it when that session ends: at once when the holder's process dies (its
  socket closes), and within about 25 s when the holder's host or network vanishes, because the session sets
  TCP keepalives (10 s idle, then 3 probes 5 s apart) so the server notices a peer that is gone.

Neither lives in Prefect: the lock is the same whether flows run against Prefect's temporary server or a real
one, and no crash can leave a slot taken in Prefect's database. The documented bound for the next flow to start
after its holder died is 60 s; measured, it is well under a second on one machine (`tests/store/test_lock.py`).

Who holds it
------------
Once it has the lock, the holder writes a `store_lock_holders` row (flow, flow run, process, host, process start,
PostgreSQL session, since when) and deletes it on release. After a crash the row stays, stale: `lock_status` asks
the lock itself whether it is held and tells a live holder from a gone one. `release_dead_holder` is for the one
case where a lock can outlive its holder's process, a PostgreSQL session whose client vanished: it ends that
session when, and only when, the recorded holder ran on this host and its process is gone. A live holder, or one
on another host that cannot be checked from here, is refused (`LockHeld`).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil
from sqlalchemy import Connection, Engine, create_engine, delete, make_url, select, text
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool

from store.models import StoreLockHolder, as_utc, utcnow
from store.settings import masked_url

__all__ = [
    "LOCK_PREFIX",
    "RECOVERY_BOUND_SECONDS",
    "Holder",
    "LockHeld",
    "LockStatus",
    "StoreLockTimeout",
    "hold_store_lock",
    "lock_name",
    "lock_status",
    "release_dead_holder",
]

LOCK_PREFIX = "sluice-store-"
RECOVERY_BOUND_SECONDS = 60.0  # documented: a dead holder's lock is free again within this (PostgreSQL: ~25 s)
POLL_SECONDS = 0.2
# PostgreSQL: advisory locks of Sluice use the two-key form, this first key and a hash of the store's name second.
ADVISORY_NAMESPACE = 0x51CE
_PG_SESSION_OPTIONS = ("-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3 "
                       "-c idle_in_transaction_session_timeout=0 -c statement_timeout=0")


class StoreLockTimeout(TimeoutError):
    """Another holder kept the lock longer than the wait allowed; `holder` names it when it is known."""

    def __init__(self, message: str, holder: Holder | None) -> None:
        super().__init__(message)
        self.holder = holder


class LockHeld(RuntimeError):
    """A release was refused: the holder is alive, or cannot be shown to be gone from here."""


@dataclass(frozen=True)
class Holder:
    """The recorded holder of a store's lock."""

    flow: str
    flow_run_id: str | None
    pid: int
    host: str
    process_started: float
    backend_pid: int | None
    acquired_at: datetime
    namespace: str | None = None

    @property
    def on_this_host(self) -> bool:
        """Ran on this machine, in this boot and process-id namespace (so its pid can be checked here)."""
        return self.host == socket.gethostname() and self.namespace == _process_namespace()

    def alive(self) -> bool | None:
        """Whether the holder's process still runs: None when it ran elsewhere (another host, boot or container:
        it cannot be told here)."""
        if not self.on_this_host:
            return None
        return process_alive(self.pid, self.process_started)

    def describe(self) -> str:
        run = f" (run {self.flow_run_id})" if self.flow_run_id else ""
        session = f", PostgreSQL session {self.backend_pid}" if self.backend_pid else ""
        return (f"flow {self.flow!r}{run}, process {self.pid} on {self.host}{session}, since "
                f"{self.acquired_at.isoformat(timespec='seconds')}")


@dataclass(frozen=True)
class LockStatus:
    """What the lock itself says (held or not) beside what its holder row says."""

    name: str
    mechanism: str
    held: bool
    holder: Holder | None
    backend_pid: int | None  # PostgreSQL: the session that holds the lock now

    @property
    def holder_alive(self) -> bool | None:
        return None if self.holder is None else self.holder.alive()

    def describe(self) -> str:
        if not self.held:
            if self.holder is None:
                return f"free ({self.mechanism})"
            return f"free ({self.mechanism}); its last holder ended without releasing it: {self.holder.describe()}"
        if self.holder is None or (self.backend_pid is not None and self.holder.backend_pid != self.backend_pid):
            who = f"PostgreSQL session {self.backend_pid}" if self.backend_pid else "a process"
            return f"held by {who} that has not recorded itself yet ({self.mechanism})"
        alive = {True: "alive", False: "its process is gone", None: "on another host"}[self.holder.alive()]
        return f"held by {self.holder.describe()} [{alive}] ({self.mechanism})"


def process_alive(pid: int, started: float) -> bool:
    """Whether process `pid` runs and is the one that started at `started` (a reused pid is not it)."""
    try:
        return abs(psutil.Process(pid).create_time() - started) < 1.0
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True


def lock_name(database_url: str) -> str:
    """The lock's name for a store, for messages and for re-entering it within a process: a fingerprint of the
    SQLite file's real path, or of a PostgreSQL URL without its password (the name gives nothing away). The lock
    itself does not depend on how the URL is spelt: one file per real SQLite path, one advisory key per database."""
    if _dialect(database_url) == "sqlite":
        return LOCK_PREFIX + hashlib.sha256(str(_sqlite_lock_path(database_url)).encode()).hexdigest()[:16]
    return LOCK_PREFIX + hashlib.sha256(masked_url(database_url).encode()).hexdigest()[:16]


# PostgreSQL advisory locks belong to one database already: one key serves every Sluice store, whatever URL (host
# name or address, driver, port spelt or not, user) reaches it.
ADVISORY_KEY = int.from_bytes(hashlib.sha256(b"sluice store lock").digest()[:4], "big") & 0x7FFFFFFF
HOLDER_ROW = "store"  # the one holder record of a store (its table lives in the store itself)


def _sqlite_lock_path(database_url: str) -> Path:
    database = make_url(database_url).database
    if not database or database == ":memory:":
        raise ValueError("an in-memory SQLite store has no file to lock; flows need a store on disk")
    real = Path(database).expanduser().resolve()  # a symlink or a relative path lock the same file
    return real.with_name(real.name + ".lock")


def _process_namespace() -> str:
    """This boot of this machine and this process-id namespace: a pid means the same process only within both
    (a cloned VM or a container may share the host name)."""
    parts = []
    for path in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(Path(path).read_text().strip() if "boot_id" in path else os.readlink(path))
        except OSError:
            parts.append("?")
    return "/".join(parts)


def _dialect(database_url: str) -> str:
    dialect = make_url(database_url).get_backend_name()
    if dialect not in ("sqlite", "postgresql"):
        raise ValueError(f"the store lock supports SQLite and PostgreSQL stores, not {dialect!r}")
    return dialect


def _pg_lock_engine(database_url: str) -> Engine:
    """Connections of their own for the lock: never pooled (closing one ends its session and any lock in it)."""
    return create_engine(database_url, poolclass=NullPool, isolation_level="AUTOCOMMIT",
                         connect_args={"options": _PG_SESSION_OPTIONS, "application_name": "sluice store lock",
                                       "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                                       "keepalives_count": 3})


class _FileLock:
    """An exclusive flock on a file of its own (SQLite)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.backend_pid: int | None = None

    @property
    def mechanism(self) -> str:
        return f"flock on {self.path}"

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            try:  # a file deleted (or replaced) since it was opened locks nothing anyone else can see
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            held = os.fstat(fd)
            if current is None or (current.st_ino, current.st_dev) != (held.st_ino, held.st_dev):
                os.close(fd)
                return False
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None

    def probe(self) -> tuple[bool, int | None]:
        """(held by someone, holding session): a shared try that gives back at once."""
        if not self.path.exists():
            return False, None
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True, None
        finally:
            os.close(fd)
        return False, None


class _AdvisoryLock:
    """A session-level PostgreSQL advisory lock on a connection of its own."""

    def __init__(self, database_url: str, name: str) -> None:
        self.engine = _pg_lock_engine(database_url)
        self.key = ADVISORY_KEY
        self.conn: Connection | None = None
        self.backend_pid: int | None = None

    @property
    def mechanism(self) -> str:
        return f"PostgreSQL advisory lock ({ADVISORY_NAMESPACE}, {self.key})"

    def try_acquire(self) -> bool:
        if self.conn is None:
            self.conn = self.engine.connect()
            self.backend_pid = self.conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            try:  # an idle lock session must outlive a server's idle_session_timeout (PostgreSQL 14 and later)
                self.conn.execute(text("SET idle_session_timeout = 0"))
            except Exception:  # noqa: BLE001  (older servers have no such setting, and no such timeout)
                pass
        got = self.conn.execute(text("SELECT pg_try_advisory_lock(:ns, :key)"),
                                {"ns": ADVISORY_NAMESPACE, "key": self.key}).scalar_one()
        return bool(got)

    def release(self) -> None:
        if self.conn is not None:
            try:
                self.conn.execute(text("SELECT pg_advisory_unlock(:ns, :key)"),
                                  {"ns": ADVISORY_NAMESPACE, "key": self.key})
            except Exception:  # noqa: BLE001  (a broken session holds nothing: closing it is the release)
                pass
            finally:
                self.conn.close()  # the session ends: PostgreSQL drops whatever it still held
                self.conn = None
        self.engine.dispose()

    def probe(self) -> tuple[bool, int | None]:
        with self.engine.connect() as conn:
            pid = conn.execute(text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = :ns "
                "AND objid = :key AND objsubid = 2 "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
                {"ns": ADVISORY_NAMESPACE, "key": self.key}).scalar()
        self.engine.dispose()
        return pid is not None, pid


def _medium(database_url: str, name: str) -> _FileLock | _AdvisoryLock:
    if _dialect(database_url) == "sqlite":
        return _FileLock(_sqlite_lock_path(database_url))
    return _AdvisoryLock(database_url, name)


def _read_holder(engine: Engine, name: str) -> Holder | None:
    """The recorded holder; None when there is none, or the store predates the record (it is migrated by the next
    flow, under the lock)."""
    try:
        with engine.connect() as conn:
            row = conn.execute(select(StoreLockHolder.__table__)
                               .where(StoreLockHolder.__table__.c.name == name)).first()
    except (OperationalError, ProgrammingError):
        return None
    if row is None:
        return None
    return Holder(flow=row.flow, flow_run_id=row.flow_run_id, pid=row.pid, host=row.host,
                  process_started=row.process_started, backend_pid=row.backend_pid, acquired_at=as_utc(row.acquired_at),
                  namespace=row.namespace)


def _write_holder(engine: Engine, name: str, holder: Holder) -> None:
    from store.db import write_transaction

    table = StoreLockHolder.__table__
    with write_transaction(engine) as conn:
        conn.execute(delete(table).where(table.c.name == name))
        conn.execute(table.insert().values(name=name, flow=holder.flow[:256], flow_run_id=holder.flow_run_id,
                                           pid=holder.pid, host=holder.host[:256],
                                           process_started=holder.process_started,
                                           backend_pid=holder.backend_pid, acquired_at=holder.acquired_at,
                                           namespace=holder.namespace))


def _clear_holder(engine: Engine, name: str, *, holder: Holder | None = None) -> None:
    """Delete the holder record (only `holder`'s, when given: a newer holder's record stays)."""
    from store.db import write_transaction

    table = StoreLockHolder.__table__
    condition = table.c.name == name
    if holder is not None:
        condition = condition & (table.c.pid == holder.pid) & (table.c.host == holder.host) \
            & (table.c.process_started == holder.process_started)
    with write_transaction(engine) as conn:
        conn.execute(delete(table).where(condition))


@contextmanager
def hold_store_lock(database_url: str, *, flow: str, flow_run_id: str | None = None, timeout: float,
                    on_wait: Callable[[LockStatus], None] | None = None) -> Iterator[Holder]:
    """Hold the store's lock while the body runs. Waits up to `timeout` seconds, trying every 0.2 s (`on_wait`
    is told once who holds it), then raises `StoreLockTimeout`. The store is migrated once the lock is held, so
    two processes never migrate it at once."""
    from store.db import get_engine

    name = lock_name(database_url)
    medium = _medium(database_url, name)
    deadline = time.monotonic() + timeout
    told = False
    try:
        while not medium.try_acquire():
            if not told and on_wait is not None:
                told = True
                on_wait(lock_status(database_url))
            if time.monotonic() >= deadline:
                status = lock_status(database_url)
                raise StoreLockTimeout(f"another Sluice flow has held the store lock {name} for more than "
                                       f"{timeout:g} s: {status.describe()}", status.holder)
            time.sleep(POLL_SECONDS)
        engine = get_engine(database_url)
        me = psutil.Process()
        holder = Holder(flow=flow, flow_run_id=flow_run_id, pid=me.pid, host=socket.gethostname(),
                        process_started=me.create_time(), backend_pid=medium.backend_pid,
                        acquired_at=utcnow(), namespace=_process_namespace())
        _write_holder(engine, HOLDER_ROW, holder)
        try:
            yield holder
        finally:
            _clear_holder(engine, HOLDER_ROW, holder=holder)
    finally:
        medium.release()


def lock_status(database_url: str) -> LockStatus:
    """Whether the store's lock is held, by whom, and whether that holder still lives. Reads only."""
    from store.db import get_engine

    name = lock_name(database_url)
    medium = _medium(database_url, name)
    held, backend_pid = medium.probe()
    if isinstance(medium, _FileLock) and not Path(make_url(database_url).database or "").exists():
        return LockStatus(name=name, mechanism=medium.mechanism, held=held, holder=None, backend_pid=None)
    holder = _read_holder(get_engine(database_url, migrate_first=False), HOLDER_ROW)
    return LockStatus(name=name, mechanism=medium.mechanism, held=held, holder=holder, backend_pid=backend_pid)


def release_dead_holder(database_url: str, *, wait: float = 10.0) -> str:
    """Free the store's lock from a holder that is gone, and only then; says what it did. A free lock has its stale
    holder row cleared. A PostgreSQL session still holding the lock for a process of this host that is gone is
    ended (`pg_terminate_backend`). Anything else raises `LockHeld` with the reason."""
    from store.db import get_engine

    status = lock_status(database_url)
    engine = get_engine(database_url, migrate_first=False)
    if not status.held:
        medium = _medium(database_url, status.name)
        if status.holder is None:
            return "the lock is free"
        if medium.try_acquire():  # hold it while clearing, so a flow starting now cannot lose its fresh row
            try:
                _clear_holder(engine, HOLDER_ROW, holder=status.holder)
            finally:
                medium.release()
            return f"the lock is free; cleared the record of its last holder, {status.holder.describe()}"
        medium.release()  # closes what the attempt opened
        raise LockHeld("a flow took the lock just now; nothing to release")
    holder = status.holder
    if status.backend_pid is None:  # a flock: only a running process can hold one
        raise LockHeld(f"the lock is held by a live process (a flock is held only by a running process and freed "
                       f"the moment it ends): {status.describe()}")
    if holder is None or holder.backend_pid != status.backend_pid:
        raise LockHeld(f"the lock is {status.describe()}: no recorded holder to check; if you know its client is "
                       f"gone, end that session yourself (SELECT pg_terminate_backend({status.backend_pid}))")
    alive = holder.alive()
    if alive is None:
        raise LockHeld(f"the lock is held by {holder.describe()}: that host's process cannot be checked from "
                       f"{socket.gethostname()}; run this on {holder.host}, or wait: PostgreSQL ends the session "
                       f"within {RECOVERY_BOUND_SECONDS:g} s of that host's death")
    if alive:
        raise LockHeld(f"the lock is held by a live process: {holder.describe()}")
    with engine.connect() as conn:  # one statement: only that session, and only while it still holds the lock
        ended = conn.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = :ns AND objid = :key AND objsubid = 2 AND pid = :pid "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
            {"ns": ADVISORY_NAMESPACE, "key": ADVISORY_KEY, "pid": status.backend_pid}).scalar()
        conn.commit()
    if not ended:
        raise LockHeld(f"PostgreSQL session {status.backend_pid} no longer holds the lock; look again")
    deadline = time.monotonic() + wait
    while _medium(database_url, status.name).probe()[0]:
        if time.monotonic() >= deadline:
            raise LockHeld(f"ended PostgreSQL session {status.backend_pid}, but the lock is still held")
        time.sleep(POLL_SECONDS)
    _clear_holder(engine, HOLDER_ROW, holder=holder)
    return f"ended PostgreSQL session {status.backend_pid} of a process that is gone: {holder.describe()}"
