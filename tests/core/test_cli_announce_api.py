"""``announce --api``: a CI runner announces a deploy through the daemon's HTTP API with a deployer
token from its environment, no configuration and no database access; a refusal exits 2 naming the
argument at fault, an API that cannot be reached exits 3, and the token is never shown."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import structlog

from tests.fixtures.deploy_api import SERVICE, TOKENS, DeployApi, deploy_api
from watchdog.cli import main

VAR = "ROLLBACK_WATCHDOG_TOKEN"
SHA = "3" * 40
BUILD_URL = "https://github.com/acme/stamps/actions/runs/9100000042"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[DeployApi]:
    # the daemon's own log lines (its audit of a refused token, say) are not the CLI's output
    with structlog.testing.capture_logs(), deploy_api(tmp_path) as live:
        yield live


def announce(
    capsys: pytest.CaptureFixture[str], url: str, *extra: str, tag: str = "v1.4.0"
) -> tuple[int, str, str]:
    """``rollback-watchdog announce --api URL ...`` in this process: exit code, stdout, stderr."""
    argv = ["announce", "--api", url, "--env", "prod", "--service", SERVICE, "--tag", tag, *extra]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse refuses a value before the command runs
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    for token in TOKENS.values():
        assert token not in out + err
    return code, out, err


def test_a_deploy_announced_through_the_api_is_queued_with_every_field(
    api: DeployApi, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VAR, TOKENS["DEPLOYER"])
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"migrations": [{"id": "0007", "reversible": True}]}))
    code, out, err = announce(
        capsys,
        api.url + "/",
        *("--sha", SHA, "--run-id", "9100000042", "--build-url", BUILD_URL),
        *("--at", "1799999990", "--migrations", str(manifest), "--actor", "not-sent"),
    )
    assert (code, err) == (0, ""), err
    (event,) = api.store.pending_deploy_events()
    assert out == (
        f"announced deploy of v1.4.0 to prod (event {event.id}); the daemon's leader picks it up at "
        "its next tick\n"
    )
    got = (event.env, event.service, event.tag, event.sha, event.run_id, event.build_url)
    assert got == ("prod", SERVICE, "v1.4.0", SHA, 9100000042, BUILD_URL)
    assert (event.deployed_at, event.migrations) == (1799999990.0, [{"id": "0007", "reversible": True}])
    assert (event.source, event.actor) == ("api", "api:ci")  # the token's holder, not --actor


def test_with_a_config_too_the_api_is_used_and_the_config_not_read(
    api: DeployApi, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI_DEPLOY_TOKEN", TOKENS["DEPLOYER"])
    code, _, err = announce(
        capsys, api.url, "-c", "/nonexistent/watchdog.yaml", "--token-env", "CI_DEPLOY_TOKEN"
    )
    assert code == 0 and err == (
        "warning: -c /nonexistent/watchdog.yaml is not read with --api: the daemon checks the deploy "
        "against its own configuration\n"
    )
    assert [e.tag for e in api.store.pending_deploy_events()] == ["v1.4.0"]


def test_a_viewer_token_is_refused_and_nothing_is_queued(
    api: DeployApi, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VAR, TOKENS["VIEWER"])
    code, out, err = announce(capsys, api.url)
    assert code == 2 and out == ""
    assert err.startswith(f"error: --token-env {VAR}: the API refused the deploy (HTTP 403): ")
    assert "deployer" in err and err.count("\n") == 1
    assert api.store.pending_deploy_events() == []


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (
            ["--sha", "ABCDEF1"],  # a SHA by the CLI's rule, not by the API's (lowercase, 7+ digits)
            "error: --sha ABCDEF1: the API refused the deploy (HTTP 422, field body.sha): body.sha: ",
        ),
        (
            ["--service", "nope"],
            "error: --service nope: the API refused the deploy (HTTP 422, field body.service): "
            "service 'nope': no service named 'nope'",
        ),
        (
            ["--build-url", "https://ci.example/" + "x" * 5000],
            "error: the API refused the deploy (HTTP 413, field body): the request body is larger than",
        ),
    ],
    ids=["sha", "service", "too-large"],
)
def test_a_field_the_api_refuses_exits_2_naming_it_and_nothing_is_queued(
    api: DeployApi,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    says: str,
) -> None:
    monkeypatch.setenv(VAR, TOKENS["DEPLOYER"])
    code, _, err = announce(capsys, api.url, *extra)
    assert code == 2 and err.startswith(says) and err.count("\n") == 1, err
    assert api.store.pending_deploy_events() == []


def test_a_bad_tag_is_refused_before_anything_is_sent(
    api: DeployApi, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VAR, TOKENS["DEPLOYER"])
    code, _, err = announce(capsys, api.url, tag="v 1.4")
    assert code == 2 and "argument --tag: 'v 1.4': must not contain whitespace" in err
    assert api.store.pending_deploy_events() == []


@pytest.mark.parametrize("value", [None, "", "  "], ids=["unset", "empty", "blank"])
def test_no_token_in_the_environment_exits_2_naming_the_variable(
    api: DeployApi, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv(VAR, raising=False)
    else:
        monkeypatch.setenv(VAR, value)
    code, out, err = announce(capsys, api.url)
    assert (code, out) == (2, "")
    assert err == (
        f"error: --token-env {VAR}: the environment variable is not set or empty; it must hold a "
        "token with the deployer role\n"
    )
    assert api.store.pending_deploy_events() == []


def test_announce_needs_a_config_or_an_api(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["announce", "--env", "prod", "--service", SERVICE, "--tag", "v1"])
    assert code == 2 and capsys.readouterr().err == (
        "error: announce needs -c/--config (to write the deploy event into the store) or --api URL "
        "(to post it to the daemon's API)\n"
    )


def test_credentials_in_the_url_are_refused_without_being_shown(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = announce(capsys, "https://ci:hunter22@watchdog.example")
    assert code == 2 and "argument --api: the URL holds credentials" in err
    assert "hunter22" not in err


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_api_that_is_down_exits_3_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VAR, TOKENS["DEPLOYER"])
    url = f"http://127.0.0.1:{closed_port()}"
    code, out, err = announce(capsys, url)
    assert (code, out) == (3, "")
    assert err.startswith(f"error: cannot reach the API at {url}/v1/deploys: ") and err.count("\n") == 1
    assert "Connection refused" in err


def test_an_api_that_does_not_answer_exits_3_after_the_timeout(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VAR, TOKENS["DEPLOYER"])
    with socket.socket() as silent:  # the kernel accepts the connection; nobody ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        code, _, err = announce(capsys, url, "--timeout-s", "0.2")
    assert code == 3 and err == f"error: the API at {url}/v1/deploys did not answer within 0.2s\n"


class _Canned(BaseHTTPRequestHandler):
    """Answers every POST with the status and body the server was given."""

    def do_POST(self) -> None:
        status, content_type, body = self.server.canned  # type: ignore[attr-defined]
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests read the answers, not the server's access log."""


