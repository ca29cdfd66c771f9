"""The promotion gate in real retrain flow runs: a candidate is kept out only on evidence that it is worse."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete, select, update

from store.models import AuditEvent, Label, ModelVersion

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def test_worse_candidate_is_rejected_and_a_no_worse_one_promoted(sluice_home, dataset_files):
    from flows.common import engine_for
    from flows.ingest import ingest_flow, read_labels, seed_labels
    from flows.retrain import retrain_flow

    items, labels = dataset_files
    engine = engine_for(None)
    ingest_flow(str(items))
    seed_labels(engine, list(dict(read_labels(labels)).items())[:300], holdout_share=0.4)
    first = retrain_flow()
    assert first["status"] == "promoted" and first["comparison"] is None

    # a training set with every label rotated to a wrong class: the held-out set shows it is worse
    with engine.connect() as conn:
        train = conn.execute(select(Label.item_id, Label.label).where(Label.split == "train")).all()
    classes = sorted({label for _, label in train})
    with engine.begin() as conn:
        for item_id, label in train:
            conn.execute(update(Label).where(Label.item_id == item_id)
                         .values(label=classes[(classes.index(label) + 1) % len(classes)]))
    poisoned = retrain_flow()
    assert poisoned["status"] == "rejected"
    assert poisoned["comparison"]["worse"] and poisoned["comparison"]["p_value"] < 0.05
    assert poisoned["comparison"]["only_incumbent_right"] > poisoned["comparison"]["only_candidate_right"]

    # the right labels back, less a handful: about as good, so promoted even if a point lower held out
    with engine.begin() as conn:
        for item_id, label in train:
            conn.execute(update(Label).where(Label.item_id == item_id).values(label=label))
        conn.execute(delete(Label).where(Label.item_id.in_([item_id for item_id, _ in train[:5]])))
    fair = retrain_flow()
    assert fair["status"] == "promoted" and not fair["comparison"]["worse"]
    with engine.connect() as conn:
        statuses = dict(conn.execute(select(ModelVersion.version, ModelVersion.status)).all())
    assert statuses == {first["version"]: "retired", poisoned["version"]: "rejected", fair["version"]: "promoted"}


# A feed the first model never saw: match notices in words no other item uses, which people file under weather
# (postponements). The first model calls them sport or finance, so every one that people label is a correction.
NOTICE_WORDS = ["kickoff", "fixture", "derby", "postponed", "pitch", "waterlogged"]
REVIEW_ALL = """
name: review-all
defaults:
  review_budget: 500
