"""The artifact side of the model registry: content-addressed model files on disk, written atomically.

A model's version is derived from its bytes (``"m-"`` + the first 12 hex digits of their sha256), so saving
the same model twice writes nothing new and returns the same version. The registry rows (which version is
live, its metrics) belong to the store; this module only writes and verifies files. A file is hashed before it
is unpickled, because unpickling an altered file would run whatever code it holds; and it must carry an
HMAC-SHA256 signature (``<file>.sig``) made with the installation's key, which lives outside every store
(``store.settings.signing_key``): someone who can write the store can replace a file and its recorded hash
together, but cannot sign it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import joblib
from sklearn.base import BaseEstimator

from scoring.errors import ArtifactIntegrityError
from scoring.models import ScoringModel
from scoring.preference import PreferenceModel
from scoring.verifier import Verifier
from store.settings import signing_key

__all__ = [
    "SavedArtifact",
    "file_sha256",
    "load_model",
    "load_preference_model",
    "load_verifier",
    "save_model",
    "sign_artifact",
    "signature_path",
]

# What the registry stores: a classifier, the verifier of generated responses, the preference model of pairs.
SAVED_TYPES = (ScoringModel, Verifier, PreferenceModel)
Saved = TypeVar("Saved", ScoringModel, Verifier, PreferenceModel)

_VERSION_HEX_DIGITS = 12
_SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
_CHUNK_BYTES = 1 << 20
_JOBLIB_MARKER = b"joblib.numpy_pickle"


@dataclass(frozen=True)
class SavedArtifact:
    """A model file in the registry: its version, where it is, its full sha256 and its size."""

    version: str
    path: Path
    sha256: str
    size_bytes: int


def save_model(model: ScoringModel | Verifier | PreferenceModel, models_dir: Path, *,
               key: bytes | None = None) -> SavedArtifact:
    """Write ``model`` (a fitted classifier, verifier or preference model) to ``<models_dir>/<version>.joblib``
    through a temp file and an atomic rename, signed with the installation's key (or ``key``) beside it."""
    if not isinstance(model, SAVED_TYPES):
        raise TypeError(f"save_model takes one of {[t.__name__ for t in SAVED_TYPES]}, got {type(model).__name__}")
    if not isinstance(model, ScoringModel) and not hasattr(model, "model_"):
        raise ValueError(f"this {type(model).__name__} is not fitted: there is nothing to save")
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(model, ScoringModel):
        _drop_volatile_caches(model.pipeline)
    else:  # the verifier's and the preference model's TF-IDF vectorizers
        for part in vars(model).values():
            if isinstance(part, BaseEstimator):
                _drop_volatile_caches(part)
    handle, temp_name = tempfile.mkstemp(dir=models_dir, prefix=".saving-", suffix=".joblib.tmp")
    temp_path = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as temp_file:
            # The C pickler: joblib's own pickler is pure Python, about 6x slower on a fitted TF-IDF
            # vocabulary, and this model holds no large arrays that joblib would store better.
            # joblib.load still reads the file (and the artifacts joblib.dump wrote before).
            pickle.dump(model, temp_file, protocol=5)
            temp_file.flush()
            os.fsync(temp_file.fileno())
        digest = file_sha256(temp_path)
        version = "m-" + digest[:_VERSION_HEX_DIGITS]
        final_path = models_dir / f"{version}.joblib"
        if final_path.exists():
            _check_existing(final_path, digest)
        else:
            os.replace(temp_path, final_path)
        sign_artifact(final_path, sha256=digest, key=key)
    finally:
        temp_path.unlink(missing_ok=True)
    return SavedArtifact(
        version=version, path=final_path, sha256=digest, size_bytes=final_path.stat().st_size
    )


SIGNATURE_SUFFIX = ".sig"
_SIGNATURE_PREFIX = "hmac-sha256:"


def signature_path(path: Path) -> Path:
    """The signature file that goes with an artifact (it travels with it)."""
    return Path(path).with_name(Path(path).name + SIGNATURE_SUFFIX)


def _signature(digest: str, key: bytes) -> str:
    return _SIGNATURE_PREFIX + hmac.new(key, digest.encode("ascii"), hashlib.sha256).hexdigest()


