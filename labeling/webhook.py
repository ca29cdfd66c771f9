"""A receiver for Label Studio's webhooks on 127.0.0.1 that starts a pull early.

Label Studio's open-source webhooks are sent inside the annotator's own request, with a 1 s timeout and no
retries, so a webhook is only a hint: the receiver answers at once and runs the pull in its own thread, and
the polling pull (with its watermark) stays the source of truth. A burst of events gives at most one pull in
progress and one more after it, never one pull per event.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["CHANGE_ACTIONS", "TOKEN_HEADER", "WebhookReceiver"]

HOST = "127.0.0.1"
TOKEN_HEADER = "X-Sluice-Token"
# the actions after which there are annotations to pull
CHANGE_ACTIONS = frozenset({"ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED"})
_MAX_BODY = 8 << 20

log = logging.getLogger(__name__)


@dataclass
class WebhookReceiver:
    """Serve on 127.0.0.1:`port` (0: any free port); call `on_change()` in a worker thread after change events.

    With a `token`, requests must carry it in the `X-Sluice-Token` header (Label Studio sends the headers a
    webhook was registered with); others get 403. `events`, `runs` and `errors` count what happened.
    """

    on_change: Callable[[], Any]
    port: int = 0
    token: str | None = None
    events: int = 0
    runs: int = 0
    errors: int = 0
    _server: ThreadingHTTPServer | None = field(default=None, init=False, repr=False)
    _threads: list[threading.Thread] = field(default_factory=list, init=False, repr=False)
    _dirty: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _idle: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the receiver is not started")
        return f"http://{HOST}:{self._server.server_address[1]}/"

    def start(self) -> str:
        """Start serving and the pull worker; returns the URL to register with Label Studio."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                status = receiver._accept(self.headers, self.rfile, _content_length(self.headers))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("webhook %s", format % args)

        self._server = ThreadingHTTPServer((HOST, self.port), Handler)
        self._server.daemon_threads = True
        self._idle.set()
        self._threads = [threading.Thread(target=self._server.serve_forever, name="webhook-http", daemon=True),
                         threading.Thread(target=self._work, name="webhook-pull", daemon=True)]
        for thread in self._threads:
            thread.start()
        return self.url

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving; a pull in progress is let finish (up to `timeout` seconds)."""
        self._stopping.set()
        self._dirty.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Block until no pull is queued or running; False if `timeout` seconds pass first."""
        return self._idle.wait(timeout)

    def _accept(self, headers: Any, body: Any, length: int | None) -> int:
        if self.token is not None and not hmac.compare_digest(headers.get(TOKEN_HEADER) or "", self.token):
            return 403
        if length is None:
            return 400  # a negative or unreadable Content-Length: reading "to the end" would wait on the client
        if length > _MAX_BODY:
            return 413
        try:
            payload = json.loads(body.read(length) or b"{}")
        except ValueError:
            return 400
        action = payload.get("action") if isinstance(payload, dict) else None
        if action in CHANGE_ACTIONS:
            with self._lock:
                self.events += 1
                self._idle.clear()
                self._dirty.set()
        return 200

    def _work(self) -> None:
        while True:
            self._dirty.wait()
            if self._stopping.is_set():
                self._idle.set()
                return
            self._dirty.clear()
            try:
                self.on_change()
                self.runs += 1
            except Exception:  # a failed early pull is not fatal: polling pulls the same annotations later
                self.errors += 1
                log.exception("pull after a webhook failed; the next poll will pull these annotations")
            with self._lock:
                if not self._dirty.is_set():
                    self._idle.set()


def _content_length(headers: Any) -> int | None:
    """The request's Content-Length (0 when absent), None when it is not a non-negative whole number."""
    value = (headers.get("Content-Length") or "0").strip()
    return int(value) if value.isdigit() else None
