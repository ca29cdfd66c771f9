"""The floor under ingest + route: the rows the two steps must write, written in raw `sqlite3` with no ORM, Prefect
or logic, against the same reference `bench_ingest_route.py` uses (parse + executemany of the items).

Three writes, each timed on its own into a SQLite file in WAL mode, with the schema's indexes:

* the item rows (what the reference writes, into Sluice's `items` table with its `(state, segment)` index);
* one decision row per item, with the columns and indexes `routing_decisions` has (the unique
  `(item_id, policy_version, model_version)` and the route index), in one executemany;
* each item's move from `scored` to `routed`, one `UPDATE` per item in one executemany.

    .venv/bin/python bench/bench_write_floor.py [--n 200000] [--repeat 3] [--words 3]

The sum is what ingest + route cost before any read, decision or orchestration: the part of
`bench_ingest_route.py`'s ratio no tuning of the steps can remove while a decision row and an item state are
written per item. ``earlier`` is the schema before migrations 0016 and 0019; the same three writes are timed a
second time under the slimmer design (``slim``) those migrations brought: items written once with their state in a
narrow table, decisions keyed by an integer batch row that holds the per-batch constants. ``store`` is today's
schema itself, migrated by `store.db.migrate`, written and read with the statements the flows run
(`store_floor_writes`): the floor under `bench_ingest_route.py` as the code now stands.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import configure_home, median, print_table, timed  # noqa: E402
from bench_ingest_route import items_file, reference_insert, write_items  # noqa: E402

ITEMS = ("CREATE TABLE items (id VARCHAR(512) PRIMARY KEY, segment VARCHAR(128) NOT NULL, text VARCHAR, "
         "upstream_prediction VARCHAR, upstream_confidence FLOAT, state VARCHAR(32) NOT NULL, source VARCHAR, "
         "received_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, kind VARCHAR(16) NOT NULL)",
         "CREATE INDEX ix_items_state_segment ON items (state, segment)")
DECISIONS = ("CREATE TABLE routing_decisions (id INTEGER PRIMARY KEY, item_id VARCHAR(512) NOT NULL, "
             "segment VARCHAR(128) NOT NULL, route VARCHAR(16) NOT NULL, reasons JSON, policy_version VARCHAR(64) "
             "NOT NULL, model_version VARCHAR(64) NOT NULL, calibration_id INTEGER, threshold FLOAT, raw_confidence "
             "FLOAT, calibrated_confidence FLOAT, predicted_label VARCHAR, inclusion_probability FLOAT, cycle "
             "INTEGER, supersedes_id INTEGER, created_at DATETIME NOT NULL, audit_rate FLOAT, evidence_id INTEGER, "
             "CONSTRAINT uq_decision_item_versions UNIQUE (item_id, policy_version, model_version))",
             "CREATE INDEX ix_decisions_route ON routing_decisions (route)")
NOW = "2026-12-05 12:00:00.000000"
POLICY_VERSION = "f" * 64  # a policy version is a content hash


def fresh_database(database: Path, schema: tuple[str, ...]) -> sqlite3.Connection:
    """A new SQLite file in WAL mode holding `schema`."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(database)
    conn.execute("PRAGMA journal_mode=WAL")
    for statement in schema:
        conn.execute(statement)
    conn.commit()
    return conn


