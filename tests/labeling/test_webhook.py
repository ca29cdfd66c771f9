"""The webhook receiver on 127.0.0.1: real HTTP requests, a slow fake pull, bursts coalesced."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from labeling.webhook import TOKEN_HEADER, WebhookReceiver


def post(url: str, payload: object, *, token: str | None = "s3cret") -> int:
    headers = {"Content-Type": "application/json", **({TOKEN_HEADER: token} if token else {})}
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def slow_pull_receiver():
    calls: list[float] = []
    release = threading.Event()

    def fake_pull() -> None:
        calls.append(time.monotonic())
        release.wait(5)

    receiver = WebhookReceiver(on_change=fake_pull, token="s3cret")
    url = receiver.start()
    yield receiver, url, calls, release
    release.set()
    receiver.stop()


def test_answers_at_once_and_coalesces_a_burst(slow_pull_receiver):
    receiver, url, calls, release = slow_pull_receiver
    assert url.startswith("http://127.0.0.1:")
    started = time.monotonic()
    for _ in range(20):
        assert post(url, {"action": "ANNOTATION_CREATED", "annotation": {"id": 1}}) == 200
    assert time.monotonic() - started < 2.0, "Label Studio waits at most 1 s per webhook"
    time.sleep(0.2)
    release.set()
    assert receiver.wait_idle(10)
    assert receiver.events == 20
    assert 1 <= receiver.runs <= 2 and len(calls) == receiver.runs


def test_other_actions_and_bad_requests_trigger_nothing(slow_pull_receiver):
    receiver, url, calls, release = slow_pull_receiver
    release.set()
    assert post(url, {"action": "TASKS_CREATED"}) == 200
    assert post(url, {"action": "ANNOTATION_CREATED"}, token="wrong") == 403
    assert post(url, {"action": "ANNOTATION_CREATED"}, token=None) == 403
    request = urllib.request.Request(url, data=b"{not json", headers={TOKEN_HEADER: "s3cret"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=5)
    assert error.value.code == 400
    time.sleep(0.2)
    assert receiver.events == 0 and calls == []


def test_a_failing_pull_is_counted_and_the_receiver_goes_on():
    attempts = []

    def failing() -> None:
        attempts.append(1)
        raise RuntimeError("Label Studio is down")

    receiver = WebhookReceiver(on_change=failing)
    url = receiver.start()
    try:
        assert post(url, {"action": "ANNOTATION_UPDATED"}, token=None) == 200
        assert receiver.wait_idle(5) and receiver.errors == 1
        assert post(url, {"action": "ANNOTATION_UPDATED"}, token=None) == 200
        deadline = time.monotonic() + 5
        while receiver.errors < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert receiver.errors == 2 and receiver.runs == 0
    finally:
        receiver.stop()


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", " -5"])
def test_a_content_length_that_is_not_a_count_is_refused_at_once(slow_pull_receiver, length):
    """Content-Length -1 once made the receiver read to the end of the connection, which the client keeps open."""
    import http.client
    from urllib.parse import urlparse

    receiver, url, calls, release = slow_pull_receiver
    release.set()
    parsed = urlparse(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=5)
    connection.putrequest("POST", parsed.path or "/")
    connection.putheader(TOKEN_HEADER, "s3cret")
    connection.putheader("Content-Length", length)
    connection.endheaders()
    connection.send(b'{"action": "ANNOTATION_CREATED"}')  # and the connection stays open
    assert connection.getresponse().status == 400
    connection.close()
    assert receiver.events == 0
