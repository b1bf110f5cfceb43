"""Dampening actions' answers: what is worth retrying and what is final (real loopback server)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from actions.dampen import run_action
from watchdog.config import DampeningAction
from watchdog.errors import ActionFailed, ActionRetryable


class _Status(BaseHTTPRequestHandler):
    """Answers ``POST /<status>`` with that status (a 429 says to come back in 7 s)."""

    def do_POST(self) -> None:
        status = int(self.path.strip("/"))
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "7")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("status", "error"), [(503, ActionRetryable), (429, ActionRetryable), (404, ActionFailed)]
)
def test_http_answers_outside_expect_status(url: str, status: int, error: type[Exception]) -> None:
    action = DampeningAction(name="pause", url=f"{url}/{status}")
    with httpx.Client() as client, pytest.raises(error, match=f"pause: POST answered {status}") as err:
        run_action(client, action)
    assert isinstance(err.value, ActionRetryable) == (error is ActionRetryable)
    if status == 429:
        assert isinstance(err.value, ActionRetryable) and err.value.retry_after == 7


def test_an_expected_status_passes(url: str) -> None:
    action = DampeningAction(name="pause", url=f"{url}/202")
    with httpx.Client() as client:
        assert run_action(client, action) == {"action": "pause", "kind": "http", "status": 202}


def test_a_failing_command_is_final_and_says_why() -> None:
    argv = [sys.executable, "-c", "import sys; sys.exit('queue not found')"]
    action = DampeningAction(name="drain", kind="command", argv=argv)
    with httpx.Client() as client, pytest.raises(ActionFailed, match="drain: exit 1: queue not found") as err:
        run_action(client, action)
    assert not isinstance(err.value, ActionRetryable)
