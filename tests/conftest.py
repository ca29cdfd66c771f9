"""Session-wide test set-up: the real-server fixtures, one Prefect harness, and a fresh Sluice home per test."""

from __future__ import annotations

import os

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
if "SLUICE_SIGNING_KEY_FILE" not in os.environ and "SLUICE_SIGNING_KEY" not in os.environ:
    # the tests' own model-signing key (children inherit it), never the user's ~/.config/sluice/signing.key
    import tempfile as _tempfile

    os.environ["SLUICE_SIGNING_KEY_FILE"] = os.path.join(_tempfile.mkdtemp(prefix="sluice-test-key-"), "signing.key")

import pytest  # noqa: E402

pytest_plugins = ["tests.labelstudio_fixture", "tests.postgres_fixture"]


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for the whole session (it takes ~10 s to start), heartbeats off."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        _guard_prefect_server()
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield


def _guard_prefect_server() -> None:
    """The harness's server is a child process of this one: a watchdog stops it if this process is killed."""
    from prefect.server.api.server import SubprocessASGIServer

    from tests.watchdog import guard

    process = getattr(SubprocessASGIServer._instances.get(None), "server_process", None)
    if process is not None:
        guard(process.pid)


@pytest.fixture
def sluice_home(tmp_path, monkeypatch):
    """A fresh SLUICE_HOME (database, models) for one test."""
    from store.db import dispose_engines
    from store.settings import get_settings

    home = tmp_path / "sluice-home"
    monkeypatch.setenv("SLUICE_HOME", str(home))
    monkeypatch.delenv("SLUICE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    dispose_engines()
    yield home
    get_settings.cache_clear()
    dispose_engines()
