"""The audit trail as a file: routing decisions with the versions and evidence behind each, including the
certification (labels, test, bound) behind every derived threshold."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Engine

from store.audit import write_trail
from store.decisions import decision_trail


def parse_since(since: str | None) -> datetime | None:
    if since is None:
        return None
    try:
        moment = datetime.fromisoformat(since)
    except ValueError:
        raise ValueError(f"--since must be an ISO date or time such as 2026-11-01 or 2026-11-01T12:00, got {since!r}")
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def export_decisions(engine: Engine, out: Path, *, since: str | None = None) -> int:
    """Write decisions made at or after `since` as JSONL or CSV (by the file's suffix); returns the count."""
    suffix = out.suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        raise ValueError(f"audit export writes .jsonl or .csv, got {out.name!r}")
    moment = parse_since(since)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        return write_trail(decision_trail(engine, since=moment), handle, fmt=suffix.lstrip("."))
