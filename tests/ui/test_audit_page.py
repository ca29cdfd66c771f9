"""The Audit page over a store routed by real flow runs: one item's decisions, versions, evidence and answers;
the filtered export holds exactly the decisions that match."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from store.vocab import Role
from ui.auth import SESSION_KEY, SignedIn
from store.decision_batches import full_decisions

DECISIONS = full_decisions()  # each decision with its batch's columns

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]
APP = str(Path(__file__).resolve().parents[2] / "ui" / "app.py")


@pytest.fixture
def routed(sluice_home, tmp_path):
    import streamlit as st

    from tests.flows.conftest import make_dataset, write_files
    from tests.flows.seeded import seed_and_route

    items, labels = write_files(tmp_path, make_dataset(600, seed=3))
    engine, _ = seed_and_route(items, labels)
    yield engine
    st.cache_data.clear()
    st.cache_resource.clear()


def audit_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state[SESSION_KEY] = SignedIn("aud", Role.VIEWER, "password")
    at.run().switch_page("views/audit.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_one_items_story_and_a_filtered_export(routed):
    from sqlalchemy import func, select

    from store.models import ReviewTask

    with routed.connect() as conn:
        task = conn.execute(select(ReviewTask.item_id, ReviewTask.selection_reason)).first()
        reviews = conn.execute(select(func.count()).select_from(DECISIONS)
                               .where(DECISIONS.c.route == "review")).scalar_one()
    at = audit_page()
    at.text_input(key="audit-item").input(task.item_id).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.markdown[0].value.startswith(f"**{task.item_id}**")
    decisions = at.dataframe[0].value
    assert len(decisions) >= 1 and {"policy_version", "model_version", "reasons"} <= set(decisions.columns)
    tasks = next(frame.value for frame in at.dataframe if "selection_reason" in frame.value.columns)
    assert list(tasks["selection_reason"]) == [task.selection_reason]

    at.text_input(key="audit-item").input("no-such-item").run()
    assert "No item `no-such-item`" in at.warning[0].value

    at.multiselect(key="audit-routes").select("review").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(c.value.startswith(f"{reviews:,} decisions match") for c in at.main.caption)
    button = at.get("download_button")[0]
    assert button.proto.label == f"Download {reviews:,} decisions"
