"""How long a SQLite store takes to upgrade from revision 0015 to the newest schema, each revision timed: 0016 moves
each decision's per-batch constants into batch rows and 0017 stores each item's source path once, both rebuilding a
table; 0018 changes nothing on SQLite; 0019 moves each item's state into a row of its own, rebuilding the items;
0020 drops a trigger; 0021 points each state row at its item's newest decision and drops the decisions' unique key
and route index, rebuilding the decisions.

A store is built at 0015 with `--n` routed items (50 segments, one source file per 50,000 items) and one decision
each (one route run per 100,000 items), written in raw `sqlite3` (not timed); then the upgrade runs through
Alembic as `store.db.get_engine` runs it, and is timed.

    .venv/bin/python bench/bench_upgrade.py [--n 1000000]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from alembic import command  # noqa: E402

from store import db  # noqa: E402

SEGMENTS = 50
ITEMS_PER_FILE = 50_000
ITEMS_PER_RUN = 100_000


def build_store_at_0015(path: Path, n: int) -> str:
    url = f"sqlite:///{path}"
    command.upgrade(db._alembic_config(url), "0015")
    now = datetime(2026, 12, 1, tzinfo=timezone.utc).isoformat(sep=" ")
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO policy_versions (version, name, document, author, comment, active, created_at) "
                     "VALUES ('p1', 'p', '', 'ops', '', 1, ?)", (now,))
        conn.executemany(
            "INSERT INTO items (id, segment, text, state, source, kind, received_at, updated_at) "
            "VALUES (?, ?, 'some text', 'routed', ?, 'classification', ?, ?)",
            ((f"i{i:07d}", f"s{i % SEGMENTS}", f"/data/batch-{i // ITEMS_PER_FILE}.jsonl", now, now)
             for i in range(n)))
        conn.executemany(
            "INSERT INTO routing_decisions (item_id, segment, route, reasons, policy_version, model_version, "
            "threshold, raw_confidence, calibrated_confidence, predicted_label, inclusion_probability, cycle, "
            "created_at, audit_rate) VALUES (?, ?, 'review', '[]', 'p1', 'm1', 0.9, 0.8, 0.8, 'a', 0.1, ?, ?, 0.05)",
            ((f"i{i:07d}", f"s{i % SEGMENTS}", 1 + i // ITEMS_PER_RUN, now) for i in range(n)))
    conn.close()
    return url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="routed items (and decisions) in the store")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sluice-upgrade-") as folder:
        url = build_store_at_0015(Path(folder) / "sluice.db", args.n)
        config = db._alembic_config(url)
        steps: dict[str, float] = {}
        for revision in REVISIONS:  # one at a time, each timed
            start = time.perf_counter()
            command.upgrade(config, revision)
            steps[revision] = time.perf_counter() - start
        conn = sqlite3.connect(Path(folder) / "sluice.db")
        batches, sources, states = (conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                                    for t in ("routing_batches", "item_sources", "item_states"))
        pointing = conn.execute("SELECT count(*) FROM item_states WHERE decision_id IS NOT NULL").fetchone()[0]
        unlinked = conn.execute("SELECT count(*) FROM items WHERE source_id IS NULL").fetchone()[0]
        conn.close()
    print(f"{args.n:,} items and decisions: 0015 -> head took {sum(steps.values()):.1f} s ("
          + ", ".join(f"{r} {s:.1f} s" for r, s in steps.items())
          + f"; {batches:,} batch rows, {sources:,} source rows, {unlinked:,} items without a source, "
          f"{states:,} state rows, {pointing:,} pointing at their decision)")


# every revision after 0015, in order; the last is the head
REVISIONS = ("0016", "0017", "0018", "0019", "0020", "0021")


if __name__ == "__main__":
    main()
