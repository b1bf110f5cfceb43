"""No secret in any output: a whole rollback, escalated by a dampening undo that prints a token.

The rollback runs for real against the demo service and the GitHub and PagerDuty emulators; its
dampening undo is a command that fails and prints the GitHub token (which it inherited from the
daemon's environment, as scripts do) to stderr, so the token reaches the escalation text, the
ticket comment and the page; a second service's watch raises an exception carrying the token, so
it reaches the logs and Sentry. Slack and a signed webhook are told of every step through the
outbox. Then every output is searched for every secret of the config: the logs, Sentry, the store
(its ``notices`` rows too), the ticket, the page, the CLI, and every body Slack and the webhook got.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sentry_sdk

from tests.fixtures.broken import BrokenFor, SentryCapture
from tests.fixtures.pipeline import CONFIG, NO_REVIEWERS, TOKEN, build, drive, finished, start_incident
from watchdog.demo.service import ServiceProcess
from watchdog.emulator.github import GitHubEmulator
from watchdog.emulator.pagerduty import ROUTING_KEY, PagerDutyEmulator
from watchdog.emulator.slack import BOT_TOKEN, SIGNING_SECRET, SlackEmulator
from watchdog.emulator.webhook import WebhookReceiver
from watchdog.observability import configure_logging, init_sentry
from watchdog.phases import IncidentPhase
from watchdog.store import NOTICE_FAILED, NOTICE_SENT, ReleaseRef

pytestmark = pytest.mark.slow

SMOKE_TOKEN = "smk_0f1e2d3c4b5a69788796a5b4c3d2e1f0"
SENTRY_KEY = "5e0b7c1f9a2d4e6f8a0b1c2d3e4f5a6b"
HOOK_SECRET = "whsec_7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e7b"
SECRETS = (TOKEN, ROUTING_KEY, SMOKE_TOKEN, SENTRY_KEY, BOT_TOKEN, SIGNING_SECRET, HOOK_SECRET)

EXTRA = """    dampening:
      prod:
        - name: pause-workers
          kind: command
          argv: [sh, -c, "echo paused"]
          undo:
            name: resume-workers
            kind: command
            argv: [sh, -c, 'echo "resume refused: token $TOKEN is not allowed" >&2; exit 1']
  - name: broken
    match: {job: broken}
    base_urls: {prod: "${SVC}"}
    signals:
      - {name: healthcheck, kind: probe, probe: {metric: probe_success, match: {probe: health}}, k: 2, n: 3}
environments:
  prod:
    approval: none
    watch_s: 60
    post_rollback_watch_s: 1.5
    min_coverage: 0.3
    undo_dampening_on_escalation: false
incidents:
  pagerduty:
    events_url: ${PD}
    routing_key: ${PD_KEY}
sentry:
  dsn: ${SENTRY_DSN}
notifications:
  notifiers:
    chat: {kind: slack, api_url: "${SLACK}", token: "${SLACK_TOKEN}", channel: C0123456789}
    hook: {kind: webhook, url: "${HOOK}", secret: "${HOOK_SECRET}"}
  routes:
    - {to: [chat, hook]}
  slack_interactivity:
    signing_secret: ${SLACK_SIGNING_SECRET}
