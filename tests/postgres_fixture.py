"""pytest plugin: a real, throw-away PostgreSQL cluster for the test session, and store fixtures on both backends.

`postgres_url` starts its own cluster (initdb + pg_ctl from the Debian server package) in a temporary folder on a
free 127.0.0.1 port, creates a database and yields `postgresql+psycopg://postgres@127.0.0.1:<port>/<db>`; teardown
stops the cluster (`pg_ctl stop -m fast`, then the postmaster's PID) and deletes the folder. PostgreSQL refuses to
run as root, so as root every server command runs as the `postgres` user through `su postgres -c`. When the server
binaries are missing the fixture FAILS (run `make postgres`, i.e. `scripts/ensure-postgres.sh`): a real-database
test must never vanish silently.

`database_url` is parametrised over `sqlite` (a file in `tmp_path`) and `postgresql` (a fresh, empty database on the
session cluster, dropped afterwards; marked `integration`), and `engine` is `store.db.get_engine(database_url)`,
which migrates. Both dispose of Sluice's process-wide engines when the test ends.

Register it from the top-level conftest with `pytest_plugins = ["tests.postgres_fixture"]` (or run pytest with
`-p tests.postgres_fixture`).
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.watchdog import guard

PG_GLOB = "/usr/lib/postgresql/*/bin"
SERVICE_USER = "postgres"
SESSION_DATABASE = "sluice_test"
READY_TIMEOUT = 60.0
START_ATTEMPTS = 3
# A throw-away cluster needs no durability; these make schema creation and bulk inserts several times faster.
SERVER_OPTIONS = ("-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off")
_database_numbers = itertools.count(1)


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries or the user to run them as are missing, or the cluster did not start."""


@dataclass(frozen=True)
class PostgresCluster:
    """A running throw-away cluster: where it listens, its folders, and how long it took to start."""

    port: int
    bin_dir: Path
    base_dir: Path
    data_dir: Path
    as_service_user: bool
    start_seconds: float

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database} connect_timeout=5"


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", bin_dir.parent.name)) or (0,)


