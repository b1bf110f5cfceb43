"""Telling people where they work: the routing table, the outbox's exactly-once delivery, a failing
notifier that never holds a rollback back, the postmortem, and the Slack buttons — whole rollbacks
on a simulated clock against the GitHub and Slack emulators and a signed-webhook receiver."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from actions.notify import Notice, NoticeEvent, NoticeSeverity, NoticeStatus
from actions.slack import SlackNotifier
from tests.fixtures.pipeline import CONFIG, build, drive, on_sim_clock
from watchdog.api import ApiContext, ApiServer
from watchdog.app import App
from watchdog.config import parse_config
from watchdog.demo.service import ServiceProcess
from watchdog.emulator.github import GitHubEmulator
from watchdog.emulator.slack import BOT_TOKEN, DEPLOYS_CHANNEL, SIGNING_SECRET, SlackEmulator
from watchdog.emulator.webhook import WebhookReceiver
from watchdog.notify import routed
from watchdog.overrides import Overrides
from watchdog.phases import DecisionKind, DecisionResult, IncidentPhase
from watchdog.store import NOTICE_FAILED, NOTICE_SENDING, NOTICE_SENT, ReleaseRef

HOOK_SECRET = "webhook-shared-secret-0123456789abcdef"

NOTIFY = """
notifications:
  public_url: https://watchdog.example.com
  max_attempts: ${MAX_ATTEMPTS}
  notifiers:
    chat: {kind: slack, api_url: "${SLACK}", token: "${SLACK_TOKEN}", channel: C0123456789}
    hook: {kind: webhook, url: "${HOOK}", secret: "${HOOK_SECRET}"}
  routes:
    - {environments: [prod], severities: [critical, warning], to: [chat]}
    - {to: [hook]}
  slack_interactivity:
    signing_secret: ${SLACK_SIGNING_SECRET}
    response_url_prefix: ${SLACK_RESPONSES}
    users:
      - {slack_user: U0ALICE, actor: alice, environments: [prod]}
      - {slack_user: U0BOB, actor: bob, environments: [dev]}
"""


@pytest.fixture
def make_github_emulator(
    make_github_emulator: Callable[..., GitHubEmulator],
) -> Callable[..., GitHubEmulator]:
    return on_sim_clock(make_github_emulator, environments=["dev", "stage", "prod"])


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    with ServiceProcess("v1.0.0", "canary", seed=5) as svc:
        yield svc


class World:
    def __init__(self, app: App, gh: GitHubEmulator, slack: SlackEmulator, hook: WebhookReceiver) -> None:
        self.app, self.gh, self.slack, self.hook = app, gh, slack, hook

    def deploy_and_roll_back(self, reason: str = "P1: checkout broken") -> int:
        app = self.app
        app.engine.start_watch("prod", "stamps-api", ReleaseRef("v1.1.0", "2" * 40), app.clock.now())
        return app.engine.request_rollback("prod", "stamps-api", reason=reason, actor="carol")

    def run(self, incident_id: int, until: Callable[[], bool] | None = None) -> None:
        """Ticks with the daemon's notice job after each, until the incident is over (or ``until``)."""

        def done() -> bool:
            self.app.outbox.deliver_due()
            if until is not None:
                return until()
            phase = self.app.store.incident(incident_id).phase
            return phase in IncidentPhase.closed() and not self.pending()

        drive(self.app, incident_id, done)

    def pending(self) -> list[Any]:
        return [n for n in self.app.store.notices() if n.phase not in (NOTICE_SENT, NOTICE_FAILED)]


@pytest.fixture
def world(
    tmp_path: Path, service: ServiceProcess, make_github_emulator: Callable[..., GitHubEmulator]
) -> Iterator[Callable[..., World]]:
    started: list[Any] = []

    def make(max_attempts: int = 8, config: str = CONFIG) -> World:
        gh = make_github_emulator()
        slack = SlackEmulator(clock=gh.clock).start()
        hook = WebhookReceiver(secret=HOOK_SECRET.encode(), clock=gh.clock).start()
        started.extend([slack, hook])
        env = {
            "SLACK": slack.api_url,
            "SLACK_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_RESPONSES": slack.url,
            "HOOK": hook.url,
            "HOOK_SECRET": HOOK_SECRET,
            "MAX_ATTEMPTS": str(max_attempts),
        }
        app = build(tmp_path, service, gh, config + NOTIFY, env)
        started.append(app)
        return World(app, gh, slack, hook)

    yield make
    for thing in reversed(started):
        (thing.close if isinstance(thing, App) else thing.stop)()


