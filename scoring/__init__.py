"""Scoring: Sluice's own models (classifiers, the verifier, the preference model and their families), upstream-score
passthrough, model artifacts and demo data loaders."""

from __future__ import annotations

from scoring.datasets import load_bbc_news, load_rotten_tomatoes
from scoring.errors import ArtifactIntegrityError, DatasetUnavailableError, ScoringError
from scoring.models import (
    MODEL_KINDS,
    ModelKind,
    ScoringModel,
    build_feature_pipeline,
    build_text_pipeline,
    evaluate,
    is_not_worse,
    train_model,
)
from store.passthrough import UpstreamScores, upstream_scores
from scoring.registry import (
    SavedArtifact,
    file_sha256,
    load_model,
    load_preference_model,
    load_verifier,
    save_model,
)

__all__ = [
    "MODEL_KINDS",
    "ArtifactIntegrityError",
    "DatasetUnavailableError",
    "ModelKind",
    "SavedArtifact",
    "ScoringError",
    "ScoringModel",
    "UpstreamScores",
    "build_feature_pipeline",
    "build_text_pipeline",
    "evaluate",
    "file_sha256",
    "is_not_worse",
    "load_bbc_news",
    "load_model",
    "load_preference_model",
    "load_verifier",
    "load_rotten_tomatoes",
    "save_model",
    "train_model",
    "upstream_scores",
]
