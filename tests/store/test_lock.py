"""store.lock: one holder at a time, freed by the death of its holder however it dies (SIGKILL of a real process),
visible (who, where, since when) and released by hand only when its holder is gone; on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from store.lock import (
    RECOVERY_BOUND_SECONDS,
    LockHeld,
    StoreLockTimeout,
    hold_store_lock,
    lock_name,
    lock_status,
    release_dead_holder,
)

ROOT = Path(__file__).resolve().parents[2]

# A separate process that takes the lock, says so on stdout, and then sleeps until it is killed.
HOLDER = textwrap.dedent("""
    import sys, time
    from store.lock import hold_store_lock
    with hold_store_lock(sys.argv[1], flow="holder-process", flow_run_id="run-1", timeout=30):
        print("held", flush=True)
        time.sleep(600)
""")


def start_holder(url: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, url], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = process.stdout.readline() if process.stdout else ""
    if line.strip() != "held":
        process.kill()
        pytest.fail(f"the holder process did not take the lock (said {line!r}, exit {process.wait()})")
    return process


def kill(process: subprocess.Popen[str]) -> float:
    """SIGKILL the process, reap it, and return the moment it was killed."""
    killed = time.monotonic()
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    return killed


def test_the_name_hides_the_password():
    a = lock_name("postgresql+psycopg://u:secret@127.0.0.1:5432/a")
    assert a == lock_name("postgresql+psycopg://u:other@127.0.0.1:5432/a")
    assert "secret" not in a and len(a) <= 40


def test_one_sqlite_file_has_one_lock_however_its_path_is_spelt(tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias.db").symlink_to(real / "s.db")
    monkeypatch.chdir(tmp_path)
    urls = [f"sqlite:///{real / 's.db'}", f"sqlite:///{tmp_path / 'alias.db'}", "sqlite:///real/s.db"]
    assert len({lock_name(url) for url in urls}) == 1
    with hold_store_lock(urls[0], flow="first", timeout=5):
        for url in urls[1:]:
            with pytest.raises(StoreLockTimeout):
                with hold_store_lock(url, flow="second", timeout=0.3):
                    pytest.fail("two holders of one file")


def test_a_lock_file_deleted_while_it_is_taken_is_not_held(tmp_path, monkeypatch):
    """The race of a cleanup that unlinks the lock file between its open and its flock: the lock taken on the
    orphaned file would exclude no one, so the attempt counts as failed and the next one locks the new file."""
    import fcntl

    from store.lock import _FileLock

    lock = _FileLock(tmp_path / "s.db.lock")
    real_flock, raced = fcntl.flock, []

    def unlink_first(fd, operation):
        if not raced:
            raced.append(True)
            (tmp_path / "s.db.lock").unlink()
        return real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", unlink_first)
    assert lock.try_acquire() is False and lock.fd is None
    assert lock.try_acquire() is True  # a fresh file, the one everyone else opens
    lock.release()


@pytest.mark.integration
def test_a_postgresql_store_has_one_lock_whatever_url_reaches_it(fresh_postgres_url):
    from sqlalchemy import make_url

    url = make_url(fresh_postgres_url)
    other = url.set(drivername="postgresql+psycopg", host="localhost").render_as_string(hide_password=False)
    with hold_store_lock(fresh_postgres_url, flow="first", timeout=5):
        with pytest.raises(StoreLockTimeout):
            with hold_store_lock(other, flow="second", timeout=0.5):
                pytest.fail("two holders of one database")
        assert lock_status(other).holder.flow == "first"


def test_unsupported_stores_are_refused_by_name():
    with pytest.raises(ValueError, match="in-memory"):
        with hold_store_lock("sqlite:///:memory:", flow="x", timeout=1):
            pass
    with pytest.raises(ValueError, match="mysql"):
        with hold_store_lock("mysql://u@localhost/db", flow="x", timeout=1):
            pass


def test_one_holder_at_a_time_and_the_waiter_is_told_who(database_url):
    told = []
    with hold_store_lock(database_url, flow="first", timeout=5) as first:
        started = time.monotonic()
        with pytest.raises(StoreLockTimeout) as waited:
            with hold_store_lock(database_url, flow="second", timeout=0.6, on_wait=told.append):
                pytest.fail("two holders at once")
        assert time.monotonic() - started >= 0.6
        assert waited.value.holder == first and "flow 'first'" in str(waited.value)
        assert len(told) == 1 and told[0].held and told[0].holder == first
        status = lock_status(database_url)
        assert status.held and status.holder == first and status.holder_alive is True
        assert f"process {os.getpid()}" in status.describe()
    status = lock_status(database_url)
    assert not status.held and status.holder is None  # a clean release leaves no record
    with hold_store_lock(database_url, flow="third", timeout=1):
        pass


def test_threads_of_one_process_exclude_each_other(database_url):
    inside, overlaps = [0], []

    def worker() -> None:
        for _ in range(3):
            with hold_store_lock(database_url, flow="thread", timeout=30):
                inside[0] += 1
                overlaps.append(inside[0])
                time.sleep(0.05)
                inside[0] -= 1

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert overlaps == [1] * 9


def test_a_holder_killed_with_sigkill_frees_the_lock_within_the_bound(database_url):
    holder = start_holder(database_url)
    try:
        status = lock_status(database_url)
        assert status.held and status.holder is not None
        assert (status.holder.pid, status.holder.flow, status.holder_alive) == (holder.pid, "holder-process", True)
        with pytest.raises(LockHeld, match="live process"):
            release_dead_holder(database_url)
        assert lock_status(database_url).held  # refused: still held
    finally:
        killed = kill(holder)
    with hold_store_lock(database_url, flow="next", timeout=RECOVERY_BOUND_SECONDS):
        recovered = time.monotonic() - killed
    print(f"lock free {recovered:.3f} s after SIGKILL of its holder")
    assert recovered < RECOVERY_BOUND_SECONDS


def test_status_and_release_after_a_crash(database_url):
    holder = start_holder(database_url)
    kill(holder)
    status = lock_status(database_url)
    assert not status.held and status.holder is not None and status.holder_alive is False
    assert "ended without releasing it" in status.describe() and f"process {holder.pid}" in status.describe()
    message = release_dead_holder(database_url)
    assert "cleared the record" in message
    assert lock_status(database_url).holder is None
    assert release_dead_holder(database_url) == "the lock is free"


@pytest.mark.integration
def test_a_postgresql_session_outliving_its_process_is_ended_only_when_that_process_is_gone(fresh_postgres_url):
    """The one way a lock outlives its holder: the session stays while its client is gone (a vanished host, an
    inherited connection). Stand-in: the lock taken on a session the test keeps open, recorded for a process that
    is then killed."""
    import psycopg
    import psutil
    from sqlalchemy import make_url, text

    from store.lock import ADVISORY_KEY, ADVISORY_NAMESPACE, HOLDER_ROW, _pg_lock_engine

    holder = start_holder(fresh_postgres_url)
    recorded = lock_status(fresh_postgres_url).holder
    assert recorded is not None
    kill(holder)
    url = make_url(fresh_postgres_url)
    with psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database,
                         autocommit=True) as orphan:
        recorded_name = HOLDER_ROW
        assert orphan.execute("SELECT pg_try_advisory_lock(%s, %s)", (ADVISORY_NAMESPACE, ADVISORY_KEY)).fetchone()[0]
        backend = orphan.execute("SELECT pg_backend_pid()").fetchone()[0]
        engine = _pg_lock_engine(fresh_postgres_url)
        with engine.begin() as conn:  # the record now names this orphaned session and the dead process
            conn.execute(text("UPDATE store_lock_holders SET backend_pid = :b WHERE name = :n"),
                         {"b": backend, "n": recorded_name})
        engine.dispose()
        status = lock_status(fresh_postgres_url)
        assert status.held and status.backend_pid == backend and status.holder_alive is False
        # a record naming a live process of this host is refused
        with _pg_lock_engine(fresh_postgres_url).begin() as conn:
            conn.execute(text("UPDATE store_lock_holders SET pid = :p, process_started = :s WHERE name = :n"),
                         {"p": os.getpid(), "s": psutil.Process().create_time(), "n": recorded_name})
        with pytest.raises(LockHeld, match="live process"):
            release_dead_holder(fresh_postgres_url)
        with _pg_lock_engine(fresh_postgres_url).begin() as conn:
            conn.execute(text("UPDATE store_lock_holders SET pid = :p, process_started = :s WHERE name = :n"),
                         {"p": recorded.pid, "s": recorded.process_started, "n": recorded_name})
        assert "ended PostgreSQL session" in release_dead_holder(fresh_postgres_url)
    status = lock_status(fresh_postgres_url)
    assert not status.held and status.holder is None
