"""Policy page: edit a segment's routing rules with a preview, apply with a comment, approve, history, rollback.

Every change is made as the signed-in account (`ui.auth`): a viewer sees the page read-only; an operator applies
changes; a change touching a segment marked regulated or high stakes waits for an approver who is not its
author (`store.policy_changes`). The next route run uses whatever version is active.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st
from pydantic import ValidationError

from routing.policy import Policy, approval_segments, policy_diff
from routing.preview import SegmentPreview
from services.preview import preview_from
from store import policy_changes
from store.vocab import ChangeStatus, Role
from ui import auth, data, state
from ui.display import MISSING, percent

EMPTY_POLICY = "No active policy yet: run `sluice init` (or any flow) to activate the embedded default."
NEW_SEGMENT = "+ new segment"
MODES = ("on_the_loop", "in_the_loop")
STAKES = ("low", "medium", "high")
TARGET, FIXED = "target (certified threshold)", "fixed threshold (no guarantee)"
RULE_COLUMNS = ["field", "op", "value", "action", "code"]
HISTORY_ROWS = 25


def render() -> None:
    st.title("Policy")
    engine = state.engine()
    account = auth.current(engine)
    view = data.active_policy(engine)
    if view is None or account is None:
        st.info(EMPTY_POLICY)
        return
    st.markdown(f"Active: **{view.name}** · version `{view.version}` · by {view.author} · "
                f"{view.created_at:%Y-%m-%d %H:%M}" + (f"  \n_{view.comment}_" if view.comment else ""))
    if not account.may(Role.OPERATOR):
        st.info(f"You are signed in as a {account.role.value}: you can read the policy, its changes and history, "
                "but not change it.")
    _pending(account, view.policy)
    st.subheader("Edit a segment")
    edited = _editor(view.policy, view.version, editable=account.may(Role.OPERATOR))
    if edited is not None:
        _review_and_apply(account, view.policy, edited)
    _history(account, view.version)


def _editor(policy: Policy, version: str, *, editable: bool) -> Policy | None:
    """Widgets for one segment's rules, filled with its effective values; the edited policy, or None."""
    seen = set(state.segments_seen(state.database_url()))  # segments with items, in the policy or not
    choices = ["defaults", *sorted(set(policy.segments) | seen), NEW_SEGMENT]
    segment = st.selectbox("Segment", choices, key="policy-segment",
                           help="`defaults` apply to every segment that does not override them")
    if segment == NEW_SEGMENT:
        segment = st.text_input("New segment name", key="policy-new-segment").strip()
        if not segment:
            return None
    rules = policy.defaults if segment == "defaults" else policy.for_segment(segment)
    key = f"{version}-{segment}"  # fresh widgets for each active version and segment
    # one container per segment, named after it: a browser finds this segment's fields, never the last one's
    box = st.container(key=f"rules-{re.sub(r'[^A-Za-z0-9_-]', '_', segment)}")
    left, right = box.columns(2)
    changes: dict[str, Any] = {}
    with left:
        changes["mode"] = st.selectbox("Mode", MODES, index=MODES.index(rules.mode), key=f"{key}-mode",
                                       disabled=not editable,
                                       help="in_the_loop: a person approves every item; on_the_loop: people watch")
        changes["stakes"] = st.selectbox("Stakes", STAKES, index=STAKES.index(rules.stakes), key=f"{key}-stakes",
                                         disabled=not editable, help="high stakes always go to people")
        changes["regulated"] = st.checkbox("Regulated", value=rules.regulated, key=f"{key}-regulated",
                                           disabled=not editable, help="regulated outputs always go to people")
        kind = st.radio("Auto-accept by", (TARGET, FIXED), index=0 if rules.has_target else 1,
                        key=f"{key}-kind", disabled=not editable, horizontal=True)
        if kind == TARGET:
            changes["max_auto_error"] = st.number_input(
                "Max auto-accept error", min_value=0.001, max_value=0.5, value=rules.max_auto_error or 0.05,
                step=0.005, format="%.3f", key=f"{key}-max-error", disabled=not editable,
                help="the error among auto-accepted items is at most this, with the confidence below")
            changes["confidence"] = st.number_input(
                "Confidence", min_value=0.5, max_value=0.999, value=rules.confidence or 0.9, step=0.01,
                format="%.3f", key=f"{key}-confidence", disabled=not editable)
        else:
            changes["max_auto_error"] = changes["confidence"] = None
            changes["auto_accept_threshold"] = st.number_input(
                "Fixed threshold", min_value=0.01, max_value=1.0, value=rules.auto_accept_threshold, step=0.01,
                format="%.2f", key=f"{key}-threshold", disabled=not editable,
                help="auto-accept items whose calibrated confidence is at least this; carries no guarantee")
    with right:
        changes["spot_check_rate"] = st.number_input(
            "Spot-check rate", min_value=0.0, max_value=1.0, value=rules.spot_check_rate, step=0.01,
            format="%.3f", key=f"{key}-spot", disabled=not editable,
            help="share of auto-accepted items drawn for a random audit")
        changes["review_budget"] = int(st.number_input(
            "Label budget (per window)", min_value=0, value=rules.review_budget, step=5, key=f"{key}-budget",
            disabled=not editable,
            help=f"every human label asked for per {rules.budget_window_hours:g} h window: audits first (their "
                 "rate lowered to fit, never below the review floor), then escalations, then reviews with their "
                 "gold and overlap; the Models & cycles page shows how each cycle's labels split"))
        for field, label in (("blind_share", "Blind share"), ("gold_share", "Gold share"),
                             ("overlap_share", "Overlap share")):
            changes[field] = st.number_input(label, min_value=0.0, max_value=1.0, value=getattr(rules, field),
                                             step=0.05, format="%.2f", key=f"{key}-{field}", disabled=not editable)
    box.caption("Risk rules: items matching a rule escalate or go to review, whatever their confidence.")
    table = pd.DataFrame([rule.model_dump(mode="json") for rule in rules.risk_rules], columns=RULE_COLUMNS)
    table["value"] = table["value"].astype(str)
    rules_table = box.data_editor(table, num_rows="dynamic" if editable else "fixed", disabled=not editable,
                                 key=f"{key}-rules", hide_index=True, width="stretch",
                                 column_config={"op": st.column_config.SelectboxColumn(
                                     options=[">", ">=", "<", "<=", "==", "contains", "regex"]),
                                     "action": st.column_config.SelectboxColumn(options=["escalate", "review"])})
    changes["risk_rules"] = [_rule(row) for row in rules_table.to_dict("records") if row.get("field")]
    if not editable:
        return None
    try:
        return policy.with_segment_rules(segment, changes)
    except (ValidationError, ValueError) as error:
        st.error(f"Not a valid policy: {error}")
        return None


