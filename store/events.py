"""The audit trail's events and the watermarks of incremental reads (what a pull has seen)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, insert, select, update

from store.models import AuditEvent, Watermark, utcnow

__all__ = ["get_watermark", "record_event", "set_watermark"]



def record_event(engine: Engine, kind: str, payload: dict[str, Any], *, actor: str = "system") -> None:
    with engine.begin() as conn:
        conn.execute(insert(AuditEvent).values(kind=kind, actor=actor, payload=payload, created_at=utcnow()))


def get_watermark(engine: Engine, name: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(Watermark.value).where(Watermark.name == name)).scalar()


def set_watermark(engine: Engine, name: str, value: str) -> None:
    with engine.begin() as conn:
        if conn.execute(select(Watermark.name).where(Watermark.name == name)).first() is None:
            conn.execute(insert(Watermark).values(name=name, value=value, updated_at=utcnow()))
        else:
            conn.execute(update(Watermark).where(Watermark.name == name).values(value=value, updated_at=utcnow()))
