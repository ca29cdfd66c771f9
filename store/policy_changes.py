"""How the active policy changes: proposals, a second person's approval where the policy demands it, applying,
rolling back, and the history of it all.

Every applied change activates a stored, immutable policy version (its content hash) and is one row of the
history, with its author and required comment; a rollback is a new change that re-activates an older version,
so the history only grows. A change that alters the effective rules of a segment marked regulated or high stakes
(on either side: `routing.policy.approval_segments`) waits, pending, for an approver who is not its author; if
another change is applied over its base meanwhile, it is superseded and must be proposed again on the new base.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Connection, Engine, select, update

from routing.policy import Policy, approval_segments
from store.bulk import insert_ignore
from store.db import write_transaction
from store.models import AuditEvent, PolicyChange, PolicyVersion, as_utc, utcnow
from store.vocab import ChangeKind, ChangeStatus, Role

__all__ = ["ChangeRecord", "PolicyChangeError", "approve_change", "change", "pending_changes", "policy_history",
           "propose_change", "record_applied", "reject_change", "rollback", "stored_version"]


class PolicyChangeError(ValueError):
    """A change that cannot be made as asked: no comment, no change, a role that may not, the wrong approver."""


class ChangeRecord(NamedTuple):
    id: int
    kind: ChangeKind
    version: str
    base_version: str | None
    author: str
    comment: str
    status: ChangeStatus
    approval_segments: list[str]
    approver: str | None
    decision_comment: str | None
    created_at: datetime
    decided_at: datetime | None


def _record(row) -> ChangeRecord:
    return ChangeRecord(row.id, ChangeKind(row.kind), row.version, row.base_version, row.author, row.comment,
                        ChangeStatus(row.status), list(row.approval_segments or []), row.approver,
                        row.decision_comment, as_utc(row.created_at), as_utc(row.decided_at))


def _active_version(conn: Connection) -> str | None:
    table = PolicyVersion.__table__
    return conn.execute(select(table.c.version).where(table.c.active.is_(True))
                        .order_by(table.c.created_at.desc(), table.c.version.desc()).limit(1)).scalar()


def stored_version(engine: Engine, version: str) -> Policy:
    """The policy stored as `version`."""
    table = PolicyVersion.__table__
    with engine.connect() as conn:
        document = conn.execute(select(table.c.document).where(table.c.version == version)).scalar()
    if document is None:
        raise PolicyChangeError(f"no stored policy version {version!r}")
    return Policy.from_stored(version, document)


def _activate(conn: Connection, version: str) -> None:
    table = PolicyVersion.__table__
    conn.execute(update(table).values(active=False).where(table.c.version != version))
    conn.execute(update(table).values(active=True).where(table.c.version == version))


def _event(conn: Connection, kind: str, payload: dict, actor: str) -> None:
    conn.execute(AuditEvent.__table__.insert().values(kind=kind, actor=actor, payload=payload, created_at=utcnow()))


def record_applied(conn: Connection, version: str, *, author: str, comment: str,
                   kind: ChangeKind = ChangeKind.EDIT) -> None:
    """Activate a stored `version` and write it into the history as applied (the CLI's `policy set` and the
    embedded default's first activation go through here too). Activating the active version records nothing."""
    base = _active_version(conn)
    if base == version:
        return
    _activate(conn, version)
    now = utcnow()
    conn.execute(PolicyChange.__table__.insert().values(
        kind=kind.value, version=version, base_version=base, author=author, comment=comment,
        status=ChangeStatus.APPLIED.value, approval_segments=[], created_at=now, decided_at=now))


def propose_change(engine: Engine, policy: Policy, *, author: str, role: Role, comment: str,
                   kind: ChangeKind = ChangeKind.EDIT) -> ChangeRecord:
    """Save `policy` as a version and apply it, or leave it pending when it touches a regulated or high-stakes
    segment (then an approver other than `author` must approve it)."""
    if not role.allows(Role.OPERATOR):
        raise PolicyChangeError(f"{author} is a {role.value}: only operators and approvers change the policy")
    if not comment.strip():
        raise PolicyChangeError("a policy change needs a comment saying why")
    version = policy.content_hash()
    with write_transaction(engine) as conn:
        base = _active_version(conn)
        if base == version:
            raise PolicyChangeError(f"version {version} is the active policy already: nothing to change")
        old_document = None if base is None else conn.execute(
            select(PolicyVersion.__table__.c.document).where(PolicyVersion.__table__.c.version == base)).scalar()
        old = None if base is None or old_document is None else Policy.from_stored(base, old_document)
        needs = approval_segments(old, policy)
        insert_ignore(conn, PolicyVersion.__table__, [{
            "version": version, "name": policy.name, "document": policy.to_yaml(), "author": author,
            "comment": comment, "active": False, "created_at": utcnow()}])
        status = ChangeStatus.PENDING if needs else ChangeStatus.APPLIED
        now = utcnow()
        inserted = conn.execute(PolicyChange.__table__.insert().values(
            kind=kind.value, version=version, base_version=base, author=author, comment=comment,
            status=status.value, approval_segments=needs, created_at=now,
            decided_at=None if needs else now)).inserted_primary_key
        assert inserted is not None  # a single-row insert reports its key
        change_id = inserted[0]
        if not needs:
            _activate(conn, version)
        _event(conn, f"policy_{kind.value}_{status.value}",
               {"change": change_id, "version": version, "base": base, "approval_segments": needs,
                "comment": comment}, author)
    return change(engine, change_id)


def rollback(engine: Engine, version: str, *, author: str, role: Role, comment: str) -> ChangeRecord:
    """Re-activate a stored older version as a new change (approval rules as for any change)."""
    return propose_change(engine, stored_version(engine, version), author=author, role=role, comment=comment,
                          kind=ChangeKind.ROLLBACK)


def change(engine: Engine, change_id: int) -> ChangeRecord:
    table = PolicyChange.__table__
    with engine.connect() as conn:
        row = conn.execute(select(table).where(table.c.id == change_id)).first()
    if row is None:
        raise PolicyChangeError(f"no policy change {change_id}")
    return _record(row)


def _decide(engine: Engine, change_id: int, *, approver: str, role: Role, comment: str, approve: bool) -> ChangeRecord:
    if not role.allows(Role.APPROVER):
        raise PolicyChangeError(f"{approver} is a{'n' if role is Role.OPERATOR else ''} {role.value}: only "
                                "approvers decide on changes to regulated or high-stakes segments")
    table = PolicyChange.__table__
    with write_transaction(engine) as conn:
        row = conn.execute(select(table).where(table.c.id == change_id)).first()
        if row is None:
            raise PolicyChangeError(f"no policy change {change_id}")
        if row.status != ChangeStatus.PENDING:
            raise PolicyChangeError(f"change {change_id} is {row.status}, not pending")
        if row.author == approver:
            raise PolicyChangeError(f"change {change_id} is {approver}'s own: a second person must approve it")
        status = ChangeStatus.REJECTED
        if approve:
            status = ChangeStatus.APPLIED if _active_version(conn) == row.base_version else ChangeStatus.SUPERSEDED
        conn.execute(update(table).where(table.c.id == change_id).values(
            status=status.value, approver=approver, decision_comment=comment, decided_at=utcnow()))
        if status is ChangeStatus.APPLIED:
            _activate(conn, row.version)
        _event(conn, f"policy_change_{status.value}", {"change": change_id, "version": row.version,
                                                       "comment": comment}, approver)
    decided = change(engine, change_id)
    if approve and decided.status is ChangeStatus.SUPERSEDED:
        raise PolicyChangeError(f"change {change_id} was made on version {row.base_version}, but another change "
                                "was applied since: it is superseded; propose it again on the active policy")
    return decided


def approve_change(engine: Engine, change_id: int, *, approver: str, role: Role, comment: str = "") -> ChangeRecord:
    """Apply a pending change as its second person (an approver who is not its author)."""
    return _decide(engine, change_id, approver=approver, role=role, comment=comment, approve=True)


def reject_change(engine: Engine, change_id: int, *, approver: str, role: Role, comment: str) -> ChangeRecord:
    if not comment.strip():
        raise PolicyChangeError("a rejection needs a comment saying why")
    return _decide(engine, change_id, approver=approver, role=role, comment=comment, approve=False)


def _changes(engine: Engine, *statuses: ChangeStatus) -> list[ChangeRecord]:
    table = PolicyChange.__table__
    query = select(table).order_by(table.c.id.desc())
    if statuses:
        query = query.where(table.c.status.in_([s.value for s in statuses]))
    with engine.connect() as conn:
        return [_record(row) for row in conn.execute(query).all()]


def policy_history(engine: Engine) -> list[ChangeRecord]:
    """Every change, newest first: the applied ones are the policy's history."""
    return _changes(engine)


def pending_changes(engine: Engine) -> list[ChangeRecord]:
    return _changes(engine, ChangeStatus.PENDING)