def _notice(**kw: Any) -> Notice:
    base: dict[str, Any] = {
        "key": "entry-1",
        "subject": "incident-1",
        "event": NoticeEvent.ROLLBACK_STARTED,
        "severity": NoticeSeverity.CRITICAL,
        "status": NoticeStatus.OPEN,
        "at": 1.0,
        "env": "prod",
        "service": "stamps-api",
        "title": "t",
        "text": "x",
    }
    return Notice(**{**base, **kw})


def test_the_routing_table_selects_by_environment_severity_and_event() -> None:
    text = (
        CONFIG
        + """
notifications:
  notifiers:
    chat: {kind: slack, webhook_url: "${URL}"}
    pager: {kind: opsgenie, api_key: "${KEY}"}
    status: {kind: statuspage, page_id: p, api_key: "${KEY}"}
  routes:
    - {environments: [prod], severities: [critical], to: [pager, chat]}
    - {environments: [prod, stage], to: [chat]}
    - {events: [rollback_started, rollback_resolved], to: [status]}
"""
    )
    env = {
        "SVC": "http://x",
        "GH": "http://x",
        "TOKEN": "t",
        "DB": "sqlite://",
        "URL": "https://h",
        "KEY": "k",
    }
    cfg = parse_config(text, "t.yaml", env=env)
    assert routed(cfg, _notice()) == ["pager", "chat", "status"]
    assert routed(cfg, _notice(severity=NoticeSeverity.INFO, event=NoticeEvent.DEPLOY)) == ["chat"]
    assert routed(cfg, _notice(env="dev", event=NoticeEvent.DEPLOY)) == []
    assert routed(cfg, _notice(env="dev")) == ["status"]


def test_a_route_naming_an_unknown_notifier_is_refused_with_its_place() -> None:
    text = CONFIG + "\nnotifications:\n  routes:\n    - {to: [nowhere]}\n"
    env = {"SVC": "http://x", "GH": "http://x", "TOKEN": "t", "DB": "sqlite://"}
    with pytest.raises(Exception, match=r"routes\[0\]\.to names unknown notifiers \['nowhere'\]"):
        parse_config(text, "t.yaml", env=env)


def test_a_rollback_is_told_once_per_notice_and_the_slack_message_follows_it(
    world: Callable[..., World],
) -> None:
    w = world()
    incident = w.deploy_and_roll_back()
    w.run(incident)
    store = w.app.store
    assert store.incident(incident).phase == IncidentPhase.RESOLVED
    quarantined = store.quarantined("prod", "stamps-api", "v1.1.0")
    assert quarantined is not None and quarantined.incident_id == incident

    # Slack: one message for the incident (the deploy's watch was info: not routed to chat), updated
    # in place from the start to the resolution, buttons gone at the end, the resolution in its thread
    messages = [m for m in w.slack.messages(DEPLOYS_CHANNEL) if not m.is_reply]
    assert len(messages) == 1, [m.text for m in messages]
    (message,) = messages
    assert message.edits, "the message was never updated"
    assert "Rolled back stamps-api in prod" in message.text
    assert not any(b.get("type") == "actions" for b in message.blocks)
    first = message.edits[0] if message.edits else message
    assert "Rolling back stamps-api in prod" in json.dumps(first.blocks)
    assert any("Rolled back" in r.text for r in w.slack.replies(message.ts, DEPLOYS_CHANNEL))

    # the webhook: every notice once, signed (the receiver checks), in the decision-log order
    deliveries = w.hook.deliveries()
    keys = [d.delivery_id for d in deliveries]
    assert len(keys) == len(set(keys)) and not w.hook.duplicates()
    events = [d.notice["event"] for d in deliveries]
    assert events[0] == "deploy" and events[-1] == "rollback_resolved"
    assert "rollback_started" in events and "rollback_step" in events
    started = next(d.notice for d in deliveries if d.notice["event"] == "rollback_started")
    assert started["actor"] == "carol" and started["release"] == "v1.1.0" and started["target"] == "v1.0.0"
    assert any(
        link["url"].startswith("https://watchdog.example.com/v1/incidents/") for link in started["links"]
    )

    # every delivery is recorded, in the store and in the decision log
    rows = store.notices(incident_id=incident)
    assert rows and all(r.phase == NOTICE_SENT for r in rows)
    sent = [e for e in store.decisions(incident_id=incident) if e.kind == DecisionKind.NOTICE]
    assert len(sent) == len(rows) and all(e.result == DecisionResult.SENT for e in sent)


