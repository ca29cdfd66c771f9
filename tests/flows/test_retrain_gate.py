"""The promotion gate in real retrain flow runs: a candidate is kept out only on evidence that it is worse."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select, update

from store.models import Label, ModelVersion

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
