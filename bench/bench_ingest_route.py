"""Ingest (items born scored, their upstream prediction in their own row), score (nothing left to pass through)
and route N items that carry upstream confidences, through real Prefect flow runs, against a plain executemany of the same
rows into the same kind of database, measured in the same run: `sqlite3` into a SQLite file, or psycopg into a
throw-away PostgreSQL cluster on 127.0.0.1.

    python bench/bench_ingest_route.py [--n 1000000] [--repeat 3] [--database sqlite|postgresql]
                                       [--task-runner threads|dask] [--words 3]

`--words` sets each item's text length (3 words, about 20 bytes, by default; 300 words is about 2 KB, a news
article's size): the reference writes the same texts.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import configure_home, median, prefect_session, print_table, timed, verdict  # noqa: E402

TARGET_RATIO = 4.0
SEGMENTS = ("s0", "s1", "s2", "s3", "s4")
LABELS = ("a", "b", "c")
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")


def items_file(home: Path, n: int, words: int = 3) -> Path:
    """Where the items of `n` and `words` are kept between runs."""
    return home / (f"items-upstream-{n}.jsonl" if words == 3 else f"items-upstream-{n}-{words}w.jsonl")


def write_items(path: Path, n: int, *, seed: int = 0, words: int = 3) -> Path:
    """`n` JSONL items with an upstream prediction and confidence, a few segments, texts of `words` words."""
    import numpy as np

    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    confidence = np.round(rng.beta(5, 1.5, size=n), 4)
    label = rng.integers(0, len(LABELS), size=n)
    segment = rng.integers(0, len(SEGMENTS), size=n)
    drawn = rng.integers(0, len(WORDS), size=(n, words))
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for i in range(n):
            out.write(json.dumps({
                "id": f"i{i:07d}", "text": " ".join(WORDS[w] for w in drawn[i]), "prediction": LABELS[label[i]],
                "confidence": float(confidence[i]), "segment": SEGMENTS[segment[i]],
            }) + "\n")
    tmp.replace(path)
    return path


def reference_insert(path: Path, database: Path) -> int:
    """The floor: parse each line and executemany (id, text, prediction, confidence, segment) into a new table."""
    database.unlink(missing_ok=True)
    conn = sqlite3.connect(database)
    conn.execute("CREATE TABLE items (id TEXT PRIMARY KEY, text TEXT, prediction TEXT, confidence REAL, "
                 "segment TEXT)")
    with path.open("rb") as lines:
        rows = ((r["id"], r["text"], r["prediction"], r["confidence"], r["segment"]) for r in map(json.loads, lines))
        with conn:
            conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?)", rows)
    count = conn.execute("SELECT count(*) FROM items").fetchone()[0]
    conn.close()
    return count


def reference_insert_postgres(path: Path, conninfo: str) -> int:
    """The PostgreSQL floor: parse each line and psycopg executemany the same columns into a new table."""
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS reference_items")
        conn.execute("CREATE TABLE reference_items (id TEXT PRIMARY KEY, text TEXT, prediction TEXT, "
                     "confidence DOUBLE PRECISION, segment TEXT)")
        with path.open("rb") as lines, conn.cursor() as cursor, conn.transaction():
            rows = ((r["id"], r["text"], r["prediction"], r["confidence"], r["segment"])
                    for r in map(json.loads, lines))
            cursor.executemany("INSERT INTO reference_items VALUES (%s, %s, %s, %s, %s)", rows)
        count = conn.execute("SELECT count(*) FROM reference_items").fetchone()[0]
        conn.execute("DROP TABLE reference_items")
    return count


def remove_database(database: Path) -> None:
    from store.db import dispose_engines

    dispose_engines()  # a pooled connection would keep writing to the unlinked file
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)


def sluice_run(path: Path, database: Path | str, task_runner: str = "threads") -> dict[str, float]:
    """Ingest, score and route into a fresh, migrated database (a SQLite file, or a PostgreSQL URL whose database
    was just created); returns seconds per stage."""
    from flows.common import engine_for
    from flows.ingest import ingest_flow
    from flows.route import route_flow
    from flows.score import score_flow
    from sqlalchemy import text
    from store.policies import active_policy
    from store.settings import get_settings

    if isinstance(database, Path):
        remove_database(database)
    url = f"sqlite:///{database}" if isinstance(database, Path) else database
    settings = get_settings().variant(database_url=url, task_runner=task_runner)
    active_policy(engine_for(settings))  # migrate and activate the default policy: setup, not timed
    ingest_s, ingested = timed(lambda: ingest_flow(str(path), settings=settings))
    score_s, scored = timed(lambda: score_flow(settings=settings))
    route_s, routed = timed(lambda: route_flow(settings=settings))
    n = ingested["accepted"]
    with engine_for(settings).connect() as conn:  # born scored, the passthrough prediction in the item row
        predicted = conn.execute(text("select count(*) from items where upstream_prediction is not null and "
                                      "upstream_confidence is not null")).scalar_one()
    if not (n == ingested["total"] and predicted == n and routed["routed"] == n):
        raise RuntimeError(f"not every item went through: ingest {ingested}, {predicted} predicted, score {scored}, "
                           f"route {routed}")
    if isinstance(database, Path):
        remove_database(database)
    return {"ingest": ingest_s, "score": score_s, "route": route_s}


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--task-runner", choices=("threads", "dask"), default="threads",
                        help="where the flows' batch tasks run (dask: a local cluster of 2 worker processes)")
    parser.add_argument("--words", type=int, default=3, help="words per item text (300: about 2 KB)")
    args = parser.parse_args(argv)
    home = configure_home()
    path = write_items(items_file(home, args.n, args.words), args.n, words=args.words)
    reference: list[float] = []
    stages: dict[str, list[float]] = {"ingest": [], "score": [], "route": []}
    cluster = None
    if args.database == "postgresql":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.postgres_fixture import create_database, drop_database, start_cluster, stop_cluster

        cluster = start_cluster()
    try:
        with prefect_session():
            for attempt in range(args.repeat):
                if cluster is None:
                    seconds, count = timed(lambda: reference_insert(path, home / "reference.db"))
                    target: Path | str = home / f"sluice-bench-{attempt}.db"
                else:
                    seconds, count = timed(lambda: reference_insert_postgres(path, cluster.conninfo()))
                    name = f"sluice_bench_{attempt}"
                    drop_database(cluster, name)
                    target = create_database(cluster, name)
                assert count == args.n, count
                reference.append(seconds)
                for stage, value in sluice_run(path, target, args.task_runner).items():
                    stages[stage].append(value)
                if cluster is not None:
                    from store.db import dispose_engines

                    dispose_engines()
                    drop_database(cluster, name)
                print(f"repeat {attempt + 1}: reference {reference[-1]:.2f} s, "
                      + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in stages.items()), flush=True)
    finally:
        if cluster is not None:
            stop_cluster(cluster)
    total = [sum(parts) for parts in zip(*stages.values())]
    floor = "sqlite3 executemany" if cluster is None else "psycopg executemany"
    print_table(
        f"Ingest + score + route of {args.n:,} items with upstream confidences and {args.words}-word texts "
        f"({args.database}, Prefect flows, batch tasks on {args.task_runner})",
        [(f"reference: {floor} (parse + insert)", reference, None),
         ("sluice ingest_flow", stages["ingest"], None),
         ("sluice score_flow (born scored: nothing left)", stages["score"], None),
         ("sluice route_flow", stages["route"], None),
         ("sluice ingest + score + route", total, TARGET_RATIO)],
        reference,
        notes=[f"Medians of {args.repeat} repeats, ratio = median / reference median; each repeat migrates a "
               "fresh database first (not timed)."],
    )
    return verdict(f"ingest + score + route vs {floor}", median(total) / median(reference), TARGET_RATIO)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
