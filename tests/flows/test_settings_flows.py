"""Flows follow the one settings object they are given, and Prefect stores no secret of it.

The environment (the `sluice_home` fixture) names one home; the settings given to the flows name another, with a
database URL that carries a password and Label Studio credentials of their own. Everything the flows write must
land where the settings say, and the flow-run parameters Prefect keeps in its database (read back through its
API) must hold none of the secrets.
"""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

DB_PASSWORD = "Pw-d0-not-store-4a7c"
LS_TOKEN = "ls-token-d0-not-store-91be"
LS_PASSWORD = "ls-admin-d0-not-store-5f2e"
LS_URL_PASSWORD = "ls-url-d0-not-store-3c1d"


def _with_password(url: str) -> str:
    """The fixture's PostgreSQL URL with a password in it (the test cluster trusts local connections, so it is
    carried along and never checked, exactly what must not leak)."""
    from sqlalchemy import make_url

    return make_url(url).set(password=DB_PASSWORD).render_as_string(hide_password=False)


def _stored_parameters(flow_names: set[str], home: str) -> list[dict]:
    """The parameters Prefect's database holds for this test's flow runs (those given the settings of `home`)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200, sort=FlowRunSort.START_TIME_DESC)
        names = {flow.id: flow.name for flow in client.read_flows(limit=200)}
    return [run.parameters for run in runs if names.get(run.flow_id) in flow_names
            and (run.parameters.get("settings") or {}).get("home") == home]


def test_flows_write_where_their_settings_say_and_prefect_stores_no_secret(sluice_home, dataset_files, tmp_path):
    import os

    from flows.calibrate import calibrate_flow
    from flows.cycle import run_cycle
    from store.registry import promoted_model
    from store.settings import MASK, get_settings, masked_url
    from tests.flows.seeded import AS_OF, ingest_seed_and_train

    environment = get_settings()
    elsewhere = tmp_path / "elsewhere"
    url = os.environ.get("SLUICE_DATABASE_URL")
    settings = environment.with_home(elsewhere).variant(
        database_url=_with_password(url) if url else None, labelstudio_token=LS_TOKEN,
        labelstudio_password=LS_PASSWORD, labelstudio_url=f"http://reviewer:{LS_URL_PASSWORD}@127.0.0.1:9/")
    items, labels = dataset_files
    engine, truth = ingest_seed_and_train(settings, items, labels)
    run_cycle(settings=settings, push=False, as_of=AS_OF)
    calibrate_flow(settings=settings)

    # the model and the reliability diagrams are under the settings' home, nothing under the environment's
    model = promoted_model(engine)
    from flows.common import artifact_file

    # recorded relative to the models folder (a copied home loads its own), and found in the settings' folder
    assert model is not None and model.artifact_path == f"{model.version}.joblib"
    assert artifact_file(model, settings) == settings.models_dir / model.artifact_path
    assert (settings.models_dir / model.artifact_path).is_file()
    assert list(settings.reports_dir.glob("calibration-*.png"))
    assert not (environment.models_dir.exists() and any(environment.models_dir.iterdir()))
    assert not (environment.reports_dir.exists() and any(environment.reports_dir.iterdir()))
    if url is None:
        assert (elsewhere / "sluice.db").exists() and not (sluice_home / "sluice.db").exists()

    stored = _stored_parameters({"ingest", "retrain", "score", "calibrate", "route", "select"},
                                str(settings.home))
    flows_seen = {json.dumps(sorted(p)) for p in stored}
    assert len(stored) >= 7, f"expected the flow runs of this test, found {len(stored)}: {flows_seen}"
    text = json.dumps(stored)
    for secret in (DB_PASSWORD, LS_TOKEN, LS_PASSWORD, LS_URL_PASSWORD):
        assert secret not in text
    for parameters in stored:
        shown = parameters["settings"]
        assert shown["labelstudio_token"] == MASK and shown["labelstudio_password"] == MASK
        assert shown["labelstudio_url"] == "http://reviewer:***@127.0.0.1:9/"
        assert shown["database_url"] == (masked_url(settings.database_url) if url else None)
    if url is not None:
        assert ":***@" in stored[0]["settings"]["database_url"]


def test_a_flow_given_the_stored_form_of_its_settings_refuses_it(sluice_home):
    """What Prefect stored cannot be handed back as settings (a deployment run given it as a parameter): the
    masked secrets would stand in for the real ones. Such a run fails on its parameters, before any work."""
    from fastapi.encoders import jsonable_encoder

    from flows.retrain import retrain_flow
    from store.settings import get_settings

    stored = jsonable_encoder(get_settings().variant(database_url="postgresql+psycopg://u:pw@127.0.0.1:1/db"))
    state = retrain_flow(settings=stored, return_state=True)
    assert state.is_failed()
    assert "masked" in repr(state.result(raise_on_failure=False)), state.message
