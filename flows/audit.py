"""The audit trail as a file: routing decisions with the versions and evidence behind each, including the
certification (labels, test, bound) behind every derived threshold."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Engine, select

from store.models import RoutingDecision, ThresholdEvidence

FIELDS = ("id", "item_id", "segment", "route", "reasons", "policy_version", "model_version", "calibration_id",
          "threshold", "raw_confidence", "calibrated_confidence", "predicted_label", "inclusion_probability",
          "cycle", "supersedes_id", "created_at", "evidence_id")
# The certification behind a derived threshold, beside each decision it applied to (empty for fixed thresholds).
EVIDENCE_FIELDS = ("scale", "calibrated_threshold", "n", "n_accepted", "n_errors", "coverage", "error_upper_bound",
                   "alpha", "delta", "tested", "pool", "label_fingerprint")
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
    query = (
        select(*(getattr(RoutingDecision, f) for f in FIELDS), *(getattr(ThresholdEvidence, f) for f in EVIDENCE_FIELDS))
        .outerjoin(ThresholdEvidence, ThresholdEvidence.id == RoutingDecision.evidence_id)
        .order_by(RoutingDecision.id)
    )
    moment = parse_since(since)
    if moment is not None:
        query = query.where(RoutingDecision.created_at >= moment)
    out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with engine.connect() as conn, out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle) if suffix == ".csv" else None
        if writer:
            writer.writerow(COLUMNS)
        for row in conn.execute(query):
            record = dict(zip(COLUMNS, row))
            if writer:
                writer.writerow([json.dumps(v) if isinstance(v, list) else v for v in record.values()])
            else:
                handle.write(json.dumps(record, default=str) + "\n")
            count += 1
    return count
