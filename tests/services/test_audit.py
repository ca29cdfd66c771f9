"""services.audit on both databases: the estimate of every automated item open to an audit, from a hand-made
routing record, with audits pending, stored in a cycle report as JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from routing.active_inference import error_interval
from services.audit import audit_estimates, overall_audit_estimate
from store import figures
from store.decision_batches import record_decisions
from store.models import Label, PolicyVersion, utcnow
from tests.items import insert_items

NOW = utcnow()


def _record(engine, *, audit_back: bool) -> None:
    """Segment s: 40 items auto-accepted at an audit rate of 0.1 (calibrated confidence 0.9), four of them
    spot-checked (one found wrong when its label is back), and 5 items automated at a rate of 0 (never open to an
    audit); segment t: one review."""
    rows = [(f"a{i:02d}", "s", "spot_check" if i < 4 else "auto_accept", 0.1) for i in range(40)]
    rows += [(f"z{i}", "s", "auto_accept", 0.0) for i in range(5)] + [("r0", "t", "review", None)]
    with engine.begin() as conn:
        conn.execute(PolicyVersion.__table__.insert(), [{"version": "p1", "name": "p", "document": "", "created_at": NOW}])
        insert_items(conn, [
            {"id": i, "segment": s, "state": "routed", "received_at": NOW, "updated_at": NOW} for i, s, _, _ in rows])
        record_decisions(conn, [
            {"item_id": i, "segment": s, "route": r, "predicted_label": "x", "cycle": 1, "policy_version": "p1",
             "model_version": "m", "inclusion_probability": p, "calibrated_confidence": 0.9, "reasons": [],
             "created_at": NOW} for i, s, r, p in rows])
        if audit_back:
            conn.execute(Label.__table__.insert(), [
                {"item_id": f"a{i:02d}", "label": "y" if i == 0 else "x", "split": "holdout", "source": "annotation",
                 "selection_reason": "audit", "cycle": 1, "created_at": NOW} for i in range(4)])


@pytest.mark.parametrize("audit_back", [True, False])
def test_the_estimate_covers_the_items_open_to_an_audit_and_stores_as_json(engine, audit_back: bool) -> None:
    _record(engine, audit_back=audit_back)
    found = audit_estimates(engine)
    assert set(found) == {"s"}  # t automated nothing
    s = found["s"]
    wrong = np.zeros(40, bool)
    wrong[0] = audit_back
    drawn = np.arange(40) < 4
    expected = error_interval(np.full(40, 0.9), np.full(40, 0.1), drawn, wrong,
                              labelled=drawn if audit_back else np.zeros(40, bool))
    assert (s["n_population"], s["n_unaudited"], s["n_audited"], s["n_awaiting"]) == (
        40, 5, 4 if audit_back else 0, 0 if audit_back else 4)
    assert (s["lower"], s["upper"]) == pytest.approx((expected.lower, expected.upper))
    if audit_back:
        # 0.1 predicted for each item; the wrong audit adds (1 - 0.1) / 0.1, the three right ones (0 - 0.1) / 0.1
        assert s["error_rate"] == pytest.approx(np.clip((40 * 0.1 + 9.0 - 3.0) / 40, s["lower"], s["upper"]))
    else:
        assert s["error_rate"] is None and s["upper"] > expected.lower  # pending: no point estimate, wide interval
    json.dumps(found, allow_nan=False)  # what PostgreSQL's json type accepts
    cycle = figures.open_cycle(engine, "m")
    figures.finish_cycle(engine, cycle, {"audit": found})
    assert figures.cycle_report_figures(engine, cycle)["audit"]["s"]["n_awaiting"] == s["n_awaiting"]
    overall = overall_audit_estimate(engine)
    assert overall is not None and overall.n_population == 40 and overall.upper == pytest.approx(s["upper"])


def test_no_draw_no_estimate(engine) -> None:
    with engine.begin() as conn:
        conn.execute(PolicyVersion.__table__.insert(), [{"version": "p1", "name": "p", "document": "", "created_at": NOW}])
        insert_items(conn, [{"id": "a", "segment": "s", "state": "routed", "received_at": NOW,
                                                "updated_at": NOW}])
        record_decisions(conn, [{
            "item_id": "a", "segment": "s", "route": "auto_accept", "predicted_label": "x", "policy_version": "p1",
            "model_version": "m", "inclusion_probability": 0.1, "reasons": [], "created_at": NOW}])
    assert audit_estimates(engine) == {} and overall_audit_estimate(engine) is None
