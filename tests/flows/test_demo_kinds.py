"""`sluice demo --kind generation|pairwise` end to end on a small scale, against the real Label Studio: the
pipeline's score is calibrated and certified on the pilot's labels, part of each batch is auto-accepted with the
realised rejected share within the policy's target, the rest reaches people in the kind's queue and comes back,
and the answers leave as training data."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from rich.console import Console

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


@pytest.mark.parametrize("kind, export", [("generation", "sft"), ("pairwise", "dpo")])
def test_the_llm_demo_runs_the_loop_and_exports(kind, export, labelstudio, sluice_home, monkeypatch, tmp_path):
    from flows.common import engine_for
    from flows.demo_kinds import KIND_POLICY, run_kind_demo
    from labeling.export import export_training_data
    from routing.policy import Policy
    from store.settings import get_settings

    monkeypatch.setenv("SLUICE_LABELSTUDIO_URL", labelstudio.url)
    monkeypatch.setenv("SLUICE_LABELSTUDIO_TOKEN", labelstudio.token)
    get_settings.cache_clear()
    home = tmp_path / f"demo-{uuid.uuid4().hex[:6]}"
    rows = run_kind_demo(kind=kind, cycles=2, batch_size=150, pilot_labels=400, annotator_error=0.03, seed=1,
                         home=home, console=Console(file=io.StringIO()))
    target = Policy.load(KIND_POLICY).defaults.max_auto_error
    accepted = sum(r["auto_accepted"] for r in rows)
    wrong = sum(r["auto_errors"] for r in rows)
    assert accepted > 0 and all(r["review_count"] > 0 for r in rows)
    assert wrong / accepted <= target  # the realised rejected share among what skipped people
    engine = engine_for(get_settings().with_home(home.resolve()))
    out = tmp_path / f"{export}.jsonl"
    first = export_training_data(engine, export, out)
    assert first.written > 0 and export_training_data(engine, export, out).written == 0
    record = json.loads(out.read_text().splitlines()[-1])
    assert record["metadata"]["item_id"] and record["metadata"]["selection_reason"]
