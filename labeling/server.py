"""Start, stop and inspect the local open-source Label Studio server that runs in its own virtual environment.

Label Studio cannot share a venv with Prefect (conflicting pins), so it runs as a detached service from
`settings.labelstudio_venv`, bound to 127.0.0.1 only, with its data (SQLite database, `.env` with the secret
key, media, exports, `ls.log`, `labelstudio.pid`) under `settings.labelstudio_data_dir`. The admin user and its
legacy API token come from the settings and are created on the first start of a new data dir.

Nothing here prints; every method returns a frozen result object or raises a `LabelStudioError`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from labeling.errors import (
    LabelStudioAuthError,
    LabelStudioError,
    LabelStudioPortBusy,
    LabelStudioStartError,
    LabelStudioStartTimeout,
    LabelStudioVenvMissing,
)
from store.settings import SluiceSettings

__all__ = ["LabelStudioServer", "ServerStatus", "StopResult", "labelstudio_env"]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
PID_FILE_NAME = "labelstudio.pid"
LOG_FILE_NAME = "ls.log"
_LOG_TAIL_LINES = 20
_POLL_SECONDS = 0.25

# Label Studio's get_env(name) reads LABEL_STUDIO_<name>, then HEARTEX_<name>, then the bare <name>; a shell's
# USERNAME or PORT would otherwise leak into the server. Interpreter variables of the app venv must not leak either.
_SCRUBBED_PREFIXES = ("LABEL_STUDIO_", "HEARTEX_", "DJANGO_", "POSTGRE_", "MYSQL_")
_SCRUBBED_NAMES = frozenset(
    {
        "USERNAME",
        "PASSWORD",
        "PORT",
        "HOST",
        "DEBUG",
        "USER_TOKEN",
        "BASE_DATA_DIR",
        "DATABASE_NAME",
        "SECRET_KEY",
        "LOG_LEVEL",
        "PYTHONPATH",
        "PYTHONHOME",
        "VIRTUAL_ENV",
    }
)


# Label Studio 1.23's default banned subnets (core/utils/io.py) less 127.0.0.0/8 and ::1/128.
WEBHOOK_BANNED_SUBNETS = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
    "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "233.252.0.0/24", "240.0.0.0/4", "255.255.255.255/32", "::/128", "::ffff:0:0/96",
    "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001:0000::/32", "2001:20::/28",
    "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "ff00::/8",
)


@dataclass(frozen=True)
class ServerStatus:
    """What `LabelStudioServer.status()` observed: `running` means our process is alive and `/health` is UP."""

    running: bool
    pid: int | None
    url: str
    version: str | None
    data_dir: Path


@dataclass(frozen=True)
class StopResult:
    """Outcome of `LabelStudioServer.stop()`; `was_running` is False when there was nothing to stop."""

    was_running: bool
    pid: int | None
    forced: bool
    message: str


def labelstudio_env(settings: SluiceSettings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child environment for `label-studio start`: inherited variables scrubbed, then the headless set added."""
    inherited = os.environ if base is None else base
    credentials = settings.labelstudio_credentials()
    env = {
        name: value
        for name, value in inherited.items()
        if name not in _SCRUBBED_NAMES and not name.startswith(_SCRUBBED_PREFIXES)
    }
    env.update(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(settings.labelstudio_data_dir),
            "DJANGO_DB": "sqlite",
            "LABEL_STUDIO_USERNAME": settings.labelstudio_username,
            "LABEL_STUDIO_PASSWORD": credentials.password,
            "LABEL_STUDIO_USER_TOKEN": credentials.token,
            # read only when the organisation is created (first start of a data dir)
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "COLLECT_ANALYTICS": "false",
            "LATEST_VERSION_CHECK": "false",
            "LOG_LEVEL": "WARNING",
            # Webhooks to Sluice's receiver on 127.0.0.1: Label Studio's default SSRF block list bans loopback,
            # so it is replaced by the same list without 127.0.0.0/8 (private networks stay banned).
            "USE_DEFAULT_BANNED_SUBNETS": "false",
            "USER_ADDITIONAL_BANNED_SUBNETS": ",".join(WEBHOOK_BANNED_SUBNETS),
        }
    )
    return env


