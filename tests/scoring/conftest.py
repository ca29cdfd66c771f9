"""Shared fixtures for the scoring tests: a small synthetic three-class text data set built from templates."""

from __future__ import annotations

import numpy as np
import pytest

_VOCABULARY = {
    "sport": (
        ["striker", "goalkeeper", "referee", "midfielder", "coach"],
        ["scored", "saved", "missed", "celebrated"],
        ["the final", "a penalty", "the derby", "the league match"],
    ),
    "finance": (
        ["investor", "bank", "trader", "the central bank", "shareholder"],
        ["bought", "sold", "hedged", "priced"],
        ["bonds", "quarterly earnings", "interest rates", "the stock index"],
    ),
    "weather": (
        ["forecaster", "meteorologist", "the storm", "a cold front", "the rain"],
        ["warned of", "brought", "predicted", "cleared"],
        ["heavy snow", "strong winds", "a heatwave", "thunder and hail"],
    ),
}
_FILLERS = ["today", "yesterday", "this morning", "late on sunday", "again", "in the north"]


def make_texts(n_per_class: int, *, seed: int) -> tuple[list[str], list[str]]:
    """``n_per_class`` short texts per class, from subject/verb/object templates, shuffled by ``seed``."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, (subjects, verbs, objects) in _VOCABULARY.items():
        for _ in range(n_per_class):
            parts = [rng.choice(subjects), rng.choice(verbs), rng.choice(objects), rng.choice(_FILLERS)]
            texts.append(" ".join(str(part) for part in parts))
            labels.append(label)
    order = rng.permutation(len(texts))
    return [texts[i] for i in order], [labels[i] for i in order]


@pytest.fixture(scope="session")
def text_data() -> dict[str, list[str]]:
    train_texts, train_labels = make_texts(67, seed=1)  # 201 texts
    test_texts, test_labels = make_texts(30, seed=2)
    return {
        "train_texts": train_texts,
        "train_labels": train_labels,
        "test_texts": test_texts,
        "test_labels": test_labels,
    }


@pytest.fixture(scope="session")
def text_model(text_data):
    from scoring.models import train_model

    return train_model(text_data["train_texts"], text_data["train_labels"], kind="text", seed=0)
