"""The console's sign-in and Policy page under AppTest: every page needs an account, a viewer only reads, an
operator applies with a comment, regulated segments wait for a second person, rollback, and the next real route
run uses the version the console applied."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from store.accounts import add_account
from store.policy_changes import policy_history
from store.policies import active_policy, stored_policy
from store.vocab import ChangeStatus, Role
from ui.auth import NO_ACCOUNTS, SESSION_KEY, SignedIn
from store.decision_batches import full_decisions

DECISIONS = full_decisions()  # each decision with its batch's columns

APP = str(Path(__file__).resolve().parents[2] / "ui" / "app.py")
PASSWORD = "a long passphrase"


@pytest.fixture(autouse=True)
def streamlit_caches():
    import streamlit as st

    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def store(empty_engine):
    active_policy(empty_engine)  # the embedded default, as `sluice init` activates it
    for name, role in (("ana", "operator"), ("cy", "approver"), ("vic", "viewer")):
        add_account(empty_engine, name, role=role, password=PASSWORD)
    return empty_engine


def app(as_user: str | None = None, role: Role = Role.OPERATOR) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if as_user is not None:
        at.session_state[SESSION_KEY] = SignedIn(as_user, role, "password")
    return at.run()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def sign_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="sign-in-username").input(name)
    at.text_input(key="sign-in-password").input(password)
    return ok(at.button[0].click().run())


def policy_page(at: AppTest) -> AppTest:
    return ok(at.switch_page("views/policy.py").run())


def number(at: AppTest, label: str):
    return next(widget for widget in at.number_input if widget.label == label)


def test_every_page_needs_a_signed_in_account(store):
    at = ok(app())
    assert [t.value for t in at.title] == ["Sign in to Sluice"]
    with pytest.raises(ValueError, match=r"Known pages: \['Sign in'\]"):  # no page exists behind the gate
        at.switch_page("views/policy.py")
    sign_in(at, "ana", "wrong password!")
    assert [e.value for e in at.error] == ["Wrong account name or password."]
    sign_in(at, "ana", PASSWORD)
    assert [t.value for t in at.title] == ["Overview"]
    assert any("Signed in as **ana** (operator)" in c.value for c in at.sidebar.caption)


def test_without_accounts_the_sign_in_page_says_how_to_create_one(empty_engine):
    at = ok(app())
    assert [i.value for i in at.info] == [NO_ACCOUNTS]


def test_repeated_wrong_passwords_pause_the_form(store):
    at = ok(app())
    for _ in range(5):
        sign_in(at, "ana", "not the password")
    sign_in(at, "ana", PASSWORD)  # even the right one waits now
    assert "Too many wrong passwords" in at.error[0].value and [t.value for t in at.title] == ["Sign in to Sluice"]


def test_a_viewer_reads_the_policy_but_cannot_change_it(store):
    at = policy_page(app("vic", Role.VIEWER))
    assert "signed in as a viewer" in at.info[0].value
    assert all(widget.disabled for widget in at.number_input)
    assert not [b for b in at.button if b.key == "policy-apply"]
    assert not at.get("form")  # no rollback either


def test_an_operator_applies_a_change_with_a_comment_and_history_records_it(store):
    at = policy_page(app("ana"))
    at.selectbox(key="policy-segment").set_value("+ new segment").run()
    at.text_input(key="policy-new-segment").input("sport").run()
    number(at, "Label budget (per window)").set_value(20).run()
    ok(at)
    diff = at.table[0].value  # the change table, above the history
    assert diff.to_dict("records") == [{"segment": "sport", "field": "review_budget", "active": "50", "new": "20"}]
    apply = at.button(key="policy-apply")
    assert apply.disabled  # no comment yet
    at.text_area(key="policy-comment").input("sport needs fewer reviews").run()
    ok(at.button(key="policy-apply").click().run())
    record = stored_policy(store)
    assert record.policy.for_segment("sport").review_budget == 20
    latest = policy_history(store)[0]
    assert (latest.author, latest.comment, latest.status) == ("ana", "sport needs fewer reviews",
                                                              ChangeStatus.APPLIED)
    assert "applied: the next route run uses it" in at.success[0].value
    assert at.table[-1].value.iloc[0]["by"] == "ana"  # the history table


def test_a_regulated_segment_waits_for_an_approver_and_rollback_is_a_new_change(store):
    first = stored_policy(store).version
    at = policy_page(app("ana"))
    at.selectbox(key="policy-segment").set_value("finance").run()
    number(at, "Spot-check rate").set_value(0.2).run()
    assert "finance" in at.warning[0].value
    at.text_area(key="policy-comment").input("audit finance more").run()
    ok(at.button(key="policy-apply").click().run())
    assert stored_policy(store).version == first  # pending
    pending = policy_history(store)[0]
    assert pending.status is ChangeStatus.PENDING
    own = policy_page(app("ana", Role.APPROVER))
    assert not [b for b in own.button if b.key == f"approve-{pending.id}"]  # not by its author
    approver = policy_page(app("cy", Role.APPROVER))
    approver.text_input(key=f"decide-{pending.id}-comment").input("fine")
    ok(approver.button(key=f"approve-{pending.id}").click().run())
    assert stored_policy(store).version == pending.version
    assert policy_history(store)[0].approver == "cy"
    approver.selectbox(key="rollback-version").set_value(first)
    approver.text_input(key="rollback-comment").input("back to the default")
    submit = [b for b in approver.button if b.label == "Roll back"][0]
    ok(submit.click().run())
    # the rollback changes finance back: an approver other than cy must approve it
    back = policy_history(store)[0]
    assert back.kind.value == "rollback" and back.status is ChangeStatus.PENDING and back.author == "cy"


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_the_next_route_run_uses_the_version_the_console_applied(sluice_home, tmp_path):
    """Real flow runs before and after: a store routed once, a change applied in the console, new items scored
    and routed by the real flows carry the new version and follow it."""
    from sqlalchemy import select

    from flows.common import engine_for
    from flows.ingest import ingest_flow
    from flows.route import route_flow
    from flows.score import score_flow
    from tests.flows.conftest import make_dataset, write_files
    from tests.flows.seeded import seed_and_route

    items, labels = write_files(tmp_path, make_dataset(600, seed=3))
    engine, _ = seed_and_route(items, labels)
    add_account(engine, "ana", role="operator", password=PASSWORD)
    before = stored_policy(engine).version
    at = policy_page(app("ana"))
    at.selectbox(key="policy-segment").set_value("+ new segment").run()
    at.text_input(key="policy-new-segment").input("default").run()
    number(at, "Spot-check rate").set_value(0.5).run()
    at.text_area(key="policy-comment").input("audit half of what is auto-accepted").run()
    ok(at.button(key="policy-apply").click().run())
    after = stored_policy(engine).version
    assert after != before and stored_policy(engine).policy.for_segment("default").spot_check_rate == 0.5

    later = tmp_path / "later"
    later.mkdir()
    new_items, _ = write_files(later, make_dataset(150, seed=11))
    ingest_flow(str(new_items))
    score_flow()
    route_flow(cycle=2)
    new_ids = [line.split('"')[3] for line in new_items.read_text().splitlines()]
    with engine_for(None).connect() as conn:
        versions = set(conn.execute(select(DECISIONS.c.policy_version)
                                    .where(DECISIONS.c.item_id.in_(new_ids))).scalars())
    assert versions == {after}