class LabelStudioServer:
    """The local Label Studio process for one `SluiceSettings` (venv, port, data dir, admin credentials)."""

    def __init__(self, settings: SluiceSettings) -> None:
        self.settings = settings
        self.port = settings.labelstudio_port
        self.url = f"http://{HOST}:{self.port}"
        self.data_dir = settings.labelstudio_data_dir
        self.pid_file = self.data_dir / PID_FILE_NAME
        self.log_file = self.data_dir / LOG_FILE_NAME
        self.executable = Path(settings.labelstudio_venv) / "bin" / "label-studio"
        self._process: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ public API

    def status(self) -> ServerStatus:
        """Look at the pid file, the process and `/health`; never raises for a stopped server."""
        pid = self._live_pid()
        healthy = pid is not None and _http_get(f"{self.url}/health")[0] == 200
        version = self._version() if healthy else None
        return ServerStatus(running=healthy, pid=pid, url=self.url, version=version, data_dir=self.data_dir)

    def start(self, timeout: float = 240.0) -> ServerStatus:
        """Start the server detached (or adopt the one already running) and wait until `whoami` answers 200."""
        self._require_venv()
        current = self.status()
        if current.running:
            self._wait_ready(current.pid, time.monotonic() + timeout, log_offset=0, owned=False)
            return self.status()
        if current.pid is not None:  # our process, alive but not healthy yet: another caller is starting it
            self._wait_ready(current.pid, time.monotonic() + timeout, log_offset=0, owned=False)
            return self.status()
        self.pid_file.unlink(missing_ok=True)
        self._require_free_port()
        pid, log_offset = self._spawn()
        try:
            self._wait_ready(pid, time.monotonic() + timeout, log_offset=log_offset, owned=True)
        except LabelStudioError:
            self._terminate(pid, timeout=20.0)
            self.pid_file.unlink(missing_ok=True)
            raise
        return self.status()

    def stop(self, timeout: float = 20.0) -> StopResult:
        """SIGTERM the recorded PID, SIGKILL after `timeout` seconds; remove the pid file."""
        pid = self._read_pid()
        if pid is None:
            return StopResult(
                False, None, False, f"Label Studio is not running (no pid file at {self.pid_file})"
            )
        if not _is_labelstudio_process(pid, self.data_dir):
            self.pid_file.unlink(missing_ok=True)
            return StopResult(
                False, pid, False, f"Label Studio is not running (stale pid file for PID {pid} removed)"
            )
        forced = self._terminate(pid, timeout=timeout)
        self.pid_file.unlink(missing_ok=True)
        how = "killed with SIGKILL after SIGTERM timed out" if forced else "stopped with SIGTERM"
        return StopResult(True, pid, forced, f"Label Studio PID {pid} on {self.url} {how}")

    # ------------------------------------------------------------------ start helpers

    def _require_venv(self) -> None:
        if not self.executable.is_file():
            raise LabelStudioVenvMissing(
                f"Label Studio is not installed: {self.executable} does not exist. "
                f"Run `make labelstudio-venv` (or point SLUICE_LABELSTUDIO_VENV at a venv with label-studio==1.23.2)."
            )

    def _require_free_port(self) -> None:
        if _port_is_free(self.port):
            return
        answer = _http_get(f"{self.url}/health", timeout=1.0)[0]
        who = "a web server (maybe another Label Studio)" if answer is not None else "another process"
        raise LabelStudioPortBusy(
            f"port {self.port} on {HOST} is already in use by {who} not started from {self.data_dir}; "
            f"stop it or choose another port with SLUICE_LABELSTUDIO_PORT."
        )

    def _spawn(self) -> tuple[int, int]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            str(self.executable),
            "start",
            "--no-browser",
            "--internal-host",
            HOST,
            "--port",
            str(self.port),
            "--debug",  # without it a busy port makes Label Studio silently move to port+1
        ]
        with open(self.log_file, "ab") as log_stream:
            log_offset = log_stream.tell()
            log_stream.write(
                f"---- sluice: {' '.join(command)} at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode()
            )
            log_stream.flush()
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_stream,
                stderr=subprocess.STDOUT,
                env=labelstudio_env(self.settings),
                cwd=self.data_dir,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{self._process.pid}\n")
        log.debug("started Label Studio PID %s on %s", self._process.pid, self.url)
        return self._process.pid, log_offset

    def _wait_ready(self, pid: int | None, deadline: float, *, log_offset: int, owned: bool) -> None:
        """Poll `whoami` with the token until 200; fail fast if the process dies or the token is refused."""
        whoami = f"{self.url}/api/current-user/whoami"
        while True:
            if pid is None or not _is_alive(pid):
                raise LabelStudioStartError(
                    f"Label Studio (PID {pid}) exited during start-up on {self.url}. "
                    f"Last lines of {self.log_file}:\n{self._log_tail(log_offset)}"
                )
            code, _ = _http_get(whoami, token=self.settings.labelstudio_credentials().token)
            if code == 200 and (not owned or _pid_listens_on(pid, self.port)):
                return
            if code in (401, 403):
                raise LabelStudioAuthError(
                    f"Label Studio on {self.url} refused the configured token (HTTP {code}); the data dir "
                    f"{self.data_dir} was created with other credentials or without legacy API tokens."
                )
            if time.monotonic() >= deadline:
                raise LabelStudioStartTimeout(
                    f"Label Studio (PID {pid}) did not answer {whoami} within the start timeout. "
                    f"Last lines of {self.log_file}:\n{self._log_tail(log_offset)}"
                )
            time.sleep(_POLL_SECONDS)

    def _log_tail(self, offset: int) -> str:
        try:
            with open(self.log_file, "rb") as stream:
                stream.seek(offset)
                lines = stream.read().decode(errors="replace").splitlines()
        except OSError as exc:
            return f"(log unreadable: {exc})"
        return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(log is empty)"

    # ------------------------------------------------------------------ process helpers

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _live_pid(self) -> int | None:
        pid = self._read_pid()
        return pid if pid is not None and _is_labelstudio_process(pid, self.data_dir) else None

    def _terminate(self, pid: int, *, timeout: float) -> bool:
        """SIGTERM, wait, then SIGKILL; returns True when SIGKILL was needed."""
        if not _signal(pid, signal.SIGTERM):
            return False
        if _wait_dead(pid, timeout):
            return False
        _signal(pid, signal.SIGKILL)
        _wait_dead(pid, 10.0)
        return True

    def _version(self) -> str | None:
        code, body = _http_get(f"{self.url}/api/version", token=self.settings.labelstudio_credentials().token)
        if code != 200 or body is None:
            return None
        try:
            release = json.loads(body).get("release")
        except (ValueError, AttributeError):
            return None
        return str(release) if release else None


