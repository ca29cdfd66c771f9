"""A cycle over 10,000 segments: tasks over batches of segments, small segments pooled for their guarantee."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from sqlalchemy import func, select

from store.models import CalibrationReportRow, ReviewTask, RoutingDecision, ThresholdEvidence

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


def test_a_cycle_over_ten_thousand_segments(sluice_home, tmp_path):
    from flows.calibrate import calibrate_flow
    from flows.common import engine_for
    from flows.ingest import ingest_flow, seed_labels
    from flows.route import route_flow
    from flows.score import score_flow
    from flows.select import select_flow

    engine = engine_for(None)
    records = upstream_records(np.random.default_rng(5))
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "truth"}) + "\n" for r in records))
    ingest_flow(str(path))
    seed_labels(engine, [(r["id"], r["truth"]) for r in records[::7]], holdout_share=0.5)
    seconds = {}
    for name, step in (("score", score_flow), ("calibrate", calibrate_flow), ("route", lambda: route_flow(cycle=1)),
                       ("select", lambda: select_flow(cycle=1))):
        started = time.perf_counter()
        seconds[name] = (step(), time.perf_counter() - started)
    print("\n10,000 segments, seconds per step:", {k: round(v[1], 1) for k, v in seconds.items()})
    reports, summary, queued = (seconds[k][0] for k in ("calibrate", "route", "select"))
    # every product has ~0.14 unbiased labels: none stands alone, all pool into the default group
    assert [r["segment"] for r in reports] == ["@default"]
    waiting = N_SEGMENTS * PER_SEGMENT - len(records[::7])
    assert summary["routed"] == waiting and summary["halted_segments"] == []
    with engine.connect() as conn:
        decided = conn.execute(select(func.count(func.distinct(RoutingDecision.item_id)))).scalar_one()
        segments = conn.execute(select(func.count(func.distinct(RoutingDecision.segment)))).scalar_one()
        evidence = conn.execute(select(ThresholdEvidence)).all()
        automated = conn.execute(select(func.count()).select_from(RoutingDecision).where(
            RoutingDecision.route.in_(("auto_accept", "spot_check")))).scalar_one()
        pooled = conn.execute(select(func.count(func.distinct(RoutingDecision.evidence_id))).where(
            RoutingDecision.evidence_id.is_not(None))).scalar_one()
        tasks = conn.execute(select(func.count()).select_from(ReviewTask)).scalar_one()
        n_reports = conn.execute(select(func.count()).select_from(CalibrationReportRow)).scalar_one()
    assert decided == waiting and segments == N_SEGMENTS
    # one certification for the pool, shared by every product that falls back to it
    assert len(evidence) == 1 and evidence[0].pool == "@default" and evidence[0].threshold is not None
    assert evidence[0].error_upper_bound <= 0.05 and pooled == 1 and n_reports == 1
    assert automated >= 0.1 * waiting  # the pooled threshold automates the confident share of every product
    assert tasks == queued["queued"] and tasks > 0
