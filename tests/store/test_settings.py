"""The settings object: frozen, variants validated, secrets kept out of its JSON form (what Prefect stores)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from store.settings import (
    MASK,
    SluiceSettings,
    get_settings,
    masked_service_url,
    masked_url,
    settings_or_environment,
)

URL = "postgresql+psycopg://sluice:Pw-secret-1@db.internal:5432/sluice?sslmode=require"
LS_URL = "https://reviewer:ls-url-secret-5@labelstudio.internal:8443/ls?api_key=ls-key-secret-6&team=ops"
DASK = "tls://scheduler:dask-secret-7@dask.internal:8786"


@pytest.fixture
def settings(monkeypatch, tmp_path) -> SluiceSettings:
    for name in ("SLUICE_DATABASE_URL", "SLUICE_TASK_RUNNER", "SLUICE_LABELSTUDIO_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLUICE_HOME", str(tmp_path / "home"))
    return SluiceSettings(database_url=URL, labelstudio_token="tok-secret-2", labelstudio_password="pw-secret-3",
                          labelstudio_url=LS_URL, dask_address=DASK)


def test_settings_are_frozen(settings):
    with pytest.raises(ValidationError):
        settings.home = Path("/elsewhere")  # type: ignore[misc]
    assert hash(settings) == hash(settings.variant())


def test_a_variant_changes_what_it_names_and_is_validated(settings, tmp_path):
    dask = settings.variant(task_runner="dask", dask_workers=3)
    assert (dask.task_runner, dask.dask_workers, dask.database_url) == ("dask", 3, URL)
    assert settings.task_runner == "threads"  # the original is untouched
    with pytest.raises(ValidationError, match="task_runner"):
        settings.variant(task_runner="processes")
    with pytest.raises(ValidationError, match="dask_workers"):
        settings.variant(dask_workers=0)
    with pytest.raises(ValueError, match="unknown settings"):
        settings.variant(databse_url="sqlite://")


def test_a_variant_does_not_read_the_environment_again(settings, monkeypatch):
    monkeypatch.setenv("SLUICE_TASK_RUNNER", "dask")
    assert settings.variant(dask_workers=4).task_runner == "threads"


def test_with_home_moves_the_state_there(settings, tmp_path):
    moved = settings.with_home(tmp_path / "other")
    assert moved.resolved_database_url == f"sqlite:///{(tmp_path / 'other').resolve() / 'sluice.db'}"
    assert moved.models_dir == (tmp_path / "other").resolve() / "models"
    assert moved.reports_dir == (tmp_path / "other").resolve() / "reports"
    assert moved.labelstudio_token == settings.labelstudio_token


def test_none_means_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SLUICE_HOME", str(tmp_path / "env-home"))
    get_settings.cache_clear()
    try:
        assert settings_or_environment(None).resolved_home == (tmp_path / "env-home").resolve()
        given = get_settings().with_home(tmp_path / "given")
        assert settings_or_environment(given) is given
    finally:
        get_settings.cache_clear()


def test_the_json_form_holds_no_secret(settings):
    """Prefect stores a flow's parameters through FastAPI's `jsonable_encoder`, i.e. `model_dump(mode="json")`."""
    from fastapi.encoders import jsonable_encoder

    stored = jsonable_encoder({"settings": settings})
    text = json.dumps(stored)
    for secret in ("Pw-secret-1", "tok-secret-2", "pw-secret-3", "ls-url-secret-5", "ls-key-secret-6",
                   "dask-secret-7"):
        assert secret not in text
        assert secret not in repr(settings) and secret not in str(settings)
    shown = stored["settings"]
    assert shown["database_url"] == "postgresql+psycopg://sluice:***@db.internal:5432/sluice?sslmode=require"
    assert shown["labelstudio_url"] == "https://reviewer:***@labelstudio.internal:8443/ls?api_key=***&team=ops"
    assert shown["dask_address"] == "tls://scheduler:***@dask.internal:8786"
    assert settings.shown_labelstudio_url == shown["labelstudio_url"]
    assert "db.internal" in repr(settings) and "labelstudio.internal" in repr(settings)  # where, without secrets
    assert shown["labelstudio_token"] == shown["labelstudio_password"] == MASK
    assert settings.model_dump()["database_url"] == URL  # in the process, the values are whole


def test_a_password_in_the_query_is_masked_too():
    shown = masked_url("postgresql+psycopg://db.internal/sluice?user=sluice&password=Pw-secret-4")
    assert "Pw-secret-4" not in shown and "sluice" in shown
    shown = masked_url("postgresql+psycopg://db.internal/sluice?options=-c%20password%3DPw-secret-5&sslmode=require")
    assert "Pw-secret-5" not in shown and "sslmode=require" in shown


def test_the_json_form_is_refused_as_settings(settings):
    from fastapi.encoders import jsonable_encoder

    with pytest.raises(ValidationError) as error:
        SluiceSettings.model_validate(jsonable_encoder(settings))
    assert {e["loc"][0] for e in error.value.errors()} == {"database_url", "labelstudio_token", "labelstudio_password",
                                                           "labelstudio_url", "dask_address"}


@pytest.mark.parametrize("url, shown", [
    ("http://127.0.0.1:18080", "http://127.0.0.1:18080"),
    ("https://user:pw@ls.example.com/", "https://user:***@ls.example.com/"),
    ("https://Tok3n@ls.example.com/", "https://***@ls.example.com/"),  # a bare user part is a token
    ("https://ls.example.com/?token=t&access_token=a&X-Amz-Signature=s&page=2",
     "https://ls.example.com/?token=***&access_token=***&X-Amz-Signature=***&page=2"),
    ("tcp://10.0.0.5:8786", "tcp://10.0.0.5:8786"),
    ("https://x.blob.core.windows.net/c?sv=2024&sig=AbC&se=1", "https://x.blob.core.windows.net/c?sv=2024&sig=***&se=1"),
    ("https://ls.example.com/?a=1;token=t", "https://ls.example.com/?a=1&token=***"),
    ("https://ls.example.com/#access_token=t&state=s", "https://ls.example.com/#access_token=***&state=s"),
    ("https://ls.example.com/?session=s&passphrase=p&jwt=j", "https://ls.example.com/?session=***&passphrase=***&jwt=***"),
])
def test_service_urls_are_shown_without_credentials(url, shown):
    assert masked_service_url(url) == shown


# --- Label Studio credentials: generated per installation, never a built-in one sent elsewhere --------------------

def test_the_local_server_gets_credentials_of_its_own_kept_readable_by_this_user_only(tmp_path):
    import stat

    from store.settings import CREDENTIALS_FILE, LEGACY_CREDENTIALS

    first = SluiceSettings(home=tmp_path / "a").labelstudio_credentials()
    again = SluiceSettings(home=tmp_path / "a").labelstudio_credentials()
    other = SluiceSettings(home=tmp_path / "b").labelstudio_credentials()
    assert first == again and first.token != other.token and first.password != other.password
    assert len(first.token) == 40 and first.token not in (LEGACY_CREDENTIALS.token,)
    path = tmp_path / "a" / "labelstudio" / CREDENTIALS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # a configured token and password win; a data folder made before the file existed keeps what it was made with
    given = SluiceSettings(home=tmp_path / "a", labelstudio_token="tok-given-1", labelstudio_password="pw-given-1")
    assert given.labelstudio_credentials() == ("tok-given-1", "pw-given-1")
    old = tmp_path / "old" / "labelstudio"
    old.mkdir(parents=True)
    (old / "label_studio.sqlite3").write_bytes(b"")
    assert SluiceSettings(home=tmp_path / "old").labelstudio_credentials() == LEGACY_CREDENTIALS


def test_a_server_elsewhere_needs_an_explicit_token_and_gets_only_that(tmp_path):
    remote = SluiceSettings(home=tmp_path, labelstudio_url="https://labels.example.org")
    with pytest.raises(ValueError, match="SLUICE_LABELSTUDIO_TOKEN is required for the Label Studio at "
                                         "https://labels.example.org"):
        remote.labelstudio_credentials()
    assert not (tmp_path / "labelstudio").exists()  # nothing generated for it either
    given = remote.variant(labelstudio_token="their-token-1")
    assert given.labelstudio_credentials().token == "their-token-1"
    local = SluiceSettings(home=tmp_path, labelstudio_url="http://127.0.0.1:18099")
    assert len(local.labelstudio_credentials().token) == 40  # this machine: the local data folder's own


def test_the_console_answers_loopback_names_and_the_allowed_ones_only():
    from store.settings import SluiceSettings

    assert SluiceSettings(ui_allowed_hosts="").console_hosts == ["127.0.0.1", "localhost", "::1"]
    given = SluiceSettings(ui_allowed_hosts=" Console.Example.org, *.corp.example ,localhost")
    assert given.console_hosts == ["127.0.0.1", "localhost", "::1", "console.example.org", "*.corp.example"]
    for bad in ("*", "a*.example", "*example.org", "http://x", "user@host", "host:8501", "two words"):
        with pytest.raises(ValueError, match="not a host name"):
            SluiceSettings(ui_allowed_hosts=bad)
