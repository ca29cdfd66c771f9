"""Scoring N short texts with the default text pipeline through `score_flow` (one worker, then two worker
processes), against one bare in-process `model.predict_proba(texts)` of the same fitted model, same run; the store
is a SQLite file, or a database on a throw-away PostgreSQL cluster on 127.0.0.1.

    python bench/bench_score.py [--n 1000000] [--repeat 3] [--train 2000] [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import configure_home, median, prefect_session, print_table, timed, verdict  # noqa: E402

TARGET_ONE_WORKER = 1.5
TARGET_TWO_WORKERS = 0.7
TOPICS = {
    "sport": "striker goal referee league coach match penalty stadium season cup final injury".split(),
    "finance": "bank shares investor bonds earnings market interest trader inflation profit rates fund".split(),
    "weather": "storm rain forecast snow winds heatwave cloud thunder flood frost sunshine gale".split(),
    "politics": "minister election vote party parliament policy campaign senate reform budget law leader".split(),
}
COMMON = "today report people city week news again north said new year after over more says could".split()


def make_texts(n: int, *, seed: int) -> tuple[list[str], list[str]]:
    """`n` short sentences (6–12 words) mixing a topic's words with common ones, and their topic labels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    topics = sorted(TOPICS)
    vocab = {t: np.array(TOPICS[t]) for t in topics}
    common = np.array(COMMON)
    label_idx = rng.integers(0, len(topics), size=n)
    other_idx = (label_idx + rng.integers(1, len(topics), size=n)) % len(topics)
    texts = []
    for i in range(n):
        own = rng.choice(vocab[topics[label_idx[i]]], size=rng.integers(2, 5))
        other = rng.choice(vocab[topics[other_idx[i]]], size=rng.integers(0, 3))
        words = [*own, *other, *rng.choice(common, size=rng.integers(2, 6))]
        rng.shuffle(words)
        texts.append(" ".join(words))
    return texts, [topics[i] for i in label_idx]


def prepare(home: Path, n: int, n_train: int, url: str | None = None):
    """A fresh database (`url`, an empty database; or a new SQLite file) holding `n` unscored items and a promoted
    text model; returns (url, model, texts, model version)."""
    from sqlmodel import Session

    from scoring.models import train_model
    from scoring.registry import save_model
    from store.db import get_engine
    from store.ingest import ingest_file
    from store.models import ModelVersion
    from store.policies import active_policy

    if url is None:
        database = home / "score-bench.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{database}"
    engine = get_engine(url)
    active_policy(engine)
    train_texts, train_labels = make_texts(n_train, seed=1)
    model = train_model(train_texts, train_labels, kind="text", seed=0)
    artifact = save_model(model, home / "models")
    with Session(engine) as session:
        session.add(ModelVersion(version=artifact.version, kind="text", artifact_path=str(artifact.path),
                                 sha256=artifact.sha256, classes=model.classes_.tolist(), train_size=n_train,
                                 status="promoted", promoted_at=datetime.now(timezone.utc)))
        session.commit()
    texts, _ = make_texts(n, seed=2)
    items = home / f"items-text-{n}.jsonl"
    if not items.exists():
        items.write_text("".join(json.dumps({"id": f"t{i:07d}", "text": t}) + "\n" for i, t in enumerate(texts)))
    summary = ingest_file(engine, items)
    assert summary.accepted == n, summary.as_dict()
    return url, model, texts, artifact.version


def reset(url: str, version: str) -> None:
    """Forget the model's predictions, so the next score flow scores every item again."""
    from sqlalchemy import delete, update

    from store.db import get_engine
    from store.models import ItemStateRow, Prediction

    with get_engine(url).begin() as conn:
        conn.execute(delete(Prediction).where(Prediction.model_version == version))
        conn.execute(update(ItemStateRow).values(state="received"))


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--train", type=int, default=2_000)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args(argv)
    home = configure_home()
    if args.database == "postgresql":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.postgres_fixture import create_database, start_cluster, stop_cluster

        cluster = start_cluster()
        try:
            return measure(args, home, create_database(cluster, "sluice_score_bench"))
        finally:
            from store.db import dispose_engines

            dispose_engines()
            stop_cluster(cluster)
    return measure(args, home, None)


def measure(args: argparse.Namespace, home: Path, url: str | None) -> bool:
    """Prepare the store at `url` (None: a SQLite file), time the repeats and print the table."""
    url, model, texts, version = prepare(home, args.n, args.train, url)
    bare, one, two = [], [], []
    with prefect_session():
        from flows.score import score_flow
        from store.settings import get_settings

        settings = get_settings().variant(database_url=url)
        for attempt in range(args.repeat):
            bare.append(timed(lambda: model.predict_proba(texts))[0])
            for workers, times in ((1, one), (2, two)):
                reset(url, version)
                seconds, summary = timed(lambda: score_flow(settings=settings, workers=workers))
                if summary["scored"] != args.n:
                    raise RuntimeError(f"score flow with {workers} worker(s) scored {summary}")
                times.append(seconds)
            print(f"repeat {attempt + 1}: bare {bare[-1]:.2f} s, one worker {one[-1]:.2f} s, "
                  f"two workers {two[-1]:.2f} s", flush=True)
    print_table(
        f"Scoring {args.n:,} short texts (word 1-2 + char_wb 3-5 TF-IDF, logistic regression; "
        f"trained on {args.train:,})",
        [("reference: bare model.predict_proba(texts)", bare, None),
         ("score_flow, workers=1 (threads)", one, TARGET_ONE_WORKER),
         ("score_flow, workers=2 (processes)", two, f"< {TARGET_TWO_WORKERS:g}×")],
        bare,
        notes=[f"Medians of {args.repeat} repeats; the flows read the texts from {args.database} and write one "
               "prediction row per item (probs as JSON) and the item state; items are ingested beforehand (not "
               "timed)."],
    )
    ok_one = verdict("score_flow workers=1 vs bare predict_proba", median(one) / median(bare), TARGET_ONE_WORKER)
    ok_two = verdict("score_flow workers=2 vs bare predict_proba", median(two) / median(bare), TARGET_TWO_WORKERS,
                     strict=True)
    return ok_one and ok_two


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
