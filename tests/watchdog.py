"""A watchdog for the servers the tests start (a PostgreSQL cluster, a Label Studio server): when the test process
dies without stopping its server (SIGKILL, a timeout's SIGTERM that skips the fixtures' teardown), the watchdog
stops the server and removes its folder, so no orphan keeps a port, a data directory or memory.

`guard(pid)` starts a small detached Python process that polls two process ids twice a second: its owner (the
process that called `guard`) and the server. When the server is gone first (a normal teardown), it exits. When
the owner is gone first, it sends the server (or its process group) `first` (SIGQUIT: PostgreSQL's immediate
shutdown; SIGTERM for others), then SIGKILL if the server still runs 10 s later, and removes `cleanup`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

_WATCH = r"""
import os, shutil, signal, sys, time
import psutil
owner_pid, target_pid, group, first, cleanup = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "group",
                                                int(sys.argv[4]), sys.argv[5])

def process(pid):
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None

def alive(p):  # a zombie has ended; is_running also tells a reused pid from the process it watched
    try:
        return p is not None and p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process (PostgreSQL's service user): alive
        return True

owner, target = process(owner_pid), process(target_pid)
while alive(owner) and alive(target):
    time.sleep(0.5)
if target is not None and not alive(owner):
    for sig in (first, signal.SIGKILL):
        if not alive(target):
            break
        try:
            (os.killpg if group else os.kill)(target.pid, sig)
            target.wait(10)
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.TimeoutExpired):
            pass
    if cleanup:
        shutil.rmtree(cleanup, ignore_errors=True)
"""


_WATCHDOGS: list[subprocess.Popen[bytes]] = []  # held, so that no running watchdog is garbage-collected


def guard(pid: int, *, group: bool = False, first: signal.Signals = signal.SIGTERM,
          cleanup: Path | None = None) -> subprocess.Popen[bytes]:
    """Stop `pid` (its process group with `group`) with `first`, then SIGKILL, once this process is gone; remove
    `cleanup` after. Returns the watchdog's process (it ends by itself when `pid` ends first)."""
    watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCH, str(os.getpid()), str(pid), "group" if group else "pid", str(int(first)),
         "" if cleanup is None else str(cleanup)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # a signal to the test's process group does not reach it
    )
    _WATCHDOGS.append(watchdog)
    return watchdog
