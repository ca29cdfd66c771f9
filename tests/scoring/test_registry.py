"""Tests for scoring.registry: content-addressed, atomic, idempotent saves and hash-checked loads."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from scoring.errors import ArtifactIntegrityError
from scoring.registry import SavedArtifact, load_model, save_model, sign_artifact, signature_path


def test_round_trip(text_model, text_data, tmp_path):
    artifact = save_model(text_model, tmp_path / "models")
    assert isinstance(artifact, SavedArtifact)
    assert artifact.path == tmp_path / "models" / f"{artifact.version}.joblib"
    content = artifact.path.read_bytes()
    assert artifact.sha256 == hashlib.sha256(content).hexdigest()
    assert artifact.version == "m-" + artifact.sha256[:12]
    assert artifact.size_bytes == len(content)
    loaded = load_model(artifact.path, sha256=artifact.sha256)
    texts = text_data["test_texts"]
    np.testing.assert_array_equal(loaded.predict(texts), text_model.predict(texts))
    np.testing.assert_allclose(loaded.predict_proba(texts), text_model.predict_proba(texts))
    assert loaded.kind == "text" and loaded.classes_.tolist() == text_model.classes_.tolist()


def test_save_is_idempotent(text_model, tmp_path):
    first = save_model(text_model, tmp_path)
    mtime = first.path.stat().st_mtime_ns
    second = save_model(text_model, tmp_path)
    assert second == first
    assert first.path.stat().st_mtime_ns == mtime
    # no temp files left behind: the artifact and its signature
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.path.name, signature_path(first.path).name]


def test_same_training_gives_same_version(text_data, tmp_path):
    from scoring.models import train_model

    args = (text_data["train_texts"][:60], text_data["train_labels"][:60])
    first = save_model(train_model(*args, kind="text", seed=0), tmp_path)
    second = save_model(train_model(*args, kind="text", seed=0), tmp_path)
    assert first.version == second.version


def test_version_does_not_depend_on_hash_seed(tmp_path):
    script = (
        "import sys; from pathlib import Path; from scoring import train_model, save_model;"
        "m = train_model(['red apple pie', 'green apple tart', 'blue sky today', 'grey sky tonight'],"
        " ['food', 'food', 'sky', 'sky'], kind='text', seed=0);"
        "print(save_model(m, Path(sys.argv[1])).version)"
    )
    versions = {
        subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)],
            env={
                "PYTHONHASHSEED": hash_seed,
                "PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[2]),
            },
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for hash_seed in ("1", "2")
    }
    assert len(versions) == 1


def test_predicting_does_not_change_the_version(text_model, text_data, tmp_path):
    before = save_model(text_model, tmp_path)
    loaded = load_model(before.path, sha256=before.sha256)
    loaded.predict(text_data["test_texts"][:3])
    assert save_model(loaded, tmp_path / "again").version == before.version


def test_tampered_file_is_refused(text_model, tmp_path):
    artifact = save_model(text_model, tmp_path)
    with artifact.path.open("ab") as stream:
        stream.write(b"\0")
    with pytest.raises(ArtifactIntegrityError, match="refusing to load"):
        load_model(artifact.path, sha256=artifact.sha256)


def test_wrong_hash_is_refused(text_model, tmp_path):
    artifact = save_model(text_model, tmp_path)
    with pytest.raises(ArtifactIntegrityError):
        load_model(artifact.path, sha256="0" * 64)
    with pytest.raises(ValueError, match="64 hex digits"):
        load_model(artifact.path, sha256=artifact.version)


def test_altered_existing_file_blocks_save(text_model, tmp_path):
    artifact = save_model(text_model, tmp_path)
    artifact.path.write_bytes(b"not a model")
    with pytest.raises(ArtifactIntegrityError, match="altered"):
        save_model(text_model, tmp_path)


def test_file_that_is_not_a_model(tmp_path):
    import joblib

    path = tmp_path / "other.joblib"
    joblib.dump({"not": "a model"}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    sign_artifact(path, sha256=digest)
    with pytest.raises(ArtifactIntegrityError, match="not a ScoringModel"):
        load_model(path, sha256=digest)


def test_save_rejects_non_models(tmp_path):
    with pytest.raises(TypeError, match="ScoringModel"):
        save_model({"a": 1}, tmp_path)


def test_artifact_written_by_joblib_still_loads(text_model, text_data, tmp_path):
    # Artifacts saved before the switch to the C pickler were joblib.dump files, with numpy arrays outside
    # the pickle stream; they must keep loading, as the same model.
    import joblib

    path = tmp_path / "old.joblib"
    joblib.dump(text_model, path)
    assert b"joblib.numpy_pickle" in path.read_bytes()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    sign_artifact(path, sha256=digest)  # as `sluice models sign` trusts it
    loaded = load_model(path, sha256=digest)
    texts = text_data["test_texts"]
    np.testing.assert_allclose(loaded.predict_proba(texts), text_model.predict_proba(texts))


def _family_models():
    """A verifier and a preference model fitted on a few SEMI-SYNTHETIC-style examples, with their inputs."""
    from scoring.preference import PairwiseExample, PreferenceModel
    from scoring.verifier import GenerationExample, Verifier

    context = "On Tuesday the central bank raised interest rates by 25 basis points, citing inflation."
    quoted = "The central bank raised interest rates by 25 basis points."
    invented = ["The bank cut rates by 75 points after a strike.", "Shares fell by 40 percent in 1999."]
    responses = [quoted if k % 2 else invented[k % 4 // 2] for k in range(20)]
    examples = [GenerationExample("What did the bank do?", r, context) for r in responses]
    verifier = Verifier().fit(examples, [k % 2 == 1 for k in range(20)])
    pairs = [PairwiseExample("What did the bank do?", r, invented[0] if r == quoted else quoted, context)
             for r in responses]
    preference = PreferenceModel().fit(pairs, ["a" if r == quoted else "b" for r in responses])
    return verifier, examples, preference, pairs


def test_family_models_round_trip_with_the_same_checks(tmp_path):
    from scoring.registry import load_preference_model, load_verifier

    verifier, examples, preference, pairs = _family_models()
    saved = save_model(verifier, tmp_path)
    verifier.predict_proba(examples)  # predicting leaves the version as it is
    assert save_model(verifier, tmp_path) == saved
    np.testing.assert_allclose(load_verifier(saved.path, sha256=saved.sha256).predict_proba(examples),
                               verifier.predict_proba(examples))
    saved_pairs = save_model(preference, tmp_path)
    np.testing.assert_allclose(load_preference_model(saved_pairs.path, sha256=saved_pairs.sha256).predict_proba(pairs),
                               preference.predict_proba(pairs))
    # a verifier is not loaded as a classifier, nor a preference model as a verifier
    with pytest.raises(ArtifactIntegrityError, match="holds a Verifier, not a ScoringModel"):
        load_model(saved.path, sha256=saved.sha256)
    with pytest.raises(ArtifactIntegrityError, match="holds a PreferenceModel, not a Verifier"):
        load_verifier(saved_pairs.path, sha256=saved_pairs.sha256)
    saved.path.write_bytes(saved.path.read_bytes() + b"\0")
    with pytest.raises(ArtifactIntegrityError, match="refusing to load"):
        load_verifier(saved.path, sha256=saved.sha256)


def test_an_unfitted_family_model_is_not_saved(tmp_path):
    from scoring.verifier import Verifier

    with pytest.raises(ValueError, match="Verifier is not fitted"):
        save_model(Verifier(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_model_replaced_with_its_recorded_hash_does_not_load_without_this_installations_signature(
        text_model, tmp_path, monkeypatch):
    """The attack: someone who can write the store swaps the model file for a pickle that runs code and updates
    `model_versions.sha256` to match. The hash matches; the signature, made with a key outside the store, does not."""
    import pickle

    artifact = save_model(text_model, tmp_path)
    ran = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (ran.touch, ())

    artifact.path.write_bytes(pickle.dumps(Payload()))
    forged = hashlib.sha256(artifact.path.read_bytes()).hexdigest()  # the registry row rewritten to match
    with pytest.raises(ArtifactIntegrityError, match="signature is not this installation's"):
        load_model(artifact.path, sha256=forged)
    signature_path(artifact.path).unlink()  # nor does removing the signature help
    with pytest.raises(ArtifactIntegrityError, match="carries no signature"):
        load_model(artifact.path, sha256=forged)
    assert not ran.exists()
    # another installation's key cannot sign for this one
    other_key = tmp_path / "other.key"
    monkeypatch.setenv("SLUICE_SIGNING_KEY_FILE", str(other_key))
    sign_artifact(artifact.path, sha256=forged)
    monkeypatch.undo()
    with pytest.raises(ArtifactIntegrityError, match="signature is not this installation's"):
        load_model(artifact.path, sha256=forged)
    assert not ran.exists()


def test_a_signing_key_others_can_read_is_refused(tmp_path, monkeypatch):
    from store.settings import signing_key

    key = tmp_path / "k" / "signing.key"
    monkeypatch.setenv("SLUICE_SIGNING_KEY_FILE", str(key))
    first = signing_key()
    assert len(first) == 32 and signing_key() == first and (key.stat().st_mode & 0o777) == 0o600
    key.chmod(0o644)
    with pytest.raises(ValueError, match="may be read by others"):
        signing_key()
    monkeypatch.setenv("SLUICE_SIGNING_KEY", "ab" * 8)
    with pytest.raises(ValueError, match="at least 64 hex digits"):
        signing_key()


def test_processes_that_make_the_signing_key_at_once_all_read_one_whole_key(tmp_path):
    """Eight processes asking for a key that does not exist yet, at the same instant: each gets the same 32 bytes
    (none reads a half-written file), and no draft is left beside the key."""
    import os
    import time
    from pathlib import Path

    key = tmp_path / "k" / "signing.key"
    start = time.time() + 2.0  # every process waits for the same instant, once its imports are done
    script = ("import sys, time\nfrom store.settings import signing_key\n"
              f"time.sleep(max(0.0, {start} - time.time()))\nprint(signing_key().hex())")
    env = {**os.environ, "SLUICE_SIGNING_KEY_FILE": str(key), "PYTHONPATH": str(Path(__file__).parents[2])}
    env.pop("SLUICE_SIGNING_KEY", None)
    processes = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outputs = [process.communicate(timeout=60) for process in processes]
    assert all(process.returncode == 0 for process in processes), [err[-500:] for _, err in outputs]
    keys = {out.strip() for out, _ in outputs}
    assert len(keys) == 1 and len(bytes.fromhex(keys.pop())) == 32
    assert [p.name for p in key.parent.iterdir()] == ["signing.key"]
