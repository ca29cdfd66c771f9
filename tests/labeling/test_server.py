"""LabelStudioServer: env scrubbing and failure paths with fake executables, then start/stop/status for real."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest

from labeling.errors import (
    LabelStudioPortBusy,
    LabelStudioStartError,
    LabelStudioStartTimeout,
    LabelStudioVenvMissing,
)
from labeling.server import LabelStudioServer, labelstudio_env
from store.settings import SluiceSettings
from tests.labelstudio_fixture import LabelStudioInstance, ensure_template, free_port


def settings_for(home: Path, venv: Path, port: int | None = None) -> SluiceSettings:
    return SluiceSettings(
        home=home, labelstudio_venv=venv, labelstudio_port=port or free_port(), labelstudio_url=None
    )


def fake_venv(tmp_path: Path, body: str) -> Path:
    """A fake server venv whose `bin/label-studio` is a small Python script with the given body."""
    venv = tmp_path / "fake-venv"
    (venv / "bin").mkdir(parents=True)
    script = venv / "bin" / "label-studio"
    script.write_text(f"#!{sys.executable}\nimport json, os, sys, time\n{body}\n")
    script.chmod(0o755)
    return venv


# ---------------------------------------------------------------------- unit


def test_env_is_scrubbed_of_leaking_names_and_sets_the_headless_options(tmp_path: Path) -> None:
    inherited = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "USERNAME": "me",
        "PASSWORD": "x",
        "PORT": "1",
        "HOST": "0.0.0.0",
        "DEBUG": "1",
        "LABEL_STUDIO_USER_TOKEN": "leak",
        "DJANGO_SETTINGS_MODULE": "x",
        "POSTGRE_HOST": "db",
        "HEARTEX_PORT": "2",
        "PYTHONPATH": "/work/main",
        "VIRTUAL_ENV": "/tmp/appvenv",
    }
    settings = settings_for(tmp_path, tmp_path / "venv", port=18123)
    env = labelstudio_env(settings, inherited)
    for leaked in (
        "USERNAME",
        "PASSWORD",
        "PORT",
        "HOST",
        "DEBUG",
        "DJANGO_SETTINGS_MODULE",
        "POSTGRE_HOST",
        "HEARTEX_PORT",
        "PYTHONPATH",
        "VIRTUAL_ENV",
    ):
        assert leaked not in env
    assert env["PATH"] == "/usr/bin" and env["HOME"] == "/root"
    credentials = settings.labelstudio_credentials()
    assert env["LABEL_STUDIO_USER_TOKEN"] == credentials.token
    assert env["LABEL_STUDIO_BASE_DATA_DIR"] == str(settings.labelstudio_data_dir)
    assert env["LABEL_STUDIO_USERNAME"] == settings.labelstudio_username
    assert env["LABEL_STUDIO_PASSWORD"] == credentials.password
    assert env["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"
    assert env["LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK"] == "true"
    assert env["SENTRY_DSN"] == "" and env["FRONTEND_SENTRY_DSN"] == ""
    assert env["COLLECT_ANALYTICS"] == "false" and env["LATEST_VERSION_CHECK"] == "false"


def test_start_without_the_venv_says_how_to_install_it(tmp_path: Path) -> None:
    server = LabelStudioServer(settings_for(tmp_path, tmp_path / "no-such-venv"))
    with pytest.raises(LabelStudioVenvMissing, match="make labelstudio-venv"):
        server.start()


def test_start_refuses_a_port_another_process_listens_on(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path, "sys.exit('must not be started')")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        server = LabelStudioServer(settings_for(tmp_path, venv, port=port))
        with pytest.raises(LabelStudioPortBusy, match=f"port {port} on 127.0.0.1 is already in use"):
            server.start(timeout=5)
    assert not server.pid_file.exists()


def test_the_child_gets_the_documented_command_line_and_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = fake_venv(
        tmp_path,
        "open(os.path.join(os.environ['LABEL_STUDIO_BASE_DATA_DIR'], 'seen.json'), 'w')"
        ".write(json.dumps({'argv': sys.argv[1:], 'env': dict(os.environ), 'cwd': os.getcwd(), 'sid': os.getsid(0)}))\n"
        "print('fake label studio: giving up'); sys.exit(3)",
    )
    monkeypatch.setenv("USERNAME", "leaky-user")
    monkeypatch.setenv("LABEL_STUDIO_PORT", "1")
    server = LabelStudioServer(settings_for(tmp_path, venv))
    with pytest.raises(
        LabelStudioStartError, match="exited during start-up(.|\n)*fake label studio: giving up"
    ):
        server.start(timeout=30)
    seen = json.loads((server.data_dir / "seen.json").read_text())
    assert seen["argv"] == [
        "start",
        "--no-browser",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(server.port),
        "--debug",
    ]
    assert "USERNAME" not in seen["env"] and "LABEL_STUDIO_PORT" not in seen["env"]
    assert seen["cwd"] == str(server.data_dir)
    assert seen["sid"] != os.getsid(0)  # detached in its own session
    assert not server.pid_file.exists()


def test_a_start_that_never_answers_times_out_kills_the_process_and_shows_the_log(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path, "for k in range(30): print(f'migrating {k}', flush=True)\ntime.sleep(120)")
    server = LabelStudioServer(settings_for(tmp_path, venv))
    with pytest.raises(LabelStudioStartTimeout) as raised:
        server.start(timeout=1.5)
    message = str(raised.value)
    assert "migrating 29" in message and "migrating 9\n" not in message  # the last 20 lines only
    pid = int(message.split("(PID ")[1].split(")")[0])
    assert not Path(f"/proc/{pid}").exists() or "label-studio" not in Path(f"/proc/{pid}/cmdline").read_text()
    assert not server.pid_file.exists()


def test_stop_without_a_server_is_a_clear_no_op(tmp_path: Path) -> None:
    server = LabelStudioServer(settings_for(tmp_path, tmp_path / "venv"))
    result = server.stop()
    assert (result.was_running, result.pid, result.forced) == (False, None, False)
    assert "not running" in result.message
    assert server.status().running is False


def test_stop_with_a_stale_pid_file_removes_it_and_kills_nothing(tmp_path: Path) -> None:
    server = LabelStudioServer(settings_for(tmp_path, tmp_path / "venv"))
    server.data_dir.mkdir(parents=True)
    server.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not a Label Studio: must not be signalled
    result = server.stop()
    assert result.was_running is False and "stale pid file" in result.message
    assert not server.pid_file.exists()


# ---------------------------------------------------------------------- integration


@pytest.mark.integration
def test_status_of_the_running_server(labelstudio: LabelStudioInstance) -> None:
    status = labelstudio.server.status()
    assert status.running is True
    assert status.pid == labelstudio.pid
    assert status.url == labelstudio.url
    assert status.version == "1.23.2"
    assert status.data_dir == labelstudio.settings.labelstudio_data_dir
    assert (status.data_dir / "labelstudio.pid").read_text().strip() == str(labelstudio.pid)


@pytest.mark.integration
def test_start_on_a_running_server_returns_it(labelstudio: LabelStudioInstance) -> None:
    again = LabelStudioServer(labelstudio.settings).start(timeout=30)
    assert again.running and again.pid == labelstudio.pid


@pytest.mark.integration
def test_a_second_server_on_the_busy_port_is_refused(
    labelstudio: LabelStudioInstance, tmp_path: Path
) -> None:
    other = LabelStudioServer(
        settings_for(
            tmp_path, labelstudio.settings.labelstudio_venv, port=labelstudio.settings.labelstudio_port
        )
    )
    with pytest.raises(
        LabelStudioPortBusy, match=f"port {labelstudio.settings.labelstudio_port}.*Label Studio"
    ):
        other.start(timeout=30)
    assert other.status().running is False


@pytest.mark.integration
def test_stop_then_status_then_stop_again(labelstudio: LabelStudioInstance, tmp_path: Path) -> None:
    template, _ = ensure_template(labelstudio.settings)
    settings = settings_for(tmp_path, labelstudio.settings.labelstudio_venv)
    shutil.copytree(template, settings.labelstudio_data_dir)
    server = LabelStudioServer(settings)
    started = time.monotonic()
    status = server.start(timeout=180)
    try:
        assert status.running and status.pid is not None and time.monotonic() - started < 180
        assert status.url == f"http://127.0.0.1:{settings.labelstudio_port}"
    finally:
        result = server.stop(timeout=20)
    assert result.was_running and result.pid == status.pid and not result.forced
    proc = Path(f"/proc/{status.pid}")
    assert not proc.exists(), (proc.joinpath("stat").read_text(), proc.joinpath("cmdline").read_bytes())
    assert not server.pid_file.exists()
    assert server.status() == type(status)(False, None, status.url, None, settings.labelstudio_data_dir)
    assert server.stop().was_running is False
