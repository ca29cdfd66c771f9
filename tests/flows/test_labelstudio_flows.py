"""Push and pull flows against a real Label Studio: faults leave nothing lost and nothing doubled."""

from __future__ import annotations

import uuid
from collections import Counter

import numpy as np
import pytest
from sqlalchemy import func, select, update

from store.models import Annotation, Label, ReviewTask

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture
def ls_env(labelstudio, sluice_home, monkeypatch):
    from store.settings import get_settings

    monkeypatch.setenv("SLUICE_LABELSTUDIO_URL", labelstudio.url)
    monkeypatch.setenv("SLUICE_LABELSTUDIO_TOKEN", labelstudio.token)
    monkeypatch.setenv("SLUICE_LABELSTUDIO_PROJECT", f"flow test {uuid.uuid4().hex[:8]}")
    get_settings.cache_clear()
    return labelstudio


@pytest.fixture
def queued(ls_env, dataset_files):
    """A store with a trained model and a pending outbox of review tasks; returns (engine, truth)."""
    from tests.flows.seeded import seed_and_route

    return seed_and_route(*dataset_files)


def project_task_items(engine) -> Counter[str]:
    """How many Label Studio tasks each item has in the flows' project."""
    from flows.labelstudio import open_queue

    queue, project_id = open_queue(engine)
    with engine.connect() as conn:
        keys = conn.execute(select(ReviewTask.batch_key).distinct()).scalars().all()
    counts: Counter[str] = Counter()
    for key in keys:
        if key:
            counts.update(queue.tasks_for_batch(project_id, key).keys())
    return counts


def pending_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(ReviewTask).where(ReviewTask.state == "pending")).scalar()


def test_push_annotate_pull_round_trip(queued):
    from flows.labelstudio import open_queue, pull_flow, push_flow
    from labeling.simulate import SimulatedAnnotators

    engine, truth = queued
    waiting = pending_count(engine)
    assert waiting > 0
    assert push_flow()["pushed"] == waiting
    assert push_flow() == {"pushed": 0, "pending": 0}
    assert set(project_task_items(engine).values()) == {1}
    with engine.connect() as conn:
        tasks = conn.execute(select(ReviewTask.ls_task_id, ReviewTask.item_id, ReviewTask.selection_reason,
                                    ReviewTask.decision_id)).all()
    queue, project_id = open_queue(engine)
    people = SimulatedAnnotators(queue=queue, project_id=project_id, true_labels=truth,
                                 labels=sorted(set(truth.values())), error_rate=0.0, rng=np.random.default_rng(0))
    people.annotate([t[0] for t in tasks], [t[1] for t in tasks])
    from flows.common import resolution_rules
    from labeling.resolve import label_split

    rules = resolution_rules(engine)
    first = pull_flow(cycle=1)
    assert first["new"] == len(tasks) and first["resolved"] == len(tasks)
    again = pull_flow(cycle=1)
    assert again["new"] == 0 and again["updated"] == 0
    with engine.connect() as conn:
        labels = {r.item_id: r for r in conn.execute(select(Label).where(Label.source == "annotation"))}
        annotations = conn.execute(select(func.count()).select_from(Annotation)).scalar()
    assert annotations == len(tasks) and len(labels) == len(tasks)
    splits = Counter()
    for ls_task_id, item_id, reason, decision_id in tasks:
        label = labels[item_id]
        assert label.label == truth[item_id]
        assert label.selection_reason == reason
        # uncertainty picks train; an audit trains by the policy's audit_train_share (a fixed draw per decision)
        assert label.split == label_split(reason, decision_id, rules("default"))
        splits[(reason == "audit", label.split)] += 1
        assert label.model_version and label.policy_version and label.annotator
    assert splits[(False, "holdout")] == 0 and splits[(True, "holdout")] > 0 and splits[(True, "train")] > 0


