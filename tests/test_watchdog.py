"""tests/watchdog.py: a test process killed with SIGKILL (no teardown runs) leaves no server behind; a server
stopped normally ends its watchdog."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.watchdog import _WATCHDOGS, guard

ROOT = Path(__file__).resolve().parents[1]


def _ends_within(pid: int, seconds: float) -> bool:
    """Whether process `pid` has ended, or ends within `seconds` (a child of this process is reaped)."""
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return True
    return not psutil.wait_procs([process], timeout=seconds)[1]


def _removed_within(path: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not path.exists()


def _owner(code: str, *args: str) -> subprocess.Popen[str]:
    """A Python process that runs `code` (with the repository importable), then prints a line and sleeps."""
    return subprocess.Popen([sys.executable, "-c", f"import sys, time\nsys.path.insert(0, {str(ROOT)!r})\n{code}\n"
                             "time.sleep(600)", *args], stdout=subprocess.PIPE, text=True)


def test_an_owner_killed_with_sigkill_takes_its_guarded_process_group_down(tmp_path: Path) -> None:
    target = subprocess.Popen(["sleep", "600"], start_new_session=True)
    folder = tmp_path / "server-dir"
    folder.mkdir()
    owner = _owner("from tests.watchdog import guard\nfrom pathlib import Path\n"
                   "guard(int(sys.argv[1]), group=True, cleanup=Path(sys.argv[2]))\nprint('guarded', flush=True)",
                   str(target.pid), str(folder))
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "guarded"
        assert target.poll() is None
        owner.kill()
        owner.wait(timeout=10)
        assert _ends_within(target.pid, 10), "the guarded process outlived its killed owner"
        assert _removed_within(folder, 5)
    finally:
        for process in (owner, target):
            if process.poll() is None:
                process.kill()
        if owner.stdout is not None:
            owner.stdout.close()


def test_a_process_stopped_normally_ends_its_watchdog_and_nothing_else() -> None:
    target = subprocess.Popen(["sleep", "600"], start_new_session=True)
    watchdog = guard(target.pid, group=True)
    try:
        time.sleep(0.6)
        assert watchdog.poll() is None  # owner and target alive: it waits
        target.terminate()
        target.wait(timeout=10)
        assert watchdog.wait(timeout=10) == 0
    finally:
        if target.poll() is None:
            target.kill()


@pytest.mark.integration
def test_a_killed_test_process_leaves_no_postgresql_cluster_running() -> None:
    owner = _owner("from tests.postgres_fixture import start_cluster, _postmaster_pid\n"
                   "cluster = start_cluster()\n"
                   "print(_postmaster_pid(cluster.data_dir), cluster.base_dir, flush=True)")
    postmaster, base = None, ""
    try:
        assert owner.stdout is not None
        pid_text, base = owner.stdout.readline().split()
        postmaster = int(pid_text)
        assert psutil.pid_exists(postmaster)
        owner.kill()
        owner.wait(timeout=10)
        assert _ends_within(postmaster, 20), f"PostgreSQL {postmaster} outlived the killed test process"
        assert _removed_within(Path(base), 10)
    finally:
        if owner.poll() is None:
            owner.kill()
        if owner.stdout is not None:
            owner.stdout.close()
        if postmaster is not None and not _ends_within(postmaster, 0):  # the watchdog failed: stop it here
            os.kill(postmaster, signal.SIGQUIT)
            _ends_within(postmaster, 10)
        if base:
            shutil.rmtree(base, ignore_errors=True)


@pytest.mark.integration
def test_the_prefect_harness_server_is_guarded(prefect_harness) -> None:
    from prefect.server.api.server import SubprocessASGIServer

    pid = SubprocessASGIServer._instances[None].server_process.pid
    assert any(str(pid) in watchdog.args for watchdog in _WATCHDOGS if watchdog.poll() is None)
