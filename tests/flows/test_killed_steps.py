"""A step killed with SIGKILL half-way, then run again, leaves no duplicate and loses nothing; two ingests of
overlapping files at once add up.

Each step (ingest, score, route) runs in a process of its own against the test's store, with the session's
Prefect API, on a data set big enough that it commits in several batches (60,000 items with upstream scores
over 36 segments: ingest writes chunks of 20,000 records, each item with its upstream prediction, score
upstream batches of 50,000 (for items a store made by an earlier release holds), route batches of 20,000 items). The test polls the store on a connection of its own until some but not all of the step's rows
are committed, kills the process, checks that it really died half-way, then runs the step again in this
process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

ROOT = Path(__file__).resolve().parents[2]
N_ITEMS, N_SEGMENTS, N_BAD = 60_000, 36, 30  # N_BAD records break the contract: they go to quarantine
POLL_SECONDS = 0.01
STEP_SCRIPTS = {
    "ingest": "import sys\nfrom flows.ingest import ingest_flow\ningest_flow(sys.argv[1])\n",
    # the passthrough of a store an earlier release left is a state move per batch: small batches, so that the
    # kill lands between two of them
    "score": "import flows.score\nflows.score.UPSTREAM_BATCH_SIZE = 1_000\nflows.score.score_flow(batch_size=1_000)\n",
    "route": "from flows.route import route_flow\nroute_flow(cycle=1)\n",
}
# The whole ingest flow, stopped at one point only: once its task is about to read the file, it says "ready"
# and waits for "go" on stdin, so that two of them write the store at the same moment (the Prefect API
# serialises the start of flow and task runs: two flows started together reached their first write 2 s apart).
CONCURRENT_INGEST = """
import json, sys
import flows.ingest
from flows.ingest import ingest_flow

read_and_write = flows.ingest.ingest_file

def ingest_file_on_go(*args, **kwargs):
    sys.__stdout__.write("ready\\n")
    sys.__stdout__.flush()
    assert sys.stdin.readline().strip() == "go"
    return read_and_write(*args, **kwargs)