def test_labelstudio_down_during_push_keeps_items_queued(queued, monkeypatch, ls_env):
    from flows.labelstudio import pull_flow, push_flow
    from store.settings import get_settings
    from tests.labelstudio_fixture import free_port

    engine, _ = queued
    waiting = pending_count(engine)
    monkeypatch.setenv("SLUICE_LABELSTUDIO_URL", f"http://127.0.0.1:{free_port()}")
    get_settings.cache_clear()
    down = push_flow(return_state=True)  # a failed run, with the reason, after the client's retries
    assert down.is_failed() and "push: Label Studio is unavailable, " in down.message and "batch(es) stay queued" in down.message
    assert pending_count(engine) == waiting
    down = pull_flow(cycle=1, return_state=True)  # the watermark stays; the next pull catches up
    assert down.is_failed() and "pull: Label Studio is unavailable; the review watermark stays" in down.message
    monkeypatch.setenv("SLUICE_LABELSTUDIO_URL", ls_env.url)
    get_settings.cache_clear()
    assert push_flow()["pushed"] == waiting
    counts = project_task_items(engine)
    assert len(counts) == waiting and set(counts.values()) == {1}


def test_a_token_label_studio_refuses_fails_sluice_push_and_keeps_every_task_queued(queued, monkeypatch):
    """`sluice push` with a token the server refuses exits 1 with the reason on one line (it exited 0 before);
    nothing leaves the outbox."""
    from typer.testing import CliRunner

    from flows.cli import app
    from store.settings import get_settings

    engine, _ = queued
    waiting = pending_count(engine)
    monkeypatch.setenv("SLUICE_LABELSTUDIO_TOKEN", "not-the-token-0123456789")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["push"], catch_exceptions=False)
    output = " ".join(result.output.split())
    assert result.exit_code == 1 and "push: Label Studio is unavailable" in output and "stay queued" in output
    assert "Traceback" not in output and pending_count(engine) == waiting


def test_crash_after_labelstudio_accepted_a_batch_creates_no_duplicates(queued):
    """Label Studio took the batch, then the process died before the store recorded it."""
    from flows.labelstudio import _spec, assign_batch_keys, open_queue, outbox_batch, push_flow

    engine, _ = queued
    assign_batch_keys(engine)
    with engine.connect() as conn:
        key = conn.execute(select(ReviewTask.batch_key).where(ReviewTask.state == "pending")).scalars().first()
    rows = outbox_batch(engine, key)
    with engine.begin() as conn:  # the attempt was recorded before sending, as push_batch does
        conn.execute(update(ReviewTask).where(ReviewTask.batch_key == key).values(attempts=1))
    queue, project_id = open_queue(engine)
    queue.import_tasks(project_id, [_spec(*r) for r in rows])  # ... accepted, then the crash
    waiting = pending_count(engine)
    assert push_flow()["pushed"] == waiting
    counts = project_task_items(engine)
    assert len(counts) == waiting and set(counts.values()) == {1}
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ReviewTask)
                            .where(ReviewTask.ls_task_id.is_(None))).scalar() == 0


def test_webhook_pulls_early(queued):
    """Label Studio calls the receiver on 127.0.0.1 after each annotation; the receiver's pull brings the labels
    in without a scheduled pull."""
    import time

    from flows.labelstudio import open_queue, pull_flow, push_flow
    from labeling.simulate import SimulatedAnnotators
    from labeling.webhook import WebhookReceiver

    engine, truth = queued
    push_flow()
    queue, project_id = open_queue(engine)
    receiver = WebhookReceiver(on_change=lambda: pull_flow(cycle=1), token="hook-token")
    url = receiver.start()
    try:
        queue.ensure_webhook(project_id, url, token="hook-token")
        queue.ensure_webhook(project_id, url, token="hook-token")  # re-registering replaces, never doubles
        with engine.connect() as conn:
            tasks = conn.execute(select(ReviewTask.ls_task_id, ReviewTask.item_id).limit(5)).all()
        people = SimulatedAnnotators(queue=queue, project_id=project_id, true_labels=truth,
                                     labels=sorted(set(truth.values())), error_rate=0.0,
                                     rng=np.random.default_rng(0))
        started = time.monotonic()
        people.annotate([t[0] for t in tasks], [t[1] for t in tasks])
        assert time.monotonic() - started < 5 * 1.5, "each webhook is answered at once"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                got = conn.execute(select(func.count()).select_from(Label).where(Label.source == "annotation")).scalar()
            if got == len(tasks):
                break
            time.sleep(0.2)
        assert got == len(tasks)
        assert receiver.wait_idle(60)
        assert receiver.events == len(tasks) and 1 <= receiver.runs <= len(tasks) and receiver.errors == 0
    finally:
        receiver.stop()
