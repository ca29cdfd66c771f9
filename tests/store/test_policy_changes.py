"""store.policy_changes: apply with a comment, a second person for regulated or high-stakes segments, rollback
as a new change, history; on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from routing.policy import Policy
from store.policy_changes import (
    PolicyChangeError,
    approve_change,
    pending_changes,
    policy_history,
    propose_change,
    reject_change,
    rollback,
)
from store.policies import active_policy, stored_policy
from store.vocab import ChangeKind, ChangeStatus, Role


def edited(policy: Policy, **changes) -> Policy:
    document = policy.model_dump(mode="json")
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = document
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return Policy.model_validate(document)


@pytest.fixture
def base(engine) -> Policy:
    policy, _ = active_policy(engine)  # the embedded default: finance is regulated and high stakes
    return policy


def test_a_plain_change_applies_at_once_with_its_author_and_comment(engine, base):
    new = edited(base, defaults__review_budget=80, segments__sport={"spot_check_rate": 0.2})
    # the defaults change reaches finance too (it inherits review_budget): that needs an approver
    assert propose_change(engine, new, author="ana", role=Role.OPERATOR, comment="more").status \
        is ChangeStatus.PENDING
    sport_only = edited(base, segments__sport={"spot_check_rate": 0.2})
    applied = propose_change(engine, sport_only, author="ana", role=Role.OPERATOR, comment="audit sport more")
    assert applied.status is ChangeStatus.APPLIED and applied.author == "ana"
    record = stored_policy(engine)
    assert record.version == sport_only.content_hash() == applied.version
    history = [c for c in policy_history(engine) if c.status is ChangeStatus.APPLIED]
    assert [c.comment for c in history] == ["audit sport more", "embedded default policy"]


def test_changes_need_a_comment_an_operator_and_a_difference(engine, base):
    new = edited(base, segments__sport={"spot_check_rate": 0.2})
    with pytest.raises(PolicyChangeError, match="comment"):
        propose_change(engine, new, author="ana", role=Role.OPERATOR, comment="  ")
    with pytest.raises(PolicyChangeError, match="viewer"):
        propose_change(engine, new, author="vic", role=Role.VIEWER, comment="why not")
    with pytest.raises(PolicyChangeError, match="active policy already"):
        propose_change(engine, base, author="ana", role=Role.OPERATOR, comment="same")


def test_a_regulated_segment_waits_for_a_second_person(engine, base):
    before = stored_policy(engine).version
    loosened = edited(base, segments__finance={"stakes": "low", "regulated": False, "mode": "on_the_loop"})
    pending = propose_change(engine, loosened, author="ana", role=Role.APPROVER, comment="finance is fine")
    assert pending.status is ChangeStatus.PENDING and pending.approval_segments == ["finance"]
    assert stored_policy(engine).version == before  # nothing applied yet
    with pytest.raises(PolicyChangeError, match="own"):
        approve_change(engine, pending.id, approver="ana", role=Role.APPROVER)
    with pytest.raises(PolicyChangeError, match="only approvers"):
        approve_change(engine, pending.id, approver="bo", role=Role.OPERATOR)
    approved = approve_change(engine, pending.id, approver="cy", role=Role.APPROVER, comment="checked")
    assert approved.status is ChangeStatus.APPLIED and approved.approver == "cy"
    assert stored_policy(engine).version == loosened.content_hash()
    assert pending_changes(engine) == []


def test_a_pending_change_over_a_stale_base_is_superseded_and_a_rejection_needs_a_reason(engine, base):
    risky = propose_change(engine, edited(base, segments__finance={"review_budget": 5}), author="ana",
                           role=Role.OPERATOR, comment="fewer finance reviews")
    other = propose_change(engine, edited(base, segments__sport={"review_budget": 9}), author="bo",
                           role=Role.OPERATOR, comment="sport budget")
    assert other.status is ChangeStatus.APPLIED
    with pytest.raises(PolicyChangeError, match="superseded"):
        approve_change(engine, risky.id, approver="cy", role=Role.APPROVER)
    assert stored_policy(engine).version == other.version
    again = propose_change(engine, edited(base, segments__finance={"review_budget": 5}), author="ana",
                           role=Role.OPERATOR, comment="fewer finance reviews, again")
    with pytest.raises(PolicyChangeError, match="comment"):
        reject_change(engine, again.id, approver="cy", role=Role.APPROVER, comment="")
    assert reject_change(engine, again.id, approver="cy", role=Role.APPROVER, comment="no").status \
        is ChangeStatus.REJECTED


def test_a_rollback_is_a_new_change_in_the_history(engine, base):
    first = stored_policy(engine).version
    changed = propose_change(engine, edited(base, segments__sport={"spot_check_rate": 0.3}), author="ana",
                             role=Role.OPERATOR, comment="try more audits")
    back = rollback(engine, first, author="bo", role=Role.OPERATOR, comment="back to the default")
    assert back.kind is ChangeKind.ROLLBACK and back.status is ChangeStatus.APPLIED
    assert back.version == first and back.base_version == changed.version and back.id > changed.id
    assert stored_policy(engine).version == first
    assert [c.kind for c in policy_history(engine)] == [ChangeKind.ROLLBACK, ChangeKind.EDIT, ChangeKind.EDIT]
