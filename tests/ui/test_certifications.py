"""The console's view of what certified the newest cycle's thresholds: the estimate, its one-sided bound and the
labels of each kind, exactly as the route flow recorded them; the expected figures are read with plain SQL from the
evidence rows and the decisions that point at them."""

from __future__ import annotations

import math

import pytest

from tests.ui import expected
from tests.ui.conftest import POLICY, answer_open_tasks
from tests.ui.test_app import _run, streamlit_caches  # noqa: F401

pytestmark = pytest.mark.integration

# A target the routed store's 200 held-out labels can certify on this data
TARGET = POLICY.replace("auto_accept_threshold: 0.8", "max_auto_error: 0.3\n  confidence: 0.8")


def _cycle_two_with_a_target(engine, store, tmp_path) -> int:
    """People answer cycle 1; fresh items arrive; cycle 2 runs under the target with the same model."""
    from flows.cycle import run_cycle
    from flows.ingest import ingest_flow
    from routing.policy import Policy
    from store.policies import save_policy
    from tests.flows.conftest import make_dataset, write_files

    answer_open_tasks(engine, store, cycle=1)
    save_policy(engine, Policy.from_yaml(TARGET), author="ops", comment="a target")
    items, _ = write_files(tmp_path, make_dataset(300, seed=11))
    ingest_flow(str(items))
    return run_cycle(push=False, retrain=False)["cycle"]


def test_the_newest_certifications_are_the_evidence_behind_the_cycles_decisions(routed_engine, routed_store,
                                                                                 tmp_path, streamlit_caches):
    from ui import data
    from ui.display import percent

    cycle = _cycle_two_with_a_target(routed_engine, routed_store, tmp_path)
    used = expected.rows(routed_engine, f"""
        SELECT e.id, e.segment AS pool, d.segment, e.estimator, e.threshold, e.n, e.n_accepted, e.n_errors,
               e.error_upper_bound, e.labels_by_reason, COUNT(*) AS decisions,
               SUM(d.route IN ('auto_accept', 'spot_check')) AS auto_accepted
        FROM {expected.DECISIONS} d JOIN threshold_evidence e ON e.id = d.evidence_id
        WHERE d.cycle = {cycle} GROUP BY e.id, d.segment""")
    assert used and any(row.threshold is not None for row in used), "cycle 2 certified no threshold"
    frame = data.certifications(routed_engine)
    assert len(frame) == len(used)
    shown = frame.set_index("segment")
    for row in used:
        got = shown.loc[row.segment]
        assert got["cycle"] == cycle and got["test"] == data.CERTIFICATION_TESTS[row.estimator]
        assert (got["threshold"], got["n"], got["n_accepted"], got["n_errors"], got["error_upper_bound"]) == (
            row.threshold, row.n, row.n_accepted, row.n_errors, row.error_upper_bound)
        assert got["decisions"] == row.decisions and got["auto_accepted"] == row.auto_accepted
        assert got["labels_by_reason"] == expected._json(row.labels_by_reason)
        assert sum(got["labels_by_reason"].values()) == row.n  # every label tested, by kind
        assert got["estimate"] == pytest.approx(row.n_errors / row.n_accepted) if row.n_accepted else \
            math.isnan(got["estimate"])

    at = _run()
    table = next(d.value for d in at.dataframe if "interval" in d.value.columns).set_index("segment")
    certified = next(row for row in used if row.threshold is not None)
    line = table.loc[certified.segment]
    assert line["interval"] == f"0 – {percent(certified.error_upper_bound)}"
    assert line["threshold"] == f"{certified.threshold:.4f}" and line["target"] == "≤ 30.0% at 80.0%"
    assert line["labels"] == ", ".join(f"{k} {v}" for k, v in
                                       sorted(expected._json(certified.labels_by_reason).items()))
    assert any("Certified thresholds" == h.value for h in at.subheader)
