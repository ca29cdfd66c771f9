"""What ops watch, over stores the real flows filled: trends per segment over cycles (automation, the weighted
audited error with its interval, the backlog), the review queue's age, and segments flagged at the top when the
route step sent their items to people because their calibration does not stand."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from store.vocab import Role
from ui import data
from ui.auth import SESSION_KEY, SignedIn

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]
APP = str(Path(__file__).resolve().parents[2] / "ui" / "app.py")


@pytest.fixture(autouse=True)
def streamlit_caches():
    import streamlit as st

    yield
    st.cache_data.clear()
    st.cache_resource.clear()


def overview() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state[SESSION_KEY] = SignedIn("ops", Role.VIEWER, "password")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_three_cycles_chart_per_segment_with_the_recorded_audit_estimate(sluice_home, tmp_path):
    from store.figures import cycle_reports
    from store.settings import get_settings
    from tests.flows.conftest import make_dataset, write_files
    from tests.flows.seeded import seed_then_loop

    items, labels = write_files(tmp_path, make_dataset(900, seed=3))
    engine = seed_then_loop(get_settings(), items, labels, tmp_path, seed_count=400, cycles=3, batch_size=150)
    trends = data.segment_trends(engine)
    assert list(trends["cycle"]) == [1, 2, 3] and set(trends["segment"]) == {"default"}
    assert trends["routed"].min() >= 150 and trends["automation_rate"].between(0, 1).all()
    recorded = {row.cycle: (row.figures.get("audit") or {}).get("default") for row in cycle_reports(engine)}
    for row in trends.itertuples():  # exactly what each cycle report recorded, never recomputed here
        if recorded[row.cycle] is None:
            assert row.audit_error != row.audit_error  # NaN
        else:
            assert row.audit_error == pytest.approx(recorded[row.cycle]["error_rate"])
            assert row.audit_low <= row.audit_error <= row.audit_high
    at = overview()
    charts = at.get("vega_lite_chart")
    assert len(charts) >= 2  # automation and backlog, the audited error too once audits came back
    assert "Over cycles" in [h.value for h in at.subheader]


def test_a_segment_whose_calibration_does_not_stand_is_flagged_at_the_top(sluice_home, tmp_path):
    """One routed cycle on 100 held-out labels: the gate (min_samples 50, ECE interval under 0.1) or the target's
    certification sends items to people; when it is the calibration, the overview says so and why."""
    from tests.flows.conftest import make_dataset, write_files
    from tests.flows.seeded import seed_and_route

    items, labels = write_files(tmp_path, make_dataset(600, seed=3))
    policy = "name: strict\ndefaults: {calibration: {min_samples: 500}}\n"  # more labels than the seed holds out
    engine, _ = seed_and_route(items, labels, policy_yaml=policy)
    flags = data.calibration_flags(engine)
    assert [(f.segment, f.reason) for f in flags] == [("default", "calibration_gate_failed")]
    assert flags[0].affected == flags[0].routed > 0
    at = overview()
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and warnings[0].startswith("**default**:") and "failed the gate" in warnings[0]