def test_the_postmortem_issue_is_opened_with_the_timeline_and_the_checklist(
    world: Callable[..., World],
) -> None:
    w = world()
    incident = w.deploy_and_roll_back("P2: redeem fails for tenant t2")
    w.run(incident)
    issues = [ex.response_json for ex in w.gh.requests("POST", r"/issues$")]
    titles = [i["title"] for i in issues if isinstance(i, dict)]
    postmortems = [i for i in issues if isinstance(i, dict) and i["title"].startswith("Postmortem")]
    assert len(postmortems) == 1, titles
    body = postmortems[0]["body"]
    assert "| time (UTC) | what | result | who |" in body
    assert "manual rollback of v1.1.0 to v1.0.0: P2: redeem fails for tenant t2" in body
    assert "step dispatch successful" in body and "carol" in body
    assert "- [ ] Roll-forward fix released with the normal deploy" in body
    assert "Ticket #" in body  # the incident ticket is linked
    assert [label["name"] for label in postmortems[0]["labels"]] == ["postmortem"]
    # later notices of the incident link it
    final = w.hook.deliveries()[-1].notice
    assert final["event"] == "rollback_resolved"


def test_a_failing_notifier_never_holds_the_rollback_back(world: Callable[..., World]) -> None:
    w = world(max_attempts=3)
    w.hook.inject_error("POST", r"/hooks/watchdog$", 503, times=1000)
    incident = w.deploy_and_roll_back()
    w.run(incident, until=lambda: w.app.store.incident(incident).phase == IncidentPhase.RESOLVED)
    store = w.app.store
    # the rollback went on to the end while the webhook answered 503 to everything
    assert store.incident(incident).phase == IncidentPhase.RESOLVED
    w.run(incident)  # the retries run out in their own time
    hook_rows = store.notices(notifier="hook")
    assert hook_rows and all(r.phase == NOTICE_FAILED and r.attempts == 3 for r in hook_rows)
    assert all("503" in (r.last_error or "") for r in hook_rows)
    given_up = [
        e
        for e in store.decisions()
        if e.kind == DecisionKind.NOTICE and e.result == DecisionResult.NOTIFY_FAILED
    ]
    assert len(given_up) == len(hook_rows)
    assert all(r.phase == NOTICE_SENT for r in store.notices(notifier="chat"))  # Slack was unaffected


def test_a_lost_answer_or_a_crash_mid_delivery_never_posts_twice(world: Callable[..., World]) -> None:
    w = world()
    w.slack.inject_accept_then_drop("POST", r"/api/chat\.postMessage$")  # posted, answer lost
    incident = w.deploy_and_roll_back()
    w.run(incident)
    tops = [m for m in w.slack.messages(DEPLOYS_CHANNEL) if not m.is_reply]
    assert len(tops) == 1
    recovered = [
        e for e in w.app.store.decisions() if e.kind == DecisionKind.NOTICE and e.evidence.get("recovered")
    ]
    assert recovered, "the second attempt should have found the first post instead of posting again"

    # a crash after the post but before it was recorded: the row is still "sending"
    store, clock = w.app.store, w.app.clock
    w.app.engine.pin("prod", "stamps-api", ReleaseRef("v1.0.0", "1" * 40), actor="dave", reason="re-pin")
    entry = w.app.engine.decisions.record(
        DecisionKind.ESCALATED,
        "test: a notice sent by a process that then died",
        DecisionResult.ESCALATED,
        env="prod",
        service="stamps-api",
        incident_id=incident,
    )
    (row,) = [r for r in store.notices(notifier="chat") if r.entry_id == entry.id]
    claimed = store.claim_notice(row.id, (row.phase, row.attempts), clock.now())
    assert claimed is not None and claimed.phase == NOTICE_SENDING
    chat = w.app.outbox.notifiers["chat"]
    assert isinstance(chat, SlackNotifier)
    memo = chat.deliver(Notice.from_dict(row.payload), store.thread_memo("chat", row.subject))
    before = len(w.slack.messages(DEPLOYS_CHANNEL)) + sum(
        len(m.edits) for m in w.slack.messages(DEPLOYS_CHANNEL)
    )
    w.app.outbox.deliver_due()  # the next process finds it delivered
    after = len(w.slack.messages(DEPLOYS_CHANNEL)) + sum(
        len(m.edits) for m in w.slack.messages(DEPLOYS_CHANNEL)
    )
    assert after == before
    assert store.notices(notifier="chat")[-1].phase == NOTICE_SENT
    assert store.thread_memo("chat", row.subject)["ts"] == memo["ts"]


PROPOSE = CONFIG.replace("prod: {approval: none,", "prod: {rollback_policy: propose, approval: none,")


@pytest.fixture
def api_for() -> Iterator[Callable[[World], str]]:
    servers: list[ApiServer] = []
    clients: list[httpx.Client] = []

    def start(w: World) -> str:
        http = httpx.Client(timeout=5)
        clients.append(http)
        app = w.app
        ctx = ApiContext(
            app.cfg, app.store, app.clock, app.engine, overrides=Overrides(app.engine), http=http
        )
        server = ApiServer(ctx)
        server.start()
        servers.append(server)
        return f"{server.url}/v1/slack/interactions"

    yield start
    for server in servers:
        server.stop()
    for client in clients:
        client.close()