def _rule(row: dict[str, Any]) -> dict[str, Any]:
    """A risk rule from an edited row: numbers back to numbers for the numeric comparisons."""
    value: Any = row.get("value")
    if row.get("op") in (">", ">=", "<", "<=") and value not in (None, ""):
        try:
            value = float(value)
        except ValueError:
            pass  # the policy's validation names the rule
    return {**{k: row.get(k) for k in RULE_COLUMNS}, "value": value}


def _review_and_apply(account: auth.SignedIn, active: Policy, edited: Policy) -> None:
    changes = policy_diff(active, edited)
    if not changes:
        st.caption("No change from the active policy.")
        return
    st.subheader("Change")
    st.table(_diff_frame(changes), hide_index=True)
    _preview(active, edited, sorted({c.segment for c in changes} - {"policy"}))
    needs = approval_segments(active, edited)
    if needs:
        st.warning(f"This change touches {', '.join(needs)}, marked regulated or high stakes: it waits for an "
                   "approver other than you before it applies.")
    comment = st.text_area("Why (required)", key="policy-comment")
    label = "Submit for approval" if needs else "Apply"
    if st.button(label, key="policy-apply", type="primary", disabled=not comment.strip()):
        _change(lambda: policy_changes.propose_change(state.writer(), edited, author=account.username,
                                                      role=account.role, comment=comment),
                applied="Version `{version}` applied: the next route run uses it.",
                pending="Change {id} waits for an approver.")


def _preview(active: Policy, edited: Policy, segments: list[str]) -> None:
    """What the active and the edited rules would do, on held-out labels and the real arrival rate."""
    st.subheader("Preview")
    shown = [s for s in segments if s != "defaults"] or state.segments_seen(state.database_url())
    if not shown:
        st.info("No segment has items yet: `sluice ingest` and `sluice cycle` give the preview its data.")
        return
    url = state.database_url()
    rows, gaps, models = [], [], set()
    for segment in shown:
        inputs = state.preview_inputs(url, segment)
        before, after = preview_from(inputs, active), preview_from(inputs, edited)
        for name, preview in (("active", before), ("new", after)):
            rows.append({"segment": segment, "rules": name, **_preview_row(preview)})
        if after.reason:
            gaps.append(f"{segment}: {after.reason}")
        if inputs.model_version:
            models.add(inputs.model_version)
    st.table(pd.DataFrame(rows), hide_index=True)
    if models:
        st.caption(f"On the labels that may certify model {', '.join(sorted(models))} (held-out seed, audit and gold "
                   "labels, and the audits of its own decisions) and "
                   "each segment's arrivals over the last cycles. Not seen here: a failed calibration gate, a "
                   "live-guard halt and risk rules, which send items to people whatever this says.")
    for gap in gaps:
        st.caption(gap)


