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
owner, target, group, first, cleanup = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "group", int(sys.argv[4]), sys.argv[5]

def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process (PostgreSQL's service user): alive
        return True
    return True

while alive(owner) and alive(target):
    time.sleep(0.5)
if not alive(owner):
    send = os.killpg if group else os.kill
    for sig in (first, signal.SIGKILL):
        try:
            send(target, sig)
        except ProcessLookupError:
            break
        for _ in range(100):
            if not alive(target):
                break
            time.sleep(0.1)
        if not alive(target):
            break
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