def floor_writes(path: Path, database: Path) -> dict[str, float]:
    """Seconds for each of the three writes of the items in `path`, into a fresh database."""
    conn = fresh_database(database, ITEMS + DECISIONS)

    def items() -> int:
        with path.open("rb") as lines:
            rows = ((r["id"], r["segment"], r["text"], r["prediction"], r["confidence"], "scored", str(path), NOW,
                     NOW, "classification") for r in map(json.loads, lines))
            with conn:
                conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", rows)
        return conn.execute("SELECT count(*) FROM items").fetchone()[0]

    seconds = {"items": timed(items)[0]}
    stored = conn.execute("SELECT id, segment, upstream_prediction, upstream_confidence FROM items").fetchall()

    def decisions() -> None:
        rows = ((item_id, segment, "review", '["below_threshold"]', POLICY_VERSION, "upstream", None, 0.93,
                 confidence, confidence, label, None, 1, None, NOW, 0.05, None)
                for item_id, segment, label, confidence in stored)
        with conn:
            conn.executemany(
                "INSERT INTO routing_decisions (item_id, segment, route, reasons, policy_version, model_version, "
                "calibration_id, threshold, raw_confidence, calibrated_confidence, predicted_label, "
                "inclusion_probability, cycle, supersedes_id, created_at, audit_rate, evidence_id) VALUES "
                f"({', '.join('?' * 17)}) ON CONFLICT DO NOTHING", rows)

    def states() -> None:
        with conn:
            conn.executemany("UPDATE items SET state = 'routed', updated_at = ? WHERE id = ? AND state = 'scored'",
                             ((NOW, item_id) for item_id, *_ in stored))

    seconds["decisions"] = timed(decisions)[0]
    seconds["states"] = timed(states)[0]
    conn.close()
    return seconds


SLIM_ITEMS = ("CREATE TABLE items (id VARCHAR(512) PRIMARY KEY, segment VARCHAR(128) NOT NULL, text VARCHAR, "
              "upstream_prediction VARCHAR, upstream_confidence FLOAT, source_id INTEGER, received_at DATETIME NOT "
              "NULL, kind VARCHAR(16) NOT NULL)",
              "CREATE TABLE item_states (item_id VARCHAR(512) PRIMARY KEY, segment VARCHAR(128) NOT NULL, "
              "state VARCHAR(32) NOT NULL, updated_at DATETIME NOT NULL)",
              "CREATE INDEX ix_item_states_state_segment ON item_states (state, segment)")
SLIM_DECISIONS = ("CREATE TABLE route_batches (id INTEGER PRIMARY KEY, segment VARCHAR(128), policy_version "
                  "VARCHAR(64), model_version VARCHAR(64), calibration_id INTEGER, cycle INTEGER, audit_rate FLOAT, "
                  "created_at DATETIME)",
                  "CREATE TABLE routing_decisions (id INTEGER PRIMARY KEY, item_id VARCHAR(512) NOT NULL, batch_id "
                  "INTEGER NOT NULL, route VARCHAR(16) NOT NULL, reasons JSON, threshold FLOAT, raw_confidence FLOAT, "
                  "calibrated_confidence FLOAT, predicted_label VARCHAR, inclusion_probability FLOAT, supersedes_id "
                  "INTEGER, evidence_id INTEGER, CONSTRAINT uq_decision_item_batch UNIQUE (item_id, batch_id))",
                  "CREATE INDEX ix_decisions_route ON routing_decisions (route)")


def slim_floor_writes(path: Path, database: Path) -> dict[str, float]:
    """The same three writes under the design issue 23 asks for: the source stored once, per-batch constants in a
    batch row (decisions keyed by an integer), the state in a narrow table (the item row written once)."""
    conn = fresh_database(database, SLIM_ITEMS + SLIM_DECISIONS)

    def items() -> None:
        with path.open("rb") as lines:
            records = [(r["id"], r["segment"], r["text"], r["prediction"], r["confidence"])
                       for r in map(json.loads, lines)]
        with conn:
            conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, 1, ?, 'classification') ON CONFLICT DO NOTHING",
                             ((*r, NOW) for r in records))
            conn.executemany("INSERT INTO item_states VALUES (?, ?, 'scored', ?) ON CONFLICT DO NOTHING",
                             ((r[0], r[1], NOW) for r in records))

    seconds = {"items": timed(items)[0]}
    stored = conn.execute("SELECT id, segment, upstream_prediction, upstream_confidence FROM items").fetchall()

    def decisions() -> None:
        with conn:
            batch = conn.execute("INSERT INTO route_batches (segment, policy_version, model_version, cycle, "
                                 "audit_rate, created_at) VALUES ('s', ?, 'upstream', 1, 0.05, ?)",
                                 (POLICY_VERSION, NOW)).lastrowid
            conn.executemany(
                "INSERT INTO routing_decisions (item_id, batch_id, route, reasons, threshold, raw_confidence, "
                "calibrated_confidence, predicted_label, inclusion_probability, supersedes_id, evidence_id) VALUES "
                f"({', '.join('?' * 11)}) ON CONFLICT DO NOTHING",
                ((item_id, batch, "review", '["below_threshold"]', 0.93, confidence, confidence, label, None, None,
                  None) for item_id, _, label, confidence in stored))

    def states() -> None:
        with conn:
            conn.executemany("UPDATE item_states SET state = 'routed', updated_at = ? WHERE item_id = ? AND "
                             "state = 'scored'", ((NOW, item_id) for item_id, *_ in stored))

    seconds["decisions"] = timed(decisions)[0]
    seconds["states"] = timed(states)[0]
    conn.close()
    return seconds


