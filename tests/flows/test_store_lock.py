"""One flow at a time on a store: the store lock, held by a cycle and inherited by its steps, and freed when the
process of the flow holding it is killed."""

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

ROOT = Path(__file__).resolve().parents[2]
# A real flow run in a process of its own: it holds the store lock, says so, and works until it is killed.
HOLDING_FLOW = textwrap.dedent("""
    import sys, time
    from prefect import flow
    from flows.common import holds_store_lock

    @flow(name="long-retrain")
    @holds_store_lock
    def long_retrain(settings=None):
        print("holding", flush=True)
        time.sleep(600)

    long_retrain()
""")

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def test_a_step_waits_for_the_store_and_fails_with_the_reason_when_it_stays_held(sluice_home, monkeypatch):
    from flows.common import engine_for, store_lock, store_lock_name
    from flows.route import route_flow
    from store.models import RoutingDecision
    from store.settings import get_settings

    monkeypatch.setenv("SLUICE_STORE_LOCK_TIMEOUT", "2")
    get_settings.cache_clear()
    engine = engine_for(None)
    held, release, outcome = threading.Event(), threading.Event(), {}

    def another_flow() -> None:  # stands in for a cycle started by another worker on the same store
        with store_lock(None):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=another_flow)
    holder.start()
    try:
        assert held.wait(30)
        state = route_flow(return_state=True)
        assert state.is_failed(), state
        assert f"held the store lock {store_lock_name(get_settings().resolved_database_url)}" in state.message
        with engine.connect() as conn:  # it did nothing
            assert conn.execute(RoutingDecision.__table__.select()).first() is None
    finally:
        release.set()
        holder.join(30)
    outcome["after"] = route_flow(return_state=True)
    assert outcome["after"].is_completed()  # once released, the step runs


def test_a_flow_killed_with_sigkill_while_holding_the_store_does_not_block_the_next(sluice_home, dataset_files):
    """The next flow starts within the documented bound after the holder's process is SIGKILLed mid-run, and its
    status names the holder's flow run while it lives."""
    from prefect.settings import PREFECT_API_URL

    from flows.common import store_lock
    from flows.ingest import ingest_flow
    from flows.score import score_flow
    from store.lock import RECOVERY_BOUND_SECONDS, lock_status
    from store.settings import get_settings

    items, _ = dataset_files
    ingest_flow(str(items))
    url = get_settings().resolved_database_url
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": PREFECT_API_URL.value()}
    holder = subprocess.Popen([sys.executable, "-c", HOLDING_FLOW], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        status = lock_status(url)
        assert status.held and status.holder is not None and status.holder.pid == holder.pid
        assert status.holder.flow == "long-retrain" and status.holder.flow_run_id
        with pytest.raises(Exception, match="another Sluice flow has held the store lock"):
            with store_lock(None, timeout=0.5):
                pass
    finally:
        killed = time.monotonic()
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    state = score_flow(return_state=True)
    elapsed = time.monotonic() - killed
    assert state.is_completed(), state
    print(f"next flow done {elapsed:.2f} s after SIGKILL of the holding flow's process")
    assert elapsed < RECOVERY_BOUND_SECONDS


def test_a_cycle_holds_one_slot_and_its_steps_run_inside_it(sluice_home, dataset_files):
    """The steps a cycle calls re-enter its slot instead of waiting for it (which would deadlock)."""
    from flows.common import store_lock
    from flows.ingest import ingest_flow
    from flows.route import route_flow
    from flows.score import score_flow

    items, _ = dataset_files
    ingest_flow(str(items))
    with store_lock(None, timeout=1):
        assert score_flow(return_state=True).is_completed()
        assert route_flow(return_state=True).is_completed()


def test_after_a_command_is_killed_holding_the_store_the_next_command_runs(sluice_home, dataset_files):
    """The issue's case end to end in the ephemeral mode (no PREFECT_API_URL: each command starts and ends its
    own temporary Prefect server): a command whose flow holds the store is SIGKILLed mid-run, and the next
    `sluice` command on the store runs at once instead of waiting out SLUICE_STORE_LOCK_TIMEOUT."""
    from flows.ingest import ingest_flow

    items, _ = dataset_files
    ingest_flow(str(items))
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env.update(PYTHONPATH=str(ROOT), PREFECT_HOME=str(sluice_home / "prefect"), SLUICE_STORE_LOCK_TIMEOUT="600")
    command = "from flows.cli import prefect_quietly\nwith prefect_quietly():\n" + textwrap.indent(HOLDING_FLOW, "    ")
    holder = subprocess.Popen([sys.executable, "-c", command], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    started = time.monotonic()
    after = subprocess.run([str(ROOT / ".venv" / "bin" / "sluice"), "score"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    took = time.monotonic() - started
    assert after.returncode == 0, after.stderr[-3000:]
    assert "waits for the store lock" not in after.stderr
    print(f"the next command ran in {took:.1f} s (its own temporary Prefect server included)")
    assert took < 120


def test_a_flow_whose_batch_fails_waits_for_its_other_batches_before_giving_the_store_back(sluice_home, tmp_path):
    """One batch task fails at once while another is still writing: the flow ends Failed only after the other
    finished, so nothing writes the store once its lock is released."""
    from prefect import flow, task

    from flows.common import holds_store_lock, settled
    from flows.runners import BATCH_RUNNER
    from store.lock import lock_status
    from store.settings import get_settings

    marker = tmp_path / "slow-batch-finished"
    url = get_settings().resolved_database_url

    @task
    def slow_batch() -> int:
        time.sleep(1.5)
        marker.write_text("held" if lock_status(url).held else "released")  # is the store still locked for it?
        return 1

    @task
    def failing_batch() -> int:
        raise RuntimeError("this batch failed")

    @flow(task_runner=BATCH_RUNNER)
    @holds_store_lock
    def two_batches(settings=None) -> int:
        with settled() as futures:
            futures += [slow_batch.submit(), failing_batch.submit()]
            return sum(f.result() for f in reversed(futures))  # the failure is seen first

    state = two_batches(return_state=True)
    assert state.is_failed() and "this batch failed" in state.message
    assert marker.read_text() == "held"  # the slow batch finished before the flow gave the lock back
