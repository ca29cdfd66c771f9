"""pytest plugin: a real Label Studio server for the test session, started from a migrated template data dir.

A fresh data dir costs ~40 s of migrations, so the first session builds a template once (start on a new data dir,
clean stop, marker file) under `${SLUICE_TEST_CACHE:-<repo>/.cache/test}/labelstudio-template`; every session
copies it into its own temporary folder and warm-starts from the copy on a free 127.0.0.1 port (~5 s).

Register it from the top-level conftest with `pytest_plugins = ["tests.labelstudio_fixture"]` (or run pytest with
`-p tests.labelstudio_fixture`). Tests ask for the `labelstudio` fixture; it fails (never skips) when the server
venv is missing, so real-server tests cannot silently vanish.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labeling.errors import LabelStudioError
from labeling.server import LOG_FILE_NAME, PID_FILE_NAME, LabelStudioServer
from store.settings import PROJECT_ROOT, SluiceSettings
from tests.watchdog import guard

TEMPLATE_NAME = "labelstudio-template"
TEMPLATE_MARKER = ".sluice-template.json"
COLD_START_TIMEOUT = 420.0
WARM_START_TIMEOUT = 180.0


@dataclass(frozen=True)
class LabelStudioInstance:
    """A running test server: where it is, how to authenticate, and the settings that describe it."""

    url: str
    token: str
    pid: int
    settings: SluiceSettings
    server: LabelStudioServer
    start_seconds: float
    template_seconds: float | None  # time to build the template in this session; None when it was cached


def cache_dir() -> Path:
    return Path(os.environ.get("SLUICE_TEST_CACHE") or PROJECT_ROOT / ".cache" / "test")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _base_settings() -> SluiceSettings:
    return SluiceSettings()  # reads SLUICE_LABELSTUDIO_VENV and the admin credentials from the environment


def _instance_settings(base: SluiceSettings, home: Path, port: int) -> SluiceSettings:
    return SluiceSettings(
        home=home,
        labelstudio_url=None,
        labelstudio_port=port,
        labelstudio_venv=base.labelstudio_venv,
        labelstudio_token=base.labelstudio_token,
        labelstudio_username=base.labelstudio_username,
        labelstudio_password=base.labelstudio_password,
    )


def _fingerprint(base: SluiceSettings) -> dict[str, str]:
    """What a template depends on: the credentials baked in at first start and the installed server version."""
    site = sorted(Path(base.labelstudio_venv).glob("lib/python*/site-packages/label_studio-*.dist-info"))
    return {
        "username": base.labelstudio_username,
        "password": base.labelstudio_password or "generated per installation",
        "token": base.labelstudio_token or "generated per installation",
        "label_studio": site[-1].name if site else "unknown",
    }


def _template_is_complete(template: Path, fingerprint: dict[str, str]) -> bool:
    try:
        return bool(json.loads((template / TEMPLATE_MARKER).read_text()) == fingerprint)
    except (OSError, ValueError):
        return False


def _build_template(base: SluiceSettings, template: Path) -> float:
    """Start Label Studio on a new data dir (migrations, admin user, token, secret key), stop it, keep the dir."""
    started = time.monotonic()
    build_home = template.with_name(template.name + ".building")
    shutil.rmtree(build_home, ignore_errors=True)
    shutil.rmtree(template, ignore_errors=True)
    server = LabelStudioServer(_instance_settings(base, build_home, free_port()))
    try:
        server.start(timeout=COLD_START_TIMEOUT)
    finally:
        stopped = server.stop()
    if stopped.forced:
        raise LabelStudioError(
            f"template server needed SIGKILL; not trusting {server.data_dir} as a template"
        )
    for leftover in (PID_FILE_NAME, LOG_FILE_NAME):
        (server.data_dir / leftover).unlink(missing_ok=True)
    os.replace(server.data_dir, template)
    shutil.rmtree(build_home, ignore_errors=True)
    (template / TEMPLATE_MARKER).write_text(json.dumps(_fingerprint(base)))
    return time.monotonic() - started


def ensure_template(base: SluiceSettings) -> tuple[Path, float | None]:
    """The template data dir, built under a file lock if absent or stale; returns (path, build seconds or None)."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    template = cache / TEMPLATE_NAME
    with open(cache / f"{TEMPLATE_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel sessions (xdist) build it once
        if _template_is_complete(template, _fingerprint(base)):
            return template, None
        return template, _build_template(base, template)


@pytest.fixture(scope="session")
def labelstudio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioInstance]:
    """A Label Studio server for this session on a free 127.0.0.1 port, stopped by PID at teardown."""
    base = _base_settings()
    executable = Path(base.labelstudio_venv) / "bin" / "label-studio"
    if not executable.is_file():
        pytest.fail(
            f"Label Studio server venv missing: {executable} not found. Run `make labelstudio-venv` "
            f"or set SLUICE_LABELSTUDIO_VENV to a venv with label-studio==1.23.2.",
            pytrace=False,
        )
    template, template_seconds = ensure_template(base)
    home = tmp_path_factory.mktemp("sluice-home")
    settings = _instance_settings(base, home, free_port())
    shutil.copytree(template, settings.labelstudio_data_dir, ignore=shutil.ignore_patterns(TEMPLATE_MARKER))
    server = LabelStudioServer(settings)
    started = time.monotonic()
    status = server.start(timeout=WARM_START_TIMEOUT)
    assert status.running and status.pid is not None, status
    guard(status.pid, group=True)  # a killed test process leaves no server running (its own process group)
    instance = LabelStudioInstance(
        url=status.url,
        token=settings.labelstudio_credentials().token,
        pid=status.pid,
        settings=settings,
        server=server,
        start_seconds=time.monotonic() - started,
        template_seconds=template_seconds,
    )
    try:
        yield instance
    finally:
        server.stop(timeout=15)