def _preview_row(preview: SegmentPreview) -> dict[str, str | int]:
    return {
        "threshold": MISSING if preview.threshold is None else f"{preview.threshold:.3f} ({preview.threshold_kind})",
        "automation": percent(preview.automation_rate),
        "expected error": percent(preview.expected_error),
        "error 95 %": (MISSING if math.isnan(preview.expected_error)
                       else f"{percent(preview.error_low)} – {percent(preview.error_high)}"),
        "reviews / day": MISSING if math.isnan(preview.review_per_day) else f"{preview.review_per_day:,.0f}",
        "reviewer hours / day": (MISSING if math.isnan(preview.reviewer_hours_per_day)
                                 else f"{preview.reviewer_hours_per_day:,.1f}"),
        "labels": preview.n_labels,
    }


def _diff_frame(changes: list) -> pd.DataFrame:
    return pd.DataFrame([{"segment": c.segment, "field": c.field, "active": _shown(c.old), "new": _shown(c.new)}
                         for c in changes])


def _shown(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return str(value)


def _pending(account: auth.SignedIn, active: Policy) -> None:
    notice = st.session_state.pop("policy-notice", None)
    if notice:
        st.success(notice)
    engine = state.engine()
    for change in policy_changes.pending_changes(engine):
        proposed = policy_changes.stored_version(engine, change.version)
        with st.container(border=True):
            st.markdown(f"**Pending change {change.id}** by {change.author}, {change.created_at:%Y-%m-%d %H:%M}: "
                        f"_{change.comment}_ — needs an approver for {', '.join(change.approval_segments)}")
            st.table(_diff_frame(policy_diff(active, proposed)), hide_index=True)
            if not account.may(Role.APPROVER) or account.username == change.author:
                st.caption("An approver other than its author decides on it.")
                continue
            note = st.text_input("Decision comment", key=f"decide-{change.id}-comment")
            approve, reject = st.columns(2)
            try:
                if approve.button("Approve and apply", key=f"approve-{change.id}", type="primary"):
                    policy_changes.approve_change(state.writer(), change.id, approver=account.username,
                                                  role=account.role, comment=note)
                    st.session_state["policy-notice"] = f"Change {change.id} approved and applied."
                    state.refresh()
                    st.rerun()
                if reject.button("Reject", key=f"reject-{change.id}"):
                    policy_changes.reject_change(state.writer(), change.id, approver=account.username,
                                                 role=account.role, comment=note)
                    st.session_state["policy-notice"] = f"Change {change.id} rejected."
                    st.rerun()
            except policy_changes.PolicyChangeError as error:
                st.error(str(error))


def _history(account: auth.SignedIn, active_version: str) -> None:
    st.subheader("History")
    history = policy_changes.policy_history(state.engine())
    if not history:
        st.caption("No changes yet.")
        return
    st.table(pd.DataFrame([{
        "change": c.id, "kind": c.kind.value, "version": c.version, "status": c.status.value, "by": c.author,
        "comment": c.comment, "approver": c.approver or "", "at": f"{(c.decided_at or c.created_at):%Y-%m-%d %H:%M}",
    } for c in history[:HISTORY_ROWS]]), hide_index=True)
    if len(history) > HISTORY_ROWS:
        st.caption(f"The {HISTORY_ROWS} newest of {len(history)} changes; `sluice audit export` has them all.")
    earlier = list(dict.fromkeys(c.version for c in history
                                 if c.status is ChangeStatus.APPLIED and c.version != active_version))
    if not earlier or not account.may(Role.OPERATOR):
        return
    with st.form("rollback"):
        version = st.selectbox("Roll back to version", earlier, key="rollback-version")
        comment = st.text_input("Why (required)", key="rollback-comment")
        if st.form_submit_button("Roll back"):
            _change(lambda: policy_changes.rollback(state.writer(), version, author=account.username,
                                                    role=account.role, comment=comment),
                    applied="Rolled back to `{version}` as change {id}.",
                    pending="Rollback {id} waits for an approver.")


def _change(make: Callable[[], policy_changes.ChangeRecord], *, applied: str, pending: str) -> None:
    """Make a policy change as the signed-in account; say what became of it on the next run, or why it failed."""
    try:
        change = make()
    except policy_changes.PolicyChangeError as error:
        st.error(str(error))
        return
    state.refresh()
    notice = applied if change.status is ChangeStatus.APPLIED else pending
    st.session_state["policy-notice"] = notice.format(version=change.version, id=change.id)
    st.rerun()


if __name__ == "__main__":  # Streamlit runs a page file as __main__; importing it runs nothing
    render()