"""


def _notices(n: int, *, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"id": f"notice-{index:04d}", "text": " ".join(rng.choice(NOTICE_WORDS, size=rng.integers(2, 5))),
             "segment": "notices", "label": "weather"} for index in range(n)]


def test_a_candidate_that_forgets_corrected_items_is_refused_and_one_that_keeps_them_promoted(sluice_home, tmp_path):
    from flows.calibrate import calibrate_flow
    from flows.common import engine_for
    from flows.ingest import ingest_flow, read_labels, seed_labels
    from flows.retrain import retrain_flow
    from flows.route import route_flow
    from flows.score import score_flow
    from flows.select import select_flow
    from flows.simulate import DirectAnnotators
    from routing.policy import Policy
    from store.regression import corrected_items
    from store.policies import save_policy
    from tests.flows.conftest import make_dataset, write_files
    from tests.flows.seeded import AS_OF

    engine = engine_for(None)
    save_policy(engine, Policy.from_yaml(REVIEW_ALL))
    (tmp_path / "base").mkdir()
    (tmp_path / "feed").mkdir()
    base_items, base_labels = write_files(tmp_path / "base", make_dataset(600, seed=3))
    feed_items, feed_labels = write_files(tmp_path / "feed", _notices(40, seed=5))
    ingest_flow(str(base_items))
    seed_labels(engine, read_labels(base_labels), holdout_share=0.4)
    first = retrain_flow()
    assert first["status"] == "promoted" and first["regression"] is None  # nothing to compare with yet

    # the notices arrive, are routed under the first model and reviewed: people correct every one
    ingest_flow(str(feed_items))
    score_flow()
    calibrate_flow()
    route_flow(cycle=1)
    select_flow(cycle=1, as_of=AS_OF)
    truth = dict(read_labels(feed_labels))
    DirectAnnotators(engine, truth, ["finance", "sport", "weather"], 0.0, np.random.default_rng(0))(1)
    corrected = corrected_items(engine)
    assert len(corrected) >= 20 and {c.segment for c in corrected} == {"notices"}
    assert all(c.label == "weather" != c.predicted_label for c in corrected)

    # a candidate trained on the corrections gets them right where the promoted model got them wrong: promoted
    kept = retrain_flow()
    assert kept["status"] == "promoted" and kept["gate_reasons"] == []
    [notices] = kept["regression"]
    assert notices["segment"] == "notices" and notices["n"] == len(corrected) and notices["judged"]
    assert notices["incumbent_right"] == 0 and notices["candidate_right"] >= len(corrected) - 1

    # the next candidate is trained without the notices (a training window that dropped them; five seed labels
    # fewer, so it is a new training set): as good on the held-out seeds, but it makes the old mistakes again
    with engine.begin() as conn:
        conn.execute(update(Label).where(Label.item_id.in_(list(truth))).values(split="holdout"))
        dropped = conn.execute(select(Label.item_id).where(Label.split == "train").limit(5)).scalars().all()
        conn.execute(delete(Label).where(Label.item_id.in_(dropped)))
    assert len(corrected_items(engine)) == len(corrected)  # still corrections, now held out
    forgot = retrain_flow()
    assert forgot["status"] == "rejected"
    assert not forgot["comparison"]["worse"]  # refused for the regression set alone
    [notices] = forgot["regression"]
    assert notices["regressed"] and notices["candidate_right"] < notices["incumbent_right"] - notices["allowed_loss"]
    assert forgot["gate_reasons"] == [
        f"regression set of segment 'notices': {notices['candidate_right']} of {notices['n']} corrected items right, "
        f"the promoted model {notices['incumbent_right']} (at most {notices['allowed_loss']} fewer allowed)"]

    # the reason is where the other gate figures are: the candidate's metrics and the retrain audit event
    with engine.connect() as conn:
        rows = {r.version: r for r in conn.execute(select(ModelVersion.version, ModelVersion.status,
                                                          ModelVersion.metrics))}
        event = conn.execute(select(AuditEvent.payload).where(AuditEvent.kind == "retrain")
                             .order_by(AuditEvent.id.desc()).limit(1)).scalar_one()
    assert rows[forgot["version"]].status == "rejected" and rows[kept["version"]].status == "promoted"
    assert rows[forgot["version"]].metrics["gate_reasons"] == forgot["gate_reasons"]
    assert rows[forgot["version"]].metrics["regression"][0]["regressed"] is True
    assert event["version"] == forgot["version"] and event["gate_reasons"] == forgot["gate_reasons"]


# A retrain whose process is SIGKILLed at the line between registering its candidate and promoting it: no
# exception, no `finally`, no Prefect state change, exactly as a power cut or the OOM killer would leave it
KILLED_BETWEEN_REGISTER_AND_PROMOTE = textwrap.dedent("""
    import os, signal
    import flows.retrain
    from flows.retrain import retrain_flow

    def killed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    flows.retrain.promote_model = killed
    retrain_flow()
""")


def test_a_candidate_left_unsettled_by_sigkill_is_settled_by_the_next_run(sluice_home, dataset_files):
    """The process running retrain is SIGKILLed after registering its candidate and before promoting it; the next
    retrain on the same labels settles it by the verdict it was registered with (instead of calling it unchanged
    for ever), the store is not left locked, and there is one model version, not two."""
    from prefect.settings import PREFECT_API_URL

    from flows.common import engine_for
    from flows.ingest import ingest_flow, read_labels, seed_labels
    from flows.retrain import retrain_flow
    from store.lock import lock_status
    from store.registry import model_row, promoted_model
    from store.settings import get_settings

    items, labels = dataset_files
    engine = engine_for(None)
    ingest_flow(str(items))
    seed_labels(engine, list(dict(read_labels(labels)).items())[:300], holdout_share=0.4)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": PREFECT_API_URL.value()}
    crashed = subprocess.run([sys.executable, "-c", KILLED_BETWEEN_REGISTER_AND_PROMOTE], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    with engine.connect() as conn:
        (candidate,) = conn.execute(select(ModelVersion.version)).scalars().all()
    assert model_row(engine, candidate).status == "candidate" and promoted_model(engine) is None
    assert not lock_status(get_settings().resolved_database_url).held
    resumed = retrain_flow()
    assert (resumed["status"], resumed["version"], resumed.get("resumed")) == ("promoted", candidate, True)
    assert promoted_model(engine).version == candidate
    assert retrain_flow()["status"] == "unchanged"  # settled: nothing left to do
    with engine.connect() as conn:
        assert conn.execute(select(ModelVersion.version)).scalars().all() == [candidate]
