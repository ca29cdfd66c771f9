"""Errors raised by the Label Studio adapter.

The tree, in the style of httpx's exception module::

    LabelStudioError                  anything the adapter refuses or cannot do
    ├── LabelStudioVenvMissing        the server's own virtual environment is not installed
    ├── LabelStudioPortBusy           another process already listens on the configured port
    ├── LabelStudioStartError         the server process exited or never became healthy
    │   └── LabelStudioStartTimeout   it did not answer `whoami` within the timeout
    ├── LabelStudioUnavailable        the API could not be reached after all retries (connection error, 5xx)
    ├── LabelStudioAuthError          the API answered 401/403 for the configured token
    └── LabelStudioApiError           the API rejected a request (4xx other than auth); carries the status code

Every message names the values involved (URL, port, PID, log file) so an operator can act on it.
"""

from __future__ import annotations

__all__ = [
    "LabelStudioApiError",
    "LabelStudioAuthError",
    "LabelStudioError",
    "LabelStudioPortBusy",
    "LabelStudioStartError",
    "LabelStudioStartTimeout",
    "LabelStudioUnavailable",
    "LabelStudioVenvMissing",
]


class LabelStudioError(RuntimeError):
    """Base class of every error raised by `labeling`'s Label Studio adapter."""


class LabelStudioVenvMissing(LabelStudioError):
    """The Label Studio server venv (settings.labelstudio_venv) has no `bin/label-studio`."""


class LabelStudioPortBusy(LabelStudioError):
    """The configured port on 127.0.0.1 is already taken by a process this adapter did not start."""


class LabelStudioStartError(LabelStudioError):
    """The server process exited during start-up or never became healthy."""


class LabelStudioStartTimeout(LabelStudioStartError):
    """The server did not answer `whoami` with the configured token within the start timeout."""


class LabelStudioUnavailable(LabelStudioError):
    """The API could not be reached (connection refused, timeout, 5xx) after all retries."""


class LabelStudioAuthError(LabelStudioError):
    """The API refused the configured token (401/403)."""


class LabelStudioApiError(LabelStudioError):
    """The API rejected a request with a 4xx status (other than 401/403)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
