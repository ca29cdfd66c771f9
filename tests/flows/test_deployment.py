"""The deployments as an operator runs them: a real Prefect server on 127.0.0.1, `prefect deploy` from prefect.yaml,
a process worker, and a cycle deployment run whose final state and rows are checked.

Everything started here is stopped by its process id. The store is prepared (items ingested, seed labels, a first
model) by in-process flow runs; the cycle itself runs in the worker's subprocess, as it would in production.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from tests.labelstudio_fixture import free_port
from store.decision_batches import full_decisions

DECISIONS = full_decisions()  # each decision with its batch's columns

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _stop(process: subprocess.Popen) -> None:
    """Stop a process group we started, by its id: SIGTERM, then SIGKILL after 20 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _prefect(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    done = subprocess.run([PREFECT, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _wait_healthy(api: str, server: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the Prefect server exited:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the Prefect server was not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def deployment_env(sluice_home, labelstudio, tmp_path, monkeypatch):
    """A prepared store, Label Studio, and a fresh Prefect server of our own on 127.0.0.1: the environment a
    worker would have. Yields (env, api, engine); stops the server by its id."""
    from flows.common import engine_for
    from flows.ingest import ingest_flow, read_labels, seed_labels
    from flows.retrain import retrain_flow
    from store.settings import get_settings
    from tests.flows.conftest import make_dataset, write_files

    monkeypatch.setenv("SLUICE_LABELSTUDIO_URL", labelstudio.url)
    monkeypatch.setenv("SLUICE_LABELSTUDIO_TOKEN", labelstudio.token)
    monkeypatch.setenv("SLUICE_LABELSTUDIO_PROJECT", f"deployment test {tmp_path.name[-12:]}")
    get_settings.cache_clear()
    items, labels = write_files(tmp_path, make_dataset(600, seed=11))
    engine = engine_for(None)
    ingest_flow(str(items))
    seed_labels(engine, read_labels(labels)[:200], holdout_share=0.5)
    retrain_flow()

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
        "SLUICE_PROJECT_DIR": str(ROOT), "SLUICE_HOME": str(sluice_home),
        "SLUICE_DATABASE_URL": get_settings().resolved_database_url,
    })
    log = tmp_path / "prefect-server.log"
    with log.open("w") as out:
        server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                  cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_healthy(api, server, log)
        yield env, api, engine
    finally:
        _stop(server)


def test_a_cycle_deployed_from_prefect_yaml_runs_on_a_worker_and_writes_the_store(deployment_env, tmp_path):
    from store.models import AuditEvent, CycleReport, ReviewTask

    env, api, engine = deployment_env
    _prefect(env, "work-pool", "create", "sluice", "--type", "process")
    _prefect(env, "--no-prompt", "deploy", "--all")  # prefect.yaml: the cycle (and ingest on demand)
    deployments = httpx.post(f"{api}/deployments/filter", json={}, timeout=30).json()
    assert sorted(d["name"] for d in deployments) == ["cycle-hourly", "ingest-on-demand"]
    cycle = next(d for d in deployments if d["name"] == "cycle-hourly")
    run = httpx.post(f"{api}/deployments/{cycle['id']}/create_flow_run", json={}, timeout=30).json()

    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen([PREFECT, "worker", "start", "--pool", "sluice"], cwd=tmp_path, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, state = time.monotonic() + 420, None
        while time.monotonic() < deadline:
            state = httpx.get(f"{api}/flow_runs/{run['id']}", timeout=30).json()["state"]
            if state["type"] in TERMINAL:
                break
            assert worker.poll() is None, f"the worker exited:\n{log.read_text()[-3000:]}"
            time.sleep(2)
    finally:
        _stop(worker)
    assert state is not None and state["type"] == "COMPLETED", (
        f"{json.dumps(state, indent=1)}\nworker log:\n{log.read_text()[-4000:]}")
    with engine.connect() as conn:
        report = conn.execute(select(CycleReport)).one()
        decisions = conn.execute(select(func.count()).select_from(DECISIONS)).scalar_one()
        pushed = conn.execute(select(func.count()).select_from(ReviewTask)
                              .where(ReviewTask.state == "pushed")).scalar_one()
        events = set(conn.execute(select(AuditEvent.kind)).scalars())
    assert report.finished_at is not None and report.figures["routed"] == decisions == 400
    assert pushed > 0 and {"push", "pull"} <= events
