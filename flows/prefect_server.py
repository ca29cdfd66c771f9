"""A temporary Prefect server for one command, which ends when the command ends, however the command ends.

Prefect starts a temporary server of its own when no `PREFECT_API_URL` is set, and stops it at interpreter exit;
when the process dies without running its exit handlers (SIGKILL, an out-of-memory kill, SIGTERM under Python's
default handler) that server outlives it, reparented to init, about 220 MB each. Sluice's commands start the
same server (Prefect's API app under uvicorn, in ephemeral mode, on a free 127.0.0.1 port) through this module
instead, and it ends with its parent in every case:

- normal exit or an exception: `temporary_api` stops it (SIGTERM, then SIGKILL after 10 s);
- the parent's death by any signal: the kernel sends the server SIGTERM (Linux `PR_SET_PDEATHSIG`, set before
  the server starts, checked against a parent that died in between), and a watchdog thread in the server sees
  its parent change within a second on any system; a server that has not shut down 10 s after either, exits.

When `PREFECT_API_URL` points at a real server, nothing is started and the command uses that server.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

SERVER_MODULE = "flows.prefect_server"
STOP_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Services that write the temporary server's own SQLite database while the command's next flow run is created:
# after a flow of 100 tasks, creating the next run met a locked database (503) and Prefect's client waited 2 s or
# more to ask again in 15 of 15 rounds; with both off, in none (`bench/bench_flow_stall.py`). What they record
# (events, and task runs made from them) is read by nobody: the server ends with its command. A value set in the
# environment wins.
QUIET_SERVICES = {"PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED": "false",
                  "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false"}


def _server_environment() -> dict[str, str]:
    """What Prefect gives its own temporary server: the settings in force, the UI off, ephemeral mode, and the
    services that would write its database behind the command's back off (`QUIET_SERVICES`)."""
    from prefect.settings import get_current_settings

    return {**QUIET_SERVICES, **os.environ, **get_current_settings().to_environment_variables(exclude_unset=True),
            "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


def _wait_healthy(process: subprocess.Popen[bytes], url: str, timeout: float) -> bool:
    """True once the server answers; False when it exited first (a port taken in between); raises on timeout."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2.0) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the temporary Prefect server at {url} did not answer within {timeout:g} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_server(*, attempts: int = 3) -> tuple[subprocess.Popen[bytes], str]:
    """A temporary Prefect server bound to this process's life: (its process, its API URL)."""
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    timeout = float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
    environment = _server_environment()
    for _ in range(attempts):
        port = _free_port()
        # a session of its own: Ctrl-C in the terminal reaches the command, which then stops the server itself
        # (instead of the server dying while the command still reports its run). The kernel's parent-death
        # signal fires when the starting *thread* ends, so it is asked for only from the main thread.
        command = [sys.executable, "-m", SERVER_MODULE, "--port", str(port), "--parent", str(os.getpid())]
        if threading.current_thread() is not threading.main_thread():
            command.append("--no-death-signal")
        process = subprocess.Popen(command, env=environment, start_new_session=True)
        url = f"http://127.0.0.1:{port}/api"
        try:
            if _wait_healthy(process, url, timeout):
                return process, url
        except BaseException:
            _stop(process)
            raise
    raise RuntimeError(f"the temporary Prefect server exited at start {attempts} times (last exit code "
                       f"{process.returncode})")


@contextmanager
def temporary_api() -> Iterator[str | None]:
    """The Prefect API for one command: `PREFECT_API_URL` when set (None is yielded), else a temporary server
    that ends with this process (its URL is yielded and set as `PREFECT_API_URL` inside the block)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield None
        return
    process, url = start_server()
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                yield url
            finally:
                _send_logs()
    finally:
        _stop(process)


def _send_logs(timeout: float = 10.0) -> None:
    """Send the run logs still queued for the API (`sluice -v`) while the temporary server still answers: sent
    after it stopped, Prefect's log worker retried a refused connection for 75 s at exit, then dropped them."""
    try:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=timeout)
    except Exception:  # noqa: BLE001 - a log that cannot be sent must not fail the command
        pass


def _die_with_parent(parent: int, *, death_signal: bool = True) -> None:
    """Ask the kernel for SIGTERM when the parent dies (Linux), and watch the parent on any system."""
    if death_signal:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # not Linux: the watchdog alone
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(STOP_SECONDS)
        os._exit(1)  # uvicorn did not finish its shutdown in time

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A temporary Prefect API server that ends with its parent.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True, help="the process whose death ends this server")
    parser.add_argument("--no-death-signal", action="store_true",
                        help="started from a thread that may end first: rely on the watchdog alone")
    args = parser.parse_args(argv)
    _die_with_parent(args.parent, death_signal=not args.no_death_signal)
    import uvicorn

    config = uvicorn.Config("prefect.server.api.server:create_app", factory=True, host="127.0.0.1",
                            port=args.port, log_level="error", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    server.run()


if __name__ == "__main__":
    main()
