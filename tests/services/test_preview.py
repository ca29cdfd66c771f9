"""services.preview and the store reads under it (store.figures.arrivals, held_out_models) on a store that real flow
runs filled: three cycles of the loop with direct (simulated) annotators, on SQLite and PostgreSQL."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.flows.conftest import dataset_files, sluice_home  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

BATCH = 150


@pytest.fixture
def looped(sluice_home, dataset_files, tmp_path):  # noqa: F811
    """Seed 200 labels (half held out) and train, then three cycles of the loop, each ingesting the next 150 items
    first, on this test's store (either backend)."""
    from flows.common import engine_for
    from store.settings import get_settings
    from tests.flows.seeded import seed_then_loop

    engine = seed_then_loop(get_settings(), *dataset_files, tmp_path, cycles=3, batch_size=BATCH)
    assert engine_for(None).url == engine.url  # the store the tests read
    return engine


def test_arrivals_count_first_routings_between_cycle_starts_and_the_preview_reads_them(looped) -> None:
    from routing.preview import preview_segment
    from services.certify import certifying_labels
    from services.preview import arrival_rate, preview_inputs, preview_policy
    from store import figures, labels, policies

    engine = looped
    started = {row.cycle: row.started_at for row in figures.cycle_reports(engine)}
    window = figures.arrivals(engine, cycles=5)  # only three cycles: the first opens the window
    assert (window.first_cycle, window.last_cycle) == (2, 3)
    assert (window.since, window.until) == (started[1], started[3])
    assert window.items == {"default": 2 * BATCH}  # each cycle routed the batch ingested just before it
    last = figures.arrivals(engine, cycles=1)
    assert (last.first_cycle, last.since, last.items) == (3, started[2], {"default": BATCH})

    rate = arrival_rate(engine, "default")
    hours = (started[3] - started[1]).total_seconds() / 3600
    assert rate.items == 2 * BATCH and rate.cycles == 2 and rate.hours == pytest.approx(hours)
    assert rate.per_day == pytest.approx(2 * BATCH * 24 / hours)
    assert arrival_rate(engine, "elsewhere").per_day == 0.0

    inputs = preview_inputs(engine, "default")
    held = certifying_labels(engine, inputs.model_version, segment="default")["default"]  # what route certifies on
    assert len(held.item_ids) >= len(labels.held_out_labels(engine, inputs.model_version, segment="default")["default"].item_ids)
    np.testing.assert_array_equal(inputs.confidence, held.confidence)
    np.testing.assert_array_equal(inputs.correct, held.correct.astype(bool))
    assert inputs.calibrated is not None and inputs.calibrated.shape == held.confidence.shape  # reports exist
    assert inputs.arrivals_per_day == rate.per_day and inputs.missing is None

    policy, _ = policies.active_policy(engine)
    previews = preview_policy(engine, policy)
    assert set(previews) == {"default", "finance"}  # finance: named by the default policy, no items
    assert previews["finance"].threshold_kind == "none: everything to review" and previews["finance"].review_per_day == 0
    expected = preview_segment(held.confidence, held.correct.astype(bool), rules=policy.for_segment("default"),
                               arrivals_per_day=rate.per_day, calibrated=inputs.calibrated)
    assert previews["default"] == expected and previews["default"].n_labels == len(held.item_ids) >= 100


def test_a_model_just_promoted_falls_back_to_the_one_that_scored_the_labels(looped) -> None:
    from services.preview import held_out_model, preview_inputs
    from store import figures, labels, registry

    engine = looped
    scored = figures.held_out_models(engine)
    assert scored and all(row.n == len(labels.held_out_labels(engine, row.model_version)["default"].item_ids)
                          for row in scored)
    assert [row.scored_at for row in scored] == sorted((row.scored_at for row in scored), reverse=True)
    assert figures.held_out_models(engine, segment="elsewhere") == []
    # the retrain flow's last step, as it records a promotion: a new model that has scored nothing yet
    registry.register_model(engine, {"version": "just-promoted", "kind": "text", "data_hash": "x"})
    registry.promote_model(engine, "just-promoted")
    assert registry.promoted_version(engine) == "just-promoted"
    assert held_out_model(engine, "default") == scored[0].model_version
    assert preview_inputs(engine, "default").model_version == scored[0].model_version


def test_an_empty_store_says_which_commands_fill_the_preview(sluice_home) -> None:  # noqa: F811
    from flows.common import engine_for
    from routing.policy import Policy
    from services.preview import NO_ARRIVALS, NO_MODEL, preview_inputs, preview_policy

    engine = engine_for(None)
    inputs = preview_inputs(engine, "default")
    assert inputs.model_version is None and inputs.arrivals is None and inputs.confidence.size == 0
    assert inputs.missing == f"{NO_MODEL}; {NO_ARRIVALS}"
    assert "`sluice cycle`" in NO_ARRIVALS and "`sluice seed-labels`" in NO_MODEL
    preview = preview_policy(engine, Policy(name="p", segments={"s": {"stakes": "high"}}))
    assert set(preview) == {"s"}  # no items yet: the policy's named segments only
    assert preview["s"].threshold_kind == "none: everything to review" and math.isnan(preview["s"].review_per_day)
    assert preview["s"].reason == NO_ARRIVALS
