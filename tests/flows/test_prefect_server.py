"""The temporary Prefect server a command starts ends with the command: normal exit, SIGTERM, SIGKILL.

Each case runs the real `sluice` command line in a process of its own, with no PREFECT_API_URL, on a store whose
lock the test holds, so the command is caught mid-run (its flow waits for the lock) with its server up."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SLUICE = ROOT / ".venv" / "bin" / "sluice"


def command_env(home: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("PREFECT_API_URL", "SLUICE_DATABASE_URL", "PREFECT_HOME")}
    return {**env, "SLUICE_HOME": str(home), "PREFECT_HOME": str(home / "prefect"), **extra}


def servers_of(parent_pid: int) -> list[psutil.Process]:
    """Every running temporary server started for the command with process id `parent_pid`."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        parent = cmdline[cmdline.index("--parent") + 1] if "--parent" in cmdline[:-1] else None
        if "flows.prefect_server" in cmdline and parent == str(parent_pid):
            found.append(process)
    return found


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"{what} within {timeout:g} s")


def wait_until_gone(processes: list[psutil.Process], timeout: float) -> float:
    started = time.monotonic()
    gone, alive = psutil.wait_procs(processes, timeout=timeout)
    assert not alive, f"still running {timeout:g} s after its command ended: {[p.pid for p in alive]}"
    return time.monotonic() - started


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_the_server_ends_when_its_command_is_killed_mid_run(tmp_path, how):
    from store.lock import hold_store_lock

    home = tmp_path / "home"
    url = f"sqlite:///{home / 'sluice.db'}"
    with hold_store_lock(url, flow="the test", timeout=5):
        command = subprocess.Popen([str(SLUICE), "score"], env=command_env(home, SLUICE_STORE_LOCK_TIMEOUT="300"),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(command.stderr.readline, "")), daemon=True)
        reader.start()
        try:
            server = wait_for(lambda: servers_of(command.pid), 120, "no temporary server started")
            # mid-run: the command's flow runs against its server and waits for the store lock
            wait_for(lambda: any("waits for the store lock" in line for line in lines), 120,
                     f"the command's flow did not start: {''.join(lines)[-2000:]}")
            command.send_signal(how)
            command.wait(30)
        finally:
            if command.poll() is None:
                command.kill()
                command.wait()
        took = wait_until_gone(server, 20)
    print(f"temporary server gone {took:.2f} s after {how.name} of its command")


def test_the_server_ends_when_its_command_ends(tmp_path):
    home = tmp_path / "home"
    command = subprocess.Popen([str(SLUICE), "score"], env=command_env(home), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    seen: list[psutil.Process] = []
    while command.poll() is None:
        seen.extend(p for p in servers_of(command.pid) if p.pid not in {s.pid for s in seen})
        time.sleep(0.2)
    assert command.returncode == 0, command.stderr.read() if command.stderr else ""
    assert seen, "the command started no temporary server of its own"
    assert not servers_of(command.pid)
    wait_until_gone(seen, 5)


def test_a_set_api_url_is_used_and_no_server_is_started(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.prefect_server import temporary_api

    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        with temporary_api() as started:
            assert started is None and not servers_of(os.getpid())


def test_the_flows_of_one_command_share_one_api_client(prefect_harness):
    """Each top-level flow run opened its own client (a TLS context built from the certificate store and a new
    connection, about half of an empty flow run's time): a command's flows now go through one."""
    from prefect import flow
    from prefect.client.orchestration import get_client

    from flows.cli import prefect_quietly

    clients = []

    @flow
    def client_of_a_run() -> None:
        clients.append(get_client(sync_client=True))

    with prefect_quietly():
        client_of_a_run()
        client_of_a_run()
    client_of_a_run()  # outside a command, a flow run still opens (and closes) its own
    assert clients[0] is clients[1]
    assert clients[2] is not clients[0]


def test_the_temporary_server_runs_without_the_services_that_write_its_database_behind_the_command(monkeypatch):
    """Its event persister and task-run recorder made the next flow run's creation meet a locked database (503,
    and a 2 s wait in Prefect's client) after a flow of many tasks: they are off on the temporary server, unless
    the environment says otherwise."""
    from flows.prefect_server import QUIET_SERVICES, _server_environment

    for name in QUIET_SERVICES:
        monkeypatch.delenv(name, raising=False)
    environment = _server_environment()
    assert {name: environment[name] for name in QUIET_SERVICES} == {name: "false" for name in QUIET_SERVICES}
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED", "true")
    assert _server_environment()["PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED"] == "true"
