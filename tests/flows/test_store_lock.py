"""One flow at a time on a store: Prefect's global concurrency limit, held by a cycle and inherited by its steps."""

from __future__ import annotations

import threading

import pytest

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


def test_the_lock_is_per_store_reentrant_and_hides_the_password():
    from flows.common import store_lock_name

    a = store_lock_name("postgresql+psycopg://u:secret@127.0.0.1:5432/a")
    assert a == store_lock_name("postgresql+psycopg://u:other@127.0.0.1:5432/a")  # the password is not in it
    assert a != store_lock_name("postgresql+psycopg://u:secret@127.0.0.1:5432/b")
    assert "secret" not in a and len(a) <= 40


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