def store_floor_writes(path: Path, database: Path) -> dict[str, float]:
    """Today's writes and route's one read, on a store migrated by `store.db.migrate` (its tables, indexes and
    foreign keys) and opened with the store's pragmas (`store.db.sqlite_pragmas`), with the statements the flows run
    and their transactions, but no Python between them:

    * ingest: each chunk of `store.ingest.CHUNK_SIZE` items inserted, and given their state rows by one
      ``INSERT ... SELECT`` over the new rowids (``store.transitions.born_states``), one transaction a chunk;
    * route, one transaction a segment (a route batch never splits one): the segment's scored items read with what
      route decides on (``store.decisions.read_scored_groups``), a batch row and a decision per item written, and
      the items moved by one ``UPDATE ... FROM`` joining the new decisions (``store.decision_batches``)."""
    from store.db import migrate, sqlite_pragmas
    from store.ingest import CHUNK_SIZE

    template = database.with_name("floor-store-template.db")
    if not template.exists():
        migrate(f"sqlite:///{template}")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    database.write_bytes(template.read_bytes())
    conn = sqlite3.connect(database, isolation_level=None)
    sqlite_pragmas(conn)
    conn.execute("INSERT INTO item_sources (id, path, fingerprint, created_at) VALUES (1, ?, 'f', ?)", (str(path), NOW))
    conn.execute("INSERT INTO policy_versions (version, name, document, author, comment, active, created_at) "
                 "VALUES (?, 'floor', '{}', 'bench', '', 1, ?)", (POLICY_VERSION, NOW))

    def items() -> None:
        with path.open("rb") as lines:
            rows = [(r["id"], r["segment"], r["text"], r["prediction"], r["confidence"], NOW)
                    for r in map(json.loads, lines)]
        for start in range(0, len(rows), CHUNK_SIZE):
            conn.execute("BEGIN IMMEDIATE")
            last = conn.execute("SELECT coalesce(max(rowid), 0) FROM items").fetchone()[0]
            conn.executemany(
                "INSERT INTO items (id, segment, text, upstream_prediction, upstream_confidence, received_at, kind, "
                "source_id) VALUES (?, ?, ?, ?, ?, ?, 'classification', 1) ON CONFLICT DO NOTHING",
                rows[start:start + CHUNK_SIZE])
            conn.execute("INSERT INTO item_states (item_id, state, segment, updated_at) SELECT id, 'scored', segment, "
                         "received_at FROM items WHERE rowid > ?", (last,))
            conn.execute("COMMIT")

    seconds = {"items": timed(items)[0]}
    segments = [row[0] for row in conn.execute("SELECT DISTINCT segment FROM item_states ORDER BY segment")]
    seconds.update(read=0.0, decisions=0.0, states=0.0)
    for segment in segments:
        conn.execute("BEGIN IMMEDIATE")
        read, stored = timed(lambda: conn.execute(
            "SELECT s.segment, s.item_id, i.upstream_confidence, i.upstream_prediction, i.kind, i.text, i.metadata, "
            "i.features FROM item_states s JOIN items i ON i.id = s.item_id WHERE s.state = 'scored' AND "
            "s.segment = ? ORDER BY s.segment, s.item_id", (segment,)).fetchall())

        def decide_rows() -> tuple[int, int]:
            batch = conn.execute("INSERT INTO routing_batches (segment, policy_version, model_version, cycle, "
                                 "audit_rate, created_at) VALUES (?, ?, 'upstream', 1, 0.05, ?)",
                                 (segment, POLICY_VERSION, NOW)).lastrowid
            after = conn.execute("SELECT coalesce(max(id), 0) FROM routing_decisions").fetchone()[0]
            conn.executemany(
                "INSERT INTO routing_decisions (item_id, route, reasons, raw_confidence, calibrated_confidence, "
                "predicted_label, inclusion_probability, supersedes_id, batch_id) VALUES (?, 'review', "
                "'[\"below_threshold\"]', ?, ?, ?, NULL, NULL, ?)",
                ((item_id, confidence, confidence, label, batch) for _, item_id, confidence, label, *_ in stored))
            return batch, after

        written, (batch, after) = timed(decide_rows)

        def move() -> None:
            conn.execute("UPDATE item_states SET state = CASE WHEN routing_decisions.route = 'auto_accept' THEN "
                         "'auto_accepted' ELSE 'routed' END, decision_id = routing_decisions.id, updated_at = ? "
                         "FROM routing_decisions WHERE item_states.item_id = routing_decisions.item_id AND "
                         "routing_decisions.id > ? AND routing_decisions.batch_id IN (?) AND "
                         "item_states.state = 'scored'", (NOW, after, batch))
            conn.execute("COMMIT")

        seconds["read"] += read
        seconds["decisions"] += written
        seconds["states"] += timed(move)[0]
    conn.close()
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--words", type=int, default=3, help="words per item text (300: about 2 KB)")
    args = parser.parse_args(argv)
    home = configure_home()
    path = write_items(items_file(home, args.n, args.words), args.n, words=args.words)
    reference: list[float] = []
    parts: dict[str, list[float]] = {f"{design} {name}": [] for design in ("earlier", "slim")
                                     for name in ("items", "decisions", "states")}
    parts.update({f"store {name}": [] for name in ("items", "read", "decisions", "states")})
    designs = (("earlier", floor_writes), ("slim", slim_floor_writes), ("store", store_floor_writes))
    for _ in range(args.repeat):
        reference.append(timed(lambda: reference_insert(path, home / "reference.db"))[0])
        for design, writes in designs:
            for name, value in writes(path, home / f"floor-{design}.db").items():
                parts[f"{design} {name}"].append(value)
    totals = {design: [sum(values) for values in zip(*(v for k, v in parts.items() if k.startswith(design)))]
              for design, _ in designs}
    print_table(f"The writes under ingest + route of {args.n:,} items with {args.words}-word texts, in raw sqlite3", [
        ("reference: sqlite3 executemany (parse + insert)", reference, None),
        ("earlier: parse + insert into items (its state index)", parts["earlier items"], None),
        ("earlier: one routing_decisions row per item (its indexes)", parts["earlier decisions"], None),
        ("earlier: each item row's UPDATE scored -> routed", parts["earlier states"], None),
        ("earlier: the three writes", totals["earlier"], None),
        ("slim: parse + insert items and their narrow state rows", parts["slim items"], None),
        ("slim: a batch row and one slim decision row per item", parts["slim decisions"], None),
        ("slim: each narrow state row's UPDATE", parts["slim states"], None),
        ("slim: the three writes", totals["slim"], None),
        ("store: ingest's items and state rows, a chunk a transaction", parts["store items"], None),
        ("store: route's read of each segment's scored items", parts["store read"], None),
        ("store: a batch row and a decision per item", parts["store decisions"], None),
        ("store: the move joining the new decisions, and the commit", parts["store states"], None),
        ("store: ingest + route, no Python between statements", totals["store"], None),
    ], reference, notes=[f"Medians of {args.repeat} repeats; ratio = median / reference median."])
    for design, _ in designs:
        print(f"floor of ingest + route writes, {design}: {median(totals[design]) / median(reference):.2f}x the "
              "reference")


if __name__ == "__main__":
    main()