def _http_get(url: str, *, token: str | None = None, timeout: float = 3.0) -> tuple[int | None, bytes | None]:
    """(status, body) of a GET, or (None, None) when nothing answers."""
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, OSError):
        return None, None


def _port_is_free(port: int) -> bool:
    # SO_REUSEADDR as Django's runserver does, so sockets in TIME_WAIT do not count as busy
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _reap(pid: int) -> None:
    """Collect the exit status if `pid` is our child, so a finished server does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _is_alive(pid: int) -> bool:
    """True while any thread of `pid` still runs; a finished child of ours is reaped on the way."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        state, threads = fields[0], int(fields[17])
    except (OSError, IndexError, ValueError):
        return True
    if state != "Z":
        return True
    # a zombie leader may still have threads winding down (its sockets stay open until they finish)
    if threads > 1:
        return True
    _reap(pid)
    return False


def _is_labelstudio_process(pid: int, data_dir: Path | None = None) -> bool:
    """Alive, running label-studio and, when `data_dir` is given, serving that data dir.

    Guards `stop()` against a recycled PID in a stale pid file, including one now used by another Label Studio.
    """
    if not _is_alive(pid):
        return False
    try:
        if b"label-studio" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return False
    except OSError:
        return True  # no /proc: trust the pid file
    if data_dir is None:
        return True
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return True
    return f"LABEL_STUDIO_BASE_DATA_DIR={data_dir}".encode() in environ


def _pid_listens_on(pid: int, port: int) -> bool:
    """True when `pid` owns a listening TCP socket on `port` (Linux /proc); True where /proc is unavailable."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            return True
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    try:
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return True
    return any(link.startswith("socket:[") and link[8:-1] in inodes for link in links)


def _signal(pid: int, signum: signal.Signals) -> bool:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


def _wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True
