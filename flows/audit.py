"""The audit trail as a file: routing decisions with the versions and evidence behind each, including the
certification (labels, test, bound) behind every derived threshold."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Engine

from store.repo import DECISION_FIELDS as FIELDS
from store.repo import EVIDENCE_FIELDS, decision_trail

COLUMNS = FIELDS + tuple(f"evidence_{f}" for f in EVIDENCE_FIELDS)


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
    count = 0
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle) if suffix == ".csv" else None
        if writer:
            writer.writerow(COLUMNS)
        for record in decision_trail(engine, since=moment):
            if writer:
                writer.writerow([json.dumps(v) if isinstance(v, list) else v for v in record.values()])
            else:
                handle.write(json.dumps(record, default=str) + "\n")
            count += 1
    return count
