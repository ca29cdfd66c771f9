"""The guarantee's rows: threshold evidence behind each certification and the live guard's halts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Connection, Engine, select

from store.bulk import insert_ignore
from store.models import GuardHalt, ThresholdEvidence

__all__ = ["guard_halts", "HaltRecord", "save_guard_halts", "write_threshold_evidence"]


class HaltRecord(NamedTuple):
    segment: str
    model_version: str
    last_decision_id: int
    e_value: float
    n_audited: int
    n_errors: int
    alpha: float
    delta: float
    created_at: datetime


def guard_halts(engine: Engine, *, model_versions: list[str] | None = None) -> list[HaltRecord]:
    """Every halt of a live guard (of the given models only, when named), newest first."""
    query = select(*(getattr(GuardHalt, f) for f in HaltRecord._fields)).order_by(GuardHalt.id.desc())
    if model_versions is not None:
        query = query.where(GuardHalt.model_version.in_(model_versions))
    with engine.connect() as conn:
        return [HaltRecord(*row) for row in conn.execute(query)]


def write_threshold_evidence(conn: Connection, evidence: dict[str, Any]) -> int:
    """Insert a certification's evidence row, in the caller's transaction (route writes it with the decisions that
    use it), unless the same one (model, segment, policy version, label set) is stored already; its id either
    way."""
    key = ("model_version", "segment", "policy_version", "label_fingerprint")
    insert_ignore(conn, ThresholdEvidence.__table__, [evidence])
    return cast(int, conn.execute(select(ThresholdEvidence.id).where(
        *(getattr(ThresholdEvidence, k) == evidence[k] for k in key))).scalar_one())


def save_guard_halts(engine: Engine, halts: list[dict[str, Any]]) -> None:
    """Store new halts of live guards; a halt of a (segment, model) stored already is left as it is."""
    if halts:
        with engine.begin() as conn:
            insert_ignore(conn, GuardHalt.__table__, halts)
