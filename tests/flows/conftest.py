"""Fixtures for flow tests: a small labelled text data set with real ambiguity, written as Sluice input files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

TOPICS = {
    "sport": ["striker", "goal", "referee", "league", "coach", "match", "penalty", "stadium"],
    "finance": ["bank", "shares", "investor", "bonds", "earnings", "market", "interest", "trader"],
    "weather": ["storm", "rain", "forecast", "snow", "winds", "heatwave", "cloud", "thunder"],
}
COMMON = ["today", "report", "people", "city", "week", "news", "again", "north", "said", "new"]


def make_dataset(n: int, *, seed: int) -> list[dict]:
    """`n` short texts; each mixes words of its own topic with some of another, so confidence varies."""
    rng = np.random.default_rng(seed)
    topics = sorted(TOPICS)
    records = []
    for index in range(n):
        label = topics[index % len(topics)]
        other = topics[(index + 1 + rng.integers(0, 2)) % len(topics)]
        own_words = rng.choice(TOPICS[label], size=rng.integers(1, 4))
        other_words = rng.choice(TOPICS[other], size=rng.integers(0, 3))
        words = [*own_words, *other_words, *rng.choice(COMMON, size=4)]
        rng.shuffle(words)
        records.append({"id": f"doc-{seed}-{index:05d}", "text": " ".join(map(str, words)), "label": label})
    return records


def write_files(directory: Path, records: list[dict]) -> tuple[Path, Path]:
    """items.jsonl (id, text and the segment when a record has one) and labels.jsonl (id, label) in `directory`."""
    items = directory / "items.jsonl"
    labels = directory / "labels.jsonl"
    fields = ("id", "text", "segment")
    items.write_text("".join(json.dumps({k: r[k] for k in fields if k in r}) + "\n" for r in records))
    labels.write_text("".join(json.dumps({"id": r["id"], "label": r["label"]}) + "\n" for r in records))
    return items, labels


@pytest.fixture
def dataset_files(tmp_path) -> tuple[Path, Path]:
    return write_files(tmp_path, make_dataset(900, seed=3))



@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def sluice_home(request, tmp_path, monkeypatch):
    """A fresh SLUICE_HOME (models, reports) for one flow test, with its store on each backend: the SQLite file
    under it, or a fresh database on the session's real PostgreSQL cluster (SLUICE_DATABASE_URL)."""
    from store.db import dispose_engines
    from store.settings import get_settings

    home = tmp_path / "sluice-home"
    monkeypatch.setenv("SLUICE_HOME", str(home))
    if request.param == "postgresql":
        monkeypatch.setenv("SLUICE_DATABASE_URL", request.getfixturevalue("fresh_postgres_url"))
    else:
        monkeypatch.delenv("SLUICE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    dispose_engines()
    yield home
    get_settings.cache_clear()
    dispose_engines()