def _proposed(w: World) -> tuple[int, str]:
    """A failing release's rollback, proposed (rollback_policy: propose), and its Slack message."""
    app = w.app
    watch = app.engine.start_watch("prod", "stamps-api", ReleaseRef("v1.1.0", "2" * 40), app.clock.now())
    with app.engine.decisions.transition():
        app.store.end_watch(
            watch.id, app.store.watch(watch.id).phase.__class__("failed"), app.clock.now(), "test"
        )
        app.engine._decide_rollback(
            watch, "5xx: canary 41 bad vs 2.0 expected", {}, "signal:http_5xx", app.clock.now()
        )
    (incident,) = app.store.open_incidents()
    assert incident.phase == IncidentPhase.PROPOSED
    app.outbox.deliver_due()
    (message,) = [m for m in w.slack.messages(DEPLOYS_CHANNEL) if not m.is_reply]
    assert message.button("approve") is not None and message.button("veto") is not None
    return incident.id, message.ts


def test_a_slack_button_runs_the_same_override_and_the_message_shows_who(
    world: Callable[..., World], api_for: Callable[[World], str]
) -> None:
    w = world(config=PROPOSE)
    url = api_for(w)
    incident, ts = _proposed(w)
    answer = w.slack.press(ts, "veto", "U0ALICE", url=url)
    assert answer.status_code == 200, answer.text
    store = w.app.store
    veto = [e for e in store.decisions(incident_id=incident) if e.kind == DecisionKind.VETO]
    assert veto and veto[0].actor == "slack:alice" and "pressed veto in Slack" in veto[0].reason
    w.run(incident)
    assert store.incident(incident).phase == IncidentPhase.VETOED
    message = w.slack.message(ts, DEPLOYS_CHANNEL)
    assert "slack:alice" in json.dumps(message.blocks)  # the message shows who did what
    assert message.button("veto") is None  # and is over: no buttons left


def test_slack_requests_that_are_forged_stale_replayed_or_from_strangers_change_nothing(
    world: Callable[..., World], api_for: Callable[[World], str]
) -> None:
    w = world(config=PROPOSE)
    url = api_for(w)
    incident, ts = _proposed(w)
    store = w.app.store

    def state() -> tuple[object, ...]:
        return (store.incident(incident).phase, [e.id for e in store.decisions()])

    before = state()
    with structlog.testing.capture_logs() as logs:
        forged = w.slack.press(ts, "approve", "U0ALICE", url=url, signing_secret="not-the-secret")
        stale = w.slack.press(ts, "approve", "U0ALICE", url=url, timestamp=w.app.clock.now() - 301)
    assert (forged.status_code, stale.status_code) == (401, 401)
    assert "signature does not match" in forged.json()["error"] and "older than" in stale.json()["error"]
    refused = [entry for entry in logs if entry.get("event") == "request refused"]
    assert [r["status"] for r in refused] == [401, 401]
    assert state() == before

    # a stranger, and a user allowed in dev only: refused to them alone, nothing done
    for user in ("U0MALLORY", "U0BOB"):
        assert w.slack.press(ts, "approve", user, url=url).status_code == 200
    assert state() == before
    replies = [r.body for r in w.slack.responses]
    assert len(replies) == 2 and all(r["response_type"] == "ephemeral" for r in replies)
    assert all("not on the watchdog's Slack allow-list for prod" in r["text"] for r in replies)

    # a replay of a request that was taken: refused, even inside the 5-minute window
    ok = w.slack.press(ts, "approve", "U0ALICE", url=url)
    assert ok.status_code == 200
    assert store.incident(incident).phase == IncidentPhase.RUNNING  # approved
    taken = ok.request
    replay = httpx.post(url, content=taken.content, headers=dict(taken.headers))
    assert replay.status_code == 401 and "replay" in replay.json()["error"]


def test_a_veto_from_the_cli_is_queued_for_the_daemon_to_tell(world: Callable[..., World]) -> None:
    """The CLI has no notifiers: what it decides is queued in the same outbox, with its entry, and
    the daemon's notices job tells it (here: the Slack message shows the veto and who gave it)."""
    from watchdog.cli import _overrides

    w = world(config=PROPOSE)
    incident, ts = _proposed(w)
    _overrides(w.app.cfg, w.app.store).veto(incident, actor="erin", reason="known noise, keep it")
    queued = [r for r in w.app.store.notices(incident_id=incident) if r.phase == "pending"]
    assert {r.notifier for r in queued} >= {"chat", "hook"}
    w.run(incident)
    assert "erin" in json.dumps(w.slack.message(ts, DEPLOYS_CHANNEL).blocks)
