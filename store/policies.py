"""Policy versions: saving one (immutable, content-hashed) and reading the active one."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import Engine, select

from routing.policy import Policy
from store.bulk import insert_ignore
from store.events import record_event
from store.models import PolicyVersion, utcnow
from store.policy_changes import record_applied
from store.settings import PROJECT_ROOT

__all__ = ["active_policy", "DEFAULT_POLICY_PATH", "PolicyRecord", "save_policy", "stored_policy"]


DEFAULT_POLICY_PATH = PROJECT_ROOT / "policies" / "default.yaml"


class PolicyRecord(NamedTuple):
    """A stored policy version: the parsed policy and its provenance."""

    version: str
    name: str
    author: str
    comment: str
    created_at: datetime
    policy: Policy


def save_policy(
    engine: Engine, policy: Policy, *, author: str = "system", comment: str = "", activate: bool = True
) -> str:
    """Store `policy` as an immutable version (its content hash) and, by default, make it the active one."""
    version = policy.content_hash()
    with engine.begin() as conn:
        insert_ignore(conn, PolicyVersion.__table__, [{
            "version": version, "name": policy.name, "document": policy.to_yaml(), "author": author,
            "comment": comment, "active": False, "created_at": utcnow(),
        }])
        if activate:  # written into the policy's history like any applied change
            record_applied(conn, version, author=author, comment=comment)
    record_event(engine, "policy_saved", {"version": version, "activate": activate, "comment": comment}, actor=author)
    return version


def stored_policy(engine: Engine) -> PolicyRecord | None:
    """The newest policy version marked active, parsed; None when none is (a read: it writes nothing)."""
    query = (
        select(PolicyVersion)
        .where(PolicyVersion.active.is_(True))
        .order_by(PolicyVersion.created_at.desc(), PolicyVersion.version.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return PolicyRecord(row.version, row.name, row.author, row.comment, row.created_at,
                        Policy.from_stored(row.version, row.document))


def active_policy(engine: Engine, *, default: Path = DEFAULT_POLICY_PATH) -> tuple[Policy, str]:
    """The active policy and its version, for a flow about to act on it: the embedded default is saved and
    activated on first use."""
    record = stored_policy(engine)
    if record is None:
        policy = Policy.load(default)
        return policy, save_policy(engine, policy, comment="embedded default policy")
    return record.policy, record.version