def sign_artifact(path: Path, *, sha256: str, key: bytes | None = None) -> Path:
    """Sign the artifact at ``path`` with the installation's key (``store.settings.signing_key``) once its bytes
    are checked against ``sha256``: only what this installation wrote, or an operator chose to trust
    (`sluice models sign`), loads."""
    expected = _checked_sha(sha256)
    actual = file_sha256(path)
    if actual != expected:
        raise ArtifactIntegrityError(f"refusing to sign {path}: its sha256 is {actual}, the registry expects {expected}")
    target = signature_path(path)
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".signing-", suffix=".tmp")
    with os.fdopen(handle, "w") as out:
        out.write(_signature(expected, signing_key() if key is None else key) + "\n")
    os.replace(temp_name, target)
    return target


def _check_signature(path: Path, digest: str, key: bytes | None) -> None:
    try:
        given = signature_path(path).read_text().strip()
    except FileNotFoundError:
        raise ArtifactIntegrityError(
            f"refusing to load {path}: it carries no signature of this installation (an artifact from before "
            "signing: `sluice models sign` trusts the registered ones whose bytes match the registry)") from None
    if not hmac.compare_digest(given, _signature(digest, signing_key() if key is None else key)):
        raise ArtifactIntegrityError(
            f"refusing to load {path}: its signature is not this installation's (the file, or its signature, was "
            "replaced: loading it could run code someone else wrote)")


def load_model(path: Path, *, sha256: str) -> ScoringModel:
    """Load the classifier at ``path`` only if the file's sha256 equals ``sha256`` (the registry's record)."""
    return _load_checked(path, sha256, ScoringModel)


def load_verifier(path: Path, *, sha256: str) -> Verifier:
    """Load the verifier at ``path`` only if the file's sha256 equals ``sha256`` (the registry's record)."""
    return _load_checked(path, sha256, Verifier)


def load_preference_model(path: Path, *, sha256: str) -> PreferenceModel:
    """Load the preference model at ``path`` only if the file's sha256 equals ``sha256`` (the registry's record)."""
    return _load_checked(path, sha256, PreferenceModel)


def _checked_sha(sha256: str) -> str:
    expected = str(sha256).lower()
    if not _SHA256_PATTERN.fullmatch(expected):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    return expected


def _load_checked(path: Path, sha256: str, expected_type: type[Saved], key: bytes | None = None) -> Saved:
    expected = _checked_sha(sha256)
    data = Path(path).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ArtifactIntegrityError(
            f"refusing to load {path}: its sha256 is {actual}, the registry expects {expected}"
        )
    # the hash catches corruption; the signature (a key outside the store) catches a file replaced together with
    # the registry's hash, before anything is unpickled
    _check_signature(Path(path), expected, key)
    # Files written by joblib.dump (artifacts saved before the switch to the C pickler) embed numpy arrays
    # outside the pickle stream and need joblib's reader; everything newer is a plain pickle, which loads
    # about 40x faster than through joblib.
    model = joblib.load(path) if _JOBLIB_MARKER in data else pickle.loads(data)
    if not isinstance(model, expected_type):
        raise ArtifactIntegrityError(f"{path} holds a {type(model).__name__}, not a {expected_type.__name__}")
    return model


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _drop_volatile_caches(estimator: object) -> None:
    # TfidfVectorizer caches ``_stop_words_id = id(self.stop_words)``, a memory address that differs between
    # processes and is re-set by every transform; left in, the same model would get a new version each run.
    # It only lets the vectorizer skip a stop-word check, which it redoes when the attribute is absent.
    vars(estimator).pop("_stop_words_id", None)
    children = [step for _, step in getattr(estimator, "steps", [])]
    children += [transformer for _, transformer in getattr(estimator, "transformer_list", [])]
    for child in children:
        if hasattr(child, "__dict__"):
            _drop_volatile_caches(child)


def _check_existing(final_path: Path, digest: str) -> None:
    # Same version name means the same 12-digit prefix; only identical bytes make the save a no-op.
    existing = file_sha256(final_path)
    if existing != digest:
        raise ArtifactIntegrityError(
            f"{final_path} exists with sha256 {existing}, not {digest}: "
            "the file was altered or the version prefix collides"
        )