@pytest.fixture
def canned() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize(
    ("status", "content_type", "body", "code", "says"),
    [
        (
            503,
            "application/json",
            b'{"error": "store sqlite:///wd.db: database is locked", "field": null}',
            3,
            "could not take the deploy (HTTP 503): store sqlite:///wd.db: database is locked",
        ),
        (
            502,
            "text/html",
            b"<html>bad gateway</html>",
            3,
            "could not take the deploy (HTTP 502): Bad Gateway",
        ),
        (404, "text/html", b"<html>nothing here</html>", 2, ": HTTP 404 Not Found: is it the daemon's API?"),
        (200, "text/html", b"<html>welcome</html>", 3, "answered HTTP 200 without a deploy event"),
    ],
    ids=["503", "502-html", "404-html", "200-html"],
)
def test_answers_that_are_not_a_deploy_event_are_mapped_to_exit_codes(
    canned: ThreadingHTTPServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    content_type: str,
    body: bytes,
    code: int,
    says: str,
) -> None:
    monkeypatch.setenv(VAR, TOKENS["DEPLOYER"])
    canned.canned = (status, content_type, body)  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{canned.server_address[1]}"
    exit_code, out, err = announce(capsys, url)
    assert (exit_code, out) == (code, "")
    assert err.startswith("error: ") and says in err and err.count("\n") == 1, err
    if code == 2:
        assert err.startswith(f"error: --api {url}: ")