"""


def config_text() -> str:
    text = CONFIG.replace(
        'headers: {X-Dry-Run: "1"}', 'headers: {X-Dry-Run: "1", Authorization: "Bearer ${SMOKE_TOKEN}"}'
    )
    assert text != CONFIG
    # CONFIG's own environments block gives way to EXTRA's
    block = CONFIG[CONFIG.index("environments:\n") : CONFIG.index("services:\n")]
    head, found, tail = text.partition(block)
    assert found, "CONFIG's environments block moved"
    return head + tail + EXTRA


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    with ServiceProcess("v1.0.0", "canary", seed=5) as svc:
        yield svc


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(secret=HOOK_SECRET.encode()) as receiver:
        yield receiver


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_no_output_of_a_whole_escalated_rollback_holds_a_secret(
    tmp_path: Path,
    service: ServiceProcess,
    make_github_emulator: Callable[..., GitHubEmulator],
    pagerduty_emulator: PagerDutyEmulator,
    slack_emulator: SlackEmulator,
    hook: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
    log_format: str,
) -> None:
    env = {
        "PD": pagerduty_emulator.url,
        "PD_KEY": ROUTING_KEY,
        "SMOKE_TOKEN": SMOKE_TOKEN,
        "SENTRY_DSN": f"https://{SENTRY_KEY}@127.0.0.1/1",
        "SLACK": slack_emulator.api_url,
        "SLACK_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "HOOK": hook.url,
        "HOOK_SECRET": HOOK_SECRET,
    }
    monkeypatch.setenv("TOKEN", TOKEN)  # the dampening script inherits it, as scripts do
    gh = make_github_emulator(**NO_REVIEWERS)
    logs = io.StringIO()
    configure_logging(log_format, "info", stream=logs)
    sentry = SentryCapture()
    try:
        app = build(tmp_path, service, gh, config_text(), env)
        assert app.cfg.sentry.dsn is not None
        init_sentry(app.cfg.sentry.dsn.get_secret_value(), "test", "0", transport=sentry)
        app.engine.source = BrokenFor(app.source, f"GET /api?access_token={TOKEN} failed")
        app.engine.pin("prod", "broken", ReleaseRef("v1"), actor="test", reason="seed")
        app.engine.announce("prod", "broken", ReleaseRef("v2"))
        incident_id = start_incident(app)
        over = finished(app, incident_id)

        def told_and_over() -> bool:  # the daemon's notice job after each tick
            app.outbox.deliver_due()
            return over() and all(n.phase in (NOTICE_SENT, NOTICE_FAILED) for n in app.store.notices())

        drive(app, incident_id, told_and_over, timeout_s=60)
        sentry_sdk.flush()
        incident = app.store.incident(incident_id)
        notices = app.store.notices()
        app.close()
    finally:
        sentry_sdk.init()  # off again

    # the rollback really ran, and really escalated at the undo with the token in its stderr
    assert incident.phase == IncidentPhase.ESCALATED.value
    assert len(gh.requests("POST", r"/dispatches$")) == 1
    outputs: dict[str, str] = {"logs": logs.getvalue()}
    assert "access_token=***" in outputs["logs"]  # the fault was logged, masked
    outputs["sentry"] = json.dumps(sentry.events)
    assert "GET /api?access_token=*** failed" in outputs["sentry"]  # the fault arrived, masked

    db = sqlite3.connect(tmp_path / "wd.db")
    outputs["store"] = "\n".join(db.iterdump())
    db.close()
    assert "resume refused: token *** is not allowed" in outputs["store"]

    outputs["ticket"] = "\n".join(
        x.request_body.decode() + x.response_body.decode() for x in gh.requests(path=r"/issues")
    )
    assert "resume refused" in outputs["ticket"]
    pages = [x.request_json for x in pagerduty_emulator.exchanges]
    assert all(p.pop("routing_key") == ROUTING_KEY for p in pages)  # where it belongs, and only there
    outputs["pagerduty"] = json.dumps(pages)
    assert "resume refused" in outputs["pagerduty"]

    # every notice went out to both, and each carried the escalation's (masked) stderr
    assert notices and all(n.phase == NOTICE_SENT for n in notices)
    assert {"chat", "hook"} <= {n.notifier for n in notices}  # and the postmortem: in the ticket
    outputs["notices"] = json.dumps([(n.payload, n.last_error) for n in notices], default=str)
    assert "resume refused: token *** is not allowed" in outputs["notices"]
    slack_calls = slack_emulator.requests()
    assert slack_calls and all(
        x.request_headers["authorization"] == f"Bearer {BOT_TOKEN}" for x in slack_calls
    )
    outputs["slack"] = "\n".join(x.request_body.decode() + x.response_body.decode() for x in slack_calls)
    assert "resume refused: token *** is not allowed" in outputs["slack"]
    deliveries = hook.requests()
    assert deliveries and all(x.status == 200 for x in deliveries)  # each signed, each verified
    outputs["webhook"] = "\n".join(
        json.dumps(dict(x.request_headers)) + x.request_body.decode() for x in deliveries
    )
    assert "resume refused: token *** is not allowed" in outputs["webhook"]

    config = tmp_path / "watchdog.yaml"
    config.write_text(config_text())
    cli_env = {
        **os.environ,
        **env,
        "SVC": service.url,
        "GH": gh.url,
        "TOKEN": TOKEN,
        "DB": f"sqlite:///{tmp_path / 'wd.db'}",
    }
    for args in (["log", "-c", str(config), "--json"], ["log", "-c", str(config)]):
        done = subprocess.run(
            [sys.executable, "-m", "watchdog", *args], capture_output=True, text=True, env=cli_env, timeout=60
        )
        assert done.returncode == 0, done.stderr
        outputs[" ".join(args[:1] + args[3:])] = done.stdout + done.stderr
    assert "escalated" in outputs["log --json"]

    for where, text in outputs.items():
        for secret in SECRETS:
            assert secret not in text, f"a secret ({secret[:4]}…) in the {where}"