def find_bin_dir() -> Path:
    """The newest PostgreSQL server bin folder (Debian layout first, then `initdb` on PATH)."""
    candidates = sorted((p for p in Path("/").glob(PG_GLOB.lstrip("/")) if (p / "initdb").is_file()), key=_version_key)
    if candidates:
        return candidates[-1]
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    raise PostgresUnavailable(
        f"PostgreSQL server binaries not found (no {PG_GLOB}/initdb, no initdb on PATH). "
        "Run `make postgres` (scripts/ensure-postgres.sh installs the Debian `postgresql` package) and re-run."
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _clean_env() -> dict[str, str]:
    """The environment minus libpq's PG* variables, so an inherited PGDATA/PGPORT/PGHOST cannot redirect us."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = env["LANG"] = "C"
    return env


def _run(args: list[str], *, as_service_user: bool, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    command = ["su", SERVICE_USER, "-s", "/bin/sh", "-c", shlex.join(args)] if as_service_user else args
    return subprocess.run(command, env=_clean_env(), capture_output=True, text=True, timeout=timeout, check=False)


def _check(result: subprocess.CompletedProcess[str], what: str, log: Path | None = None) -> None:
    if result.returncode == 0:
        return
    tail = log.read_text(errors="replace")[-2000:] if log is not None and log.is_file() else ""
    raise PostgresUnavailable(
        f"{what} failed (exit {result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}\n{tail}"
    )


def _prepare_base_dir(as_service_user: bool) -> Path:
    # Directly under the system temp dir: pytest's own tmp folders are 0700 root, so `postgres` could not enter them,
    # and the socket path (-k) must stay under ~100 characters.
    base = Path(tempfile.mkdtemp(prefix="sluice-pg-"))
    if as_service_user:
        try:
            shutil.chown(base, user=SERVICE_USER, group=SERVICE_USER)
        except LookupError as exc:
            shutil.rmtree(base, ignore_errors=True)
            raise PostgresUnavailable(
                f"running as root but there is no {SERVICE_USER!r} user to run PostgreSQL as ({exc}); "
                "install the Debian `postgresql` package (`make postgres`), which creates it"
            ) from None
    return base


def _wait_ready(port: int, deadline: float) -> None:
    import psycopg

    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=2"):
                return
        except psycopg.OperationalError as exc:
            last_error = exc
            time.sleep(0.1)
    raise PostgresUnavailable(f"PostgreSQL on 127.0.0.1:{port} not ready after {READY_TIMEOUT:.0f} s: {last_error}")


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def start_cluster() -> PostgresCluster:
    """initdb + pg_ctl start on a free loopback port; retries with a new port if another process took it."""
    started = time.monotonic()
    bin_dir = find_bin_dir()
    as_service_user = os.geteuid() == 0
    base = _prepare_base_dir(as_service_user)
    data_dir, log = base / "data", base / "server.log"
    try:
        initdb = [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--locale=C", "--no-sync"]
        _check(_run(initdb, as_service_user=as_service_user), "initdb")
        for attempt in range(1, START_ATTEMPTS + 1):
            port = free_port()
            options = " ".join(["-c listen_addresses=127.0.0.1", f"-p {port}", f"-k {base}", *SERVER_OPTIONS])
            start = [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(log), "-o", options,
                     "-w", "-t", str(int(READY_TIMEOUT)), "start"]
            result = _run(start, as_service_user=as_service_user, timeout=READY_TIMEOUT + 30)
            if result.returncode == 0:
                break
            if attempt == START_ATTEMPTS:
                _check(result, f"pg_ctl start (port {port})", log)
        _wait_ready(port, time.monotonic() + READY_TIMEOUT)
        postmaster = _postmaster_pid(data_dir)
        if postmaster is not None:  # a killed test process leaves no cluster running
            guard(postmaster, first=signal.SIGQUIT, cleanup=base)
    except BaseException:
        _stop(bin_dir, data_dir, as_service_user)
        shutil.rmtree(base, ignore_errors=True)
        raise
    return PostgresCluster(port, bin_dir, base, data_dir, as_service_user, time.monotonic() - started)


def _stop(bin_dir: Path, data_dir: Path, as_service_user: bool) -> None:
    pid = _postmaster_pid(data_dir)
    if pid is None:
        return
    result = _run([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "-t", "30", "stop"],
                  as_service_user=as_service_user, timeout=60)
    if result.returncode == 0:
        return
    for sig in (signal.SIGQUIT, signal.SIGKILL):  # SIGQUIT: immediate shutdown; SIGKILL if even that hangs
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def stop_cluster(cluster: PostgresCluster) -> None:
    try:
        _stop(cluster.bin_dir, cluster.data_dir, cluster.as_service_user)
    finally:
        shutil.rmtree(cluster.base_dir, ignore_errors=True)


def create_database(cluster: PostgresCluster, name: str) -> str:
    import psycopg
    from psycopg import sql

    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:  # CREATE DATABASE cannot run in a transaction
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return cluster.url(name)


def drop_database(cluster: PostgresCluster, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """The session's throw-away cluster; fails (never skips) when PostgreSQL cannot be started."""
    try:
        cluster = start_cluster()
    except PostgresUnavailable as exc:
        pytest.fail(f"cannot start a throw-away PostgreSQL cluster: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """`postgresql+psycopg://postgres@127.0.0.1:<port>/sluice_test` on the session's cluster."""
    return create_database(postgres_cluster, SESSION_DATABASE)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    import store.db

    yield f"sqlite:///{tmp_path / 'sluice.db'}"
    store.db.dispose_engines()


@pytest.fixture
def fresh_postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A new, empty database on the session cluster for one test, dropped afterwards."""
    import store.db

    request.getfixturevalue("postgres_url")  # the session database exists: the cluster is fully set up
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    name = f"sluice_t{os.getpid()}_{next(_database_numbers)}"
    yield create_database(cluster, name)
    store.db.dispose_engines()
    drop_database(cluster, name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database on each backend: a SQLite file in `tmp_path`, or a fresh PostgreSQL database."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "fresh_postgres_url")


@pytest.fixture
def engine(database_url: str):
    """`store.db.get_engine(database_url)`: migrated to the newest schema."""
    import store.db

    engine = store.db.get_engine(database_url)
    yield engine
    store.db.dispose_engines()