flows.ingest.ingest_file = ingest_file_on_go
sys.__stdout__.write("SUMMARY " + json.dumps(ingest_flow(sys.argv[1])) + "\\n")
"""


def upstream_record(i: int, confidence: float) -> dict:
    return {"id": f"kill-{i:06d}", "segment": f"seg-{i % N_SEGMENTS:02d}", "text": f"order number {i}",
            "prediction": "good" if i % 3 else "bad", "confidence": confidence}


@pytest.fixture(scope="session")
def big_items(tmp_path_factory) -> Path:
    """60,000 well-formed records with upstream scores and 30 broken ones (confidence outside [0, 1]) spread
    through the file; written once for the session."""
    path = tmp_path_factory.mktemp("killed-steps") / "items.jsonl"
    confidence = np.random.default_rng(7).uniform(0.5, 1.0, N_ITEMS)
    bad_every = N_ITEMS // N_BAD
    lines = []
    for i in range(N_ITEMS):
        lines.append(json.dumps(upstream_record(i, float(confidence[i]))))
        if i % bad_every == 0:
            broken = {"id": f"broken-{i:06d}", "text": "x", "prediction": "good", "confidence": 1.5}
            lines.append(json.dumps(broken))
    path.write_text("\n".join(lines) + "\n")
    return path


def database_url() -> str:
    from store.settings import get_settings

    return get_settings().resolved_database_url


def scalar(url: str, sql: str) -> int:
    """One number read on a connection of our own (never the flows' engine)."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


def kill_step_half_way(step: str, count_sql: str, total: int, *args: str) -> tuple[int, float]:
    """Run `step` in a process of its own, SIGKILL it as soon as `count_sql` counts some but not all of
    `total` rows; returns (rows committed once it is dead, seconds from its start to the kill)."""
    from prefect.settings import PREFECT_API_URL

    url = database_url()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": PREFECT_API_URL.value()}
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-c", STEP_SCRIPTS[step], *args], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen, deadline = 0, started + 300
    poller = create_engine(url, poolclass=NullPool)
    try:
        with poller.connect() as conn:
            while time.monotonic() < deadline and process.poll() is None:
                seen = int(conn.execute(text(count_sql)).scalar_one())
                conn.rollback()  # a fresh snapshot each time
                if seen > 0:
                    break
                time.sleep(POLL_SECONDS)
    finally:
        poller.dispose()
        killed_at = time.monotonic()
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    output = process.stdout.read().decode(errors="replace") if process.stdout else ""
    assert process.returncode == -signal.SIGKILL, (
        f"the {step} ended (exit {process.returncode}) before it was killed; {seen} of {total} rows seen:\n"
        f"{output[-3000:]}")
    stored = scalar(url, count_sql)
    assert 0 < stored < total, f"the {step} was not killed half-way: {stored} of {total} rows committed"
    return stored, killed_at - started


def assert_lock_free_soon(url: str) -> float:
    """The dead step's store lock is free again (at once on SQLite; once PostgreSQL sees the session gone);
    returns how long that took."""
    from store.lock import RECOVERY_BOUND_SECONDS, lock_status

    started = time.monotonic()
    while lock_status(url).held and time.monotonic() - started < RECOVERY_BOUND_SECONDS:
        time.sleep(0.05)
    assert not lock_status(url).held, "the killed step's store lock is still held"
    return time.monotonic() - started


def failure(output: str) -> str:
    """A dead process's last traceback, clipped (a database error names every row it was given)."""
    return output[output.rfind("Traceback"):][:3000]


def duplicates(url: str, table: str, key: str, where: str = "") -> int:
    """How many keys occur more than once in `table`."""
    return scalar(url, f"select count(*) from (select {key} from {table} {where} group by {key} "
                       f"having count(*) > 1) as doubled")


def test_ingest_killed_half_way_then_run_again(sluice_home, big_items):
    """Ingest commits chunk by chunk: killed after the first chunk, the re-run adds exactly the items that
    were missing (the rest count as duplicates), every item once, every broken record quarantined once."""
    from flows.common import engine_for
    from flows.ingest import ingest_flow

    url = database_url()
    engine_for(None)  # the store exists and is migrated before the step's process starts
    clock = time.monotonic()
    stored, ran = kill_step_half_way("ingest", "select count(*) from items", N_ITEMS, str(big_items))
    # each item was born scored, its upstream prediction in its own row (store.predictions), never apart
    # and with its state row: the two are written in one transaction
    assert scalar(url, "select count(*) from items i join item_states s on s.item_id = i.id "
                       "where s.state = 'scored' "
                       "and i.upstream_prediction is not null and i.upstream_confidence is not null") == stored
    assert scalar(url, "select count(*) from predictions") == 0
    quarantined = scalar(url, "select count(*) from quarantine")
    waited = assert_lock_free_soon(url)
    summary = ingest_flow(str(big_items))
    assert summary["accepted"] == N_ITEMS - stored and summary["duplicate"] == stored, summary
    assert scalar(url, "select count(*) from items") == N_ITEMS
    assert scalar(url, "select count(distinct id) from items") == N_ITEMS
    assert scalar(url, "select count(*) from items where id like 'kill-%'") == N_ITEMS  # none lost
    assert duplicates(url, "items", "id") == 0
    assert scalar(url, "select count(*) from quarantine") == N_BAD  # each broken record once, re-run or not
    assert quarantined <= N_BAD
    assert duplicates(url, "quarantine", "source, record_number") == 0
    assert scalar(url, "select count(*) from item_states where state = 'scored'") == N_ITEMS
    print(f"\ningest killed after {ran:.1f} s with {stored:,} of {N_ITEMS:,} items stored; lock free after "
          f"{waited:.2f} s; test {time.monotonic() - clock:.1f} s")


def _as_before_born_scored(url: str) -> None:
    """The store as an earlier release left it: items with upstream scores received, still to be passed through
    by the score step (migration 0015 gave them their passthrough prediction in their rows)."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text("update item_states set state = 'received'"))
    finally:
        engine.dispose()


def test_score_killed_half_way_then_run_again(sluice_home, big_items):
    """Score moves each passthrough batch to `scored` in one transaction: killed after a batch, the re-run
    passes exactly the items left through. (Items are born scored now; the score step still passes through those
    a store made by an earlier release left received.)"""
    from flows.ingest import ingest_flow
    from flows.score import score_flow

    url = database_url()
    ingest_flow(str(big_items))
    _as_before_born_scored(url)
    quarantined = scalar(url, "select count(*) from quarantine")
    clock = time.monotonic()
    stored, ran = kill_step_half_way("score", "select count(*) from item_states where state = 'scored'", N_ITEMS)
    waited = assert_lock_free_soon(url)
    summary = score_flow()
    assert summary["upstream"] == summary["scored"] == N_ITEMS - stored, summary
    assert scalar(url, "select count(*) from predictions") == 0
    assert scalar(url, "select count(*) from item_states where state = 'scored'") == N_ITEMS
    assert scalar(url, "select count(*) from quarantine") == quarantined == N_BAD
    print(f"\nscore killed after {ran:.1f} s with {stored:,} of {N_ITEMS:,} items passed through; lock free "
          f"after {waited:.2f} s; test {time.monotonic() - clock:.1f} s (ingest not counted)")


def test_route_killed_half_way_then_run_again(sluice_home, big_items):
    """Route writes each batch's decisions with the items' new states in one transaction: killed after a
    batch, the re-run routes exactly the items still scored, one decision per item for the cycle."""
    from flows.ingest import ingest_flow
    from flows.route import route_flow
    from flows.score import score_flow

    url = database_url()
    ingest_flow(str(big_items))
    assert score_flow()["upstream"] == 0  # born scored
    quarantined = scalar(url, "select count(*) from quarantine")
    clock = time.monotonic()
    stored, ran = kill_step_half_way("route", "select count(*) from routing_decisions", N_ITEMS)
    assert scalar(url, "select count(*) from item_states where state = 'scored'") == N_ITEMS - stored
    waited = assert_lock_free_soon(url)
    summary = route_flow(cycle=1)
    assert summary["routed"] == N_ITEMS - stored, summary
    assert scalar(url, "select count(*) from routing_decisions") == N_ITEMS
    cycle_1 = "routing_decisions d join routing_batches b on b.id = d.batch_id"
    assert scalar(url, f"select count(distinct item_id) from {cycle_1} where cycle = 1") == N_ITEMS
    assert duplicates(url, cycle_1, "item_id", "where cycle = 1") == 0
    assert scalar(url, "select count(*) from routing_decisions where supersedes_id is not null") == 0
    assert scalar(url, "select count(*) from item_states where state = 'scored'") == 0
    assert scalar(url, "select count(*) from quarantine") == quarantined == N_BAD
    print(f"\nroute killed after {ran:.1f} s with {stored:,} of {N_ITEMS:,} decisions stored; lock free "
          f"after {waited:.2f} s; test {time.monotonic() - clock:.1f} s (ingest and score not counted)")


def test_two_ingests_of_overlapping_files_at_once_add_up(sluice_home, tmp_path):
    """Two processes ingest two files that share a third of their ids at the same moment (the shared records
    open both files, in another order in each, so that both first chunks write them together): every id once,
    and the two summaries add up (what one accepted, the other counted as a duplicate)."""
    from flows.common import engine_for
    from prefect.settings import PREFECT_API_URL

    shared, own = 15_000, 30_000
    confidence = np.random.default_rng(11).uniform(0.5, 1.0, shared + 2 * own)
    records = [upstream_record(i, float(c)) for i, c in enumerate(confidence)]
    in_other_order = [records[i] for i in np.random.default_rng(12).permutation(shared)]
    files = {"a": records[:shared + own], "b": in_other_order + records[shared + own:]}
    paths = {}
    for name, rows in files.items():
        paths[name] = tmp_path / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    union = shared + 2 * own
    url = database_url()
    engine_for(None)  # migrated once, before either process starts
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": PREFECT_API_URL.value()}
    clock = time.monotonic()
    processes = {name: subprocess.Popen([sys.executable, "-c", CONCURRENT_INGEST, str(path)], cwd=ROOT,
                                        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
                 for name, path in paths.items()}
    outputs = dict.fromkeys(processes, "")
    try:
        for name, process in processes.items():
            while (line := process.stdout.readline()) and line.strip() != "ready":
                outputs[name] += line
            assert line, f"ingest {name} ended before it was ready:\n{failure(outputs[name])}"
        for process in processes.values():
            process.stdin.write("go\n")
            process.stdin.flush()
        for name, process in processes.items():
            outputs[name] += process.communicate(timeout=300)[0]
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)
    summaries = {}
    for name, process in processes.items():
        assert process.returncode == 0, failure(outputs[name])
        (line,) = [line for line in outputs[name].splitlines() if line.startswith("SUMMARY ")]
        summaries[name] = json.loads(line.removeprefix("SUMMARY "))
    a, b = summaries["a"], summaries["b"]
    assert a["total"] == b["total"] == shared + own and not a["quarantined"] and not b["quarantined"]
    assert scalar(url, "select count(*) from items") == union
    assert scalar(url, "select count(distinct id) from items") == union
    assert duplicates(url, "items", "id") == 0
    assert a["accepted"] + b["accepted"] == union, summaries
    assert a["duplicate"] + b["duplicate"] == shared, summaries
    assert scalar(url, "select count(*) from quarantine") == 0
    print(f"\ntwo ingests at once: a {a['accepted']:,} accepted / {a['duplicate']:,} duplicate, b "
          f"{b['accepted']:,} / {b['duplicate']:,}; test {time.monotonic() - clock:.1f} s")
