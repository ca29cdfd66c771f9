"""A cycle over 10,000 segments: tasks over batches of segments, small segments pooled for their guarantee."""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
from sqlalchemy import event, func, select

from store.models import CalibrationReportRow, ReviewTask, ThresholdEvidence
from store.decision_batches import full_decisions

DECISIONS = full_decisions()  # each decision with its batch's columns

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

N_SEGMENTS, PER_SEGMENT = 10_000, 2


def upstream_records(rng: np.random.Generator) -> list[dict]:
    """Two items per product segment, with calibrated upstream confidences (right with that probability)."""
    n = N_SEGMENTS * PER_SEGMENT
    confidence = rng.uniform(0.8, 1.0, n)
    right = rng.random(n) < confidence
    return [{"id": f"it-{i:06d}", "segment": f"product-{i % N_SEGMENTS:05d}", "text": f"review {i}",
             "prediction": "good" if ok else "bad", "confidence": float(c), "truth": "good"}
            for i, (c, ok) in enumerate(zip(confidence, right))]


@contextmanager
def connection_watch(engine):
    """The most connections of `engine` checked out at once, and by any one thread at once."""
    seen, held, lock = {"at_once": 0, "per_thread": 0}, {}, threading.Lock()

    def checkout(*_):
        with lock:
            held[threading.get_ident()] = held.get(threading.get_ident(), 0) + 1
            seen["at_once"] = max(seen["at_once"], sum(held.values()))
            seen["per_thread"] = max(seen["per_thread"], held[threading.get_ident()])

    def checkin(*_):
        with lock:
            held[threading.get_ident()] = held.get(threading.get_ident(), 1) - 1

    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", checkin)
    try:
        yield seen
    finally:
        event.remove(engine, "checkout", checkout)
        event.remove(engine, "checkin", checkin)


def test_a_cycle_over_ten_thousand_segments(sluice_home, tmp_path, caplog, monkeypatch):
    from flows.calibrate import calibrate_flow
    from flows.common import engine_for
    from flows.ingest import ingest_flow, seed_labels
    from flows.route import route_flow
    from flows.score import score_flow
    from flows.select import select_flow
    from store.settings import get_settings

    # four batch tasks at once, as on a database server: SQLite's one writer then queues them (`write_transaction`)
    monkeypatch.setenv("SLUICE_BATCH_THREADS", "4")
    get_settings.cache_clear()
    engine = engine_for(None)
    records = upstream_records(np.random.default_rng(5))
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "truth"}) + "\n" for r in records))
    ingest_flow(str(path))
    seed_labels(engine, [(r["id"], r["truth"]) for r in records[::7]], holdout_share=0.5)
    seconds, logs = {}, {}
    # every run-logger record at INFO and above, whatever PREFECT_LOGGING_LEVEL says (the route logged 536k
    # lines), and every warning of any logger
    caplog.set_level(logging.INFO, logger="prefect")
    with connection_watch(engine) as connections:
        for name, step in (("score", score_flow), ("calibrate", calibrate_flow),
                           ("route", lambda: route_flow(cycle=1)), ("select", lambda: select_flow(cycle=1))):
            caplog.clear()
            started = time.perf_counter()
            seconds[name] = (step(), time.perf_counter() - started)
            logs[name] = list(caplog.records)
    print("\n10,000 segments, seconds per step:", {k: round(v[1], 1) for k, v in seconds.items()},
          "log records:", {k: len(v) for k, v in logs.items()}, "connections:", connections)
    # logging does not grow with segments: a summary per flow and a line per batch task (1,000 segments each)
    for name, logged in logs.items():
        assert len(logged) <= 40, (name, len(logged), [r.getMessage()[:120] for r in logged[:5]])
        assert not [r for r in logged if r.levelno >= logging.WARNING], name
        assert not [r for r in logged if "QueuePool" in r.getMessage() or "TimeoutError" in r.getMessage()]
    # a batch task holds one connection at a time, and the pool has one for each task the runner runs at once
    settings = get_settings()
    assert connections["per_thread"] == 1
    assert connections["at_once"] <= settings.resolved_batch_threads + 1 <= engine.pool.size()
    reports, summary, queued = (seconds[k][0] for k in ("calibrate", "route", "select"))
    # every product has ~0.14 unbiased labels: none stands alone, all pool into the default group
    assert [r["segment"] for r in reports] == ["@default"]
    waiting = N_SEGMENTS * PER_SEGMENT - len(records[::7])
    assert summary["routed"] == waiting and summary["halted_segments"] == []
    with engine.connect() as conn:
        decided = conn.execute(select(func.count(func.distinct(DECISIONS.c.item_id)))).scalar_one()
        segments = conn.execute(select(func.count(func.distinct(DECISIONS.c.segment)))).scalar_one()
        evidence = conn.execute(select(ThresholdEvidence)).all()
        automated = conn.execute(select(func.count()).select_from(DECISIONS).where(
            DECISIONS.c.route.in_(("auto_accept", "spot_check")))).scalar_one()
        pooled = conn.execute(select(func.count(func.distinct(DECISIONS.c.evidence_id))).where(
            DECISIONS.c.evidence_id.is_not(None))).scalar_one()
        tasks = conn.execute(select(func.count()).select_from(ReviewTask)).scalar_one()
        n_reports = conn.execute(select(func.count()).select_from(CalibrationReportRow)).scalar_one()
    assert decided == waiting and segments == N_SEGMENTS
    # one certification for the pool, shared by every product that falls back to it
    assert len(evidence) == 1 and evidence[0].pool == "@default" and evidence[0].threshold is not None
    assert evidence[0].error_upper_bound <= 0.05 and pooled == 1 and n_reports == 1
    assert automated >= 0.1 * waiting  # the pooled threshold automates the confident share of every product
    assert tasks == queued["queued"] and tasks > 0
