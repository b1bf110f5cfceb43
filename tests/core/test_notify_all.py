"""Every notifier at once: whole rollbacks, detected by the watchdog and rendered by its renderer,
told to Slack, Opsgenie, Teams, a signed webhook, Statuspage and Grafana — each an emulator or
receiver on the app's simulated clock — and what each vendor ends up holding, as an SRE would check.

The release under watch is the demo's ``v1.3.0``, which fails its health check: the probe signal
fails the watch, the rollback runs, and the GitHub emulator's run hook restarts the service on
the rollback's target, so the post-rollback watch sees it healthy again."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.github import MANIFEST_V1, default_seed
from tests.fixtures.pipeline import CONFIG, build, drive, on_sim_clock
from watchdog.app import App
from watchdog.clock import SimClock
from watchdog.demo.service import ServiceProcess
from watchdog.emulator.github import GitHubEmulator, ReleaseDef, RunContext
from watchdog.emulator.grafana import DASHBOARD_UID, GrafanaEmulator
from watchdog.emulator.opsgenie import OpsgenieEmulator
from watchdog.emulator.slack import BOT_TOKEN, DEPLOYS_CHANNEL, SIGNING_SECRET, SlackEmulator
from watchdog.emulator.statuspage import COMPONENT_ID, PAGE_ID, StatuspageEmulator
from watchdog.emulator.teams import SIGNATURE as TEAMS_SIGNATURE
from watchdog.emulator.teams import TeamsReceiver
from watchdog.emulator.webhook import WebhookReceiver
from watchdog.overrides import Overrides
from watchdog.phases import DecisionKind, DecisionResult, IncidentPhase
from watchdog.store import NOTICE_FAILED, NOTICE_SENT, Incident, ReleaseRef

HOOK_SECRET = "webhook-shared-secret-0123456789abcdef"
BAD, STABLE = "v1.3.0", "v1.0.0"  # the demo's release that fails its health check, and the last good one
BAD_SHA = "4" * 40

NOTIFY = """
notifications:
  public_url: https://watchdog.example.com
  notifiers:
    chat: {kind: slack, api_url: "${SLACK}", token: "${SLACK_TOKEN}", channel: "${SLACK_CHANNEL}"}
    pager:
      kind: opsgenie
      api_url: "${OPSGENIE}"
      api_key: "${OPSGENIE_KEY}"
      responders: [{type: team, name: oncall}]
    teams: {kind: teams, webhook_url: "${TEAMS}"}
    hook: {kind: webhook, url: "${HOOK}", secret: "${HOOK_SECRET}"}
    status:
      kind: statuspage
      api_url: "${STATUSPAGE}"
      page_id: "${PAGE_ID}"
      api_key: "${STATUSPAGE_KEY}"
      components: {stamps-api: "${COMPONENT}"}
    graphs: {kind: grafana, url: "${GRAFANA}", token: "${GRAFANA_TOKEN}", dashboard_uid: "${DASHBOARD}"}
  routes:
    - {environments: [prod], severities: [critical, warning], to: [chat, pager]}
    - {to: [teams, hook]}
    - {to: [status, graphs]}
  slack_interactivity:
    signing_secret: ${SLACK_SIGNING_SECRET}
    response_url_prefix: ${SLACK_RESPONSES}
    users:
      - {slack_user: U0ALICE, actor: alice, environments: [prod]}
"""

PROPOSE = CONFIG.replace("prod: {approval: none,", "prod: {rollback_policy: propose, approval: none,")
WITH_DEV = CONFIG.replace(
    "  prod: {approval: none,",
    "  dev: {approval: none, watch_s: 60, post_rollback_watch_s: 1.5, min_coverage: 0.3}\n"
    "  prod: {approval: none,",
).replace('base_urls: {prod: "${SVC}"}', 'base_urls: {prod: "${SVC}", dev: "${SVC}"}')
# keys of this module's own: the App registers each secret of its config for redaction, process-wide,
# and the notifiers' unit tests check their own scrubbing of the emulators' default keys
OPSGENIE_KEY = "7e0e1a52-4c1b-4d8e-9a0f-3b6c2d1e5f70"
STATUSPAGE_KEY = "5p-key-notify-all-0000-1111-2222-33334444"
GRAFANA_TOKEN = "glsa_notifyAllToken000000000000000_0a1b2c3d"
SECRETS = (
    HOOK_SECRET,
    BOT_TOKEN,
    SIGNING_SECRET,
    OPSGENIE_KEY,
    STATUSPAGE_KEY,
    GRAFANA_TOKEN,
    TEAMS_SIGNATURE,
)


@pytest.fixture
def service() -> Iterator[ServiceProcess]:
    """The service, running the bad release until a rollback run restarts it on its target."""
    with ServiceProcess(BAD, "canary", seed=5) as svc:
        yield svc


@pytest.fixture
def make_github_emulator(
    make_github_emulator: Callable[..., GitHubEmulator], service: ServiceProcess
) -> Callable[..., GitHubEmulator]:
    def deploy(run: RunContext) -> bool:
        service.restart(run.ref)  # the rollback run deploys its ref: the target's tag
        return True

    seed = default_seed()
    return on_sim_clock(
        make_github_emulator,
        environments=["dev", "stage", "prod"],  # no reviewers: the rollback runs at once
        tags={**seed["tags"], BAD: BAD_SHA},
        releases=[*seed["releases"], ReleaseDef(BAD)],
        files={**seed["files"], BAD: {"migrations/manifest.json": MANIFEST_V1}},
        hook=deploy,
        hook_grace=30.0,  # the look that starts the run waits for the restart: no tick sees it down
    )


@dataclass
class World:
    """The app and every vendor it tells, all on one simulated clock."""

    app: App
    gh: GitHubEmulator
    slack: SlackEmulator
    pager: OpsgenieEmulator
    teams: TeamsReceiver
    hook: WebhookReceiver
    status: StatuspageEmulator
    graphs: GrafanaEmulator

    def watch(self, env: str = "prod") -> None:
        """The bad release is deployed: its watch starts (the probe will fail it)."""
        self.app.engine.start_watch(env, "stamps-api", ReleaseRef(BAD, BAD_SHA), self.app.clock.now())

    def run(self, env: str = "prod", until: Callable[[Incident], bool] | None = None) -> Incident:
        """Ticks, with the daemon's notice job after each, until the watch has failed and its
        incident is over with every notice delivered (or ``until`` holds for the incident)."""
        store = self.app.store

        def done() -> bool:
            self.app.outbox.deliver_due()
            incidents = store.incidents_since(env, 0.0)
            if not incidents:
                return False
            incident = incidents[-1]
            if until is not None:
                return until(incident)
            return incident.phase in IncidentPhase.closed() and not self.pending()

        drive(self.app, 0, done)
        return store.incidents_since(env, 0.0)[-1]

    def pending(self) -> list[Any]:
        return [n for n in self.app.store.notices() if n.phase not in (NOTICE_SENT, NOTICE_FAILED)]


@pytest.fixture
def world(
    tmp_path: Path,
    service: ServiceProcess,
    make_github_emulator: Callable[..., GitHubEmulator],
    make_slack_emulator: Callable[..., SlackEmulator],
    make_opsgenie_emulator: Callable[..., OpsgenieEmulator],
) -> Iterator[Callable[..., World]]:
    teams_etc: list[Any] = []
    with ExitStack() as stack:

        def make(config: str = CONFIG) -> World:
            gh = make_github_emulator()
            clock = gh.clock
            assert isinstance(clock, SimClock)
            slack = make_slack_emulator(clock=clock)
            pager = make_opsgenie_emulator(api_keys=(OPSGENIE_KEY,), now=clock.now)
            teams = stack.enter_context(TeamsReceiver(now=clock.now))
            hook = stack.enter_context(WebhookReceiver(secret=HOOK_SECRET.encode(), clock=clock))
            status = stack.enter_context(StatuspageEmulator(api_key=STATUSPAGE_KEY, now=clock.now))
            graphs = stack.enter_context(GrafanaEmulator(tokens=(GRAFANA_TOKEN,), now=clock.now))
            teams_etc.extend([teams, hook, status, graphs])
            env = {
                "SLACK": slack.api_url,
                "SLACK_TOKEN": BOT_TOKEN,
                "SLACK_CHANNEL": DEPLOYS_CHANNEL,
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_RESPONSES": slack.url,
                "OPSGENIE": pager.url,
                "OPSGENIE_KEY": OPSGENIE_KEY,
                "TEAMS": teams.webhook_url,
                "HOOK": hook.url,
                "HOOK_SECRET": HOOK_SECRET,
                "STATUSPAGE": status.url,
                "PAGE_ID": PAGE_ID,
                "STATUSPAGE_KEY": STATUSPAGE_KEY,
                "COMPONENT": COMPONENT_ID,
                "GRAFANA": graphs.url,
                "GRAFANA_TOKEN": GRAFANA_TOKEN,
                "DASHBOARD": DASHBOARD_UID,
            }
            app = build(tmp_path, service, gh, config + NOTIFY, env)
            stack.callback(app.close)
            return World(app, gh, slack, pager, teams, hook, status, graphs)

        yield make
        emulators: list[Any] = [*teams_etc]
    for emulator in emulators:  # (Slack's and Opsgenie's fixtures check their own, and the spec)
        assert not emulator.internal_errors, emulator.internal_errors


def _no_internals(text: str) -> list[str]:
    """What in ``text`` a customer should not read: digits (evidence, ids), releases, secrets, jargon."""
    found = [s for s in (*SECRETS, BAD, STABLE, "e-value", "canary", "probe", "watchdog") if s in text]
    return found + re.findall(r"\d+", text)


def _delivered(w: World) -> None:
    """Every notice went out, once, recorded: sent rows and a ``notice`` entry each, none given up."""
    store = w.app.store
    rows = store.notices()
    assert rows and all(r.phase == NOTICE_SENT for r in rows), [(r.notifier, r.last_error) for r in rows]
    told = [e for e in store.decisions() if e.kind == DecisionKind.NOTICE]
    assert len(told) == len(rows)
    assert all(e.result == DecisionResult.SENT for e in told)
    assert not [e for e in told if e.result == DecisionResult.NOTIFY_FAILED]
    assert sorted((e.evidence["notifier"], e.evidence["notice"]) for e in told) == sorted(
        (r.notifier, r.key) for r in rows
    )


def _no_secret_in_any_payload(w: World) -> None:
    """The known-secrets grep of every notifier's payload: no body any vendor received (and no
    notice the store keeps) holds a secret of the config — credentials travel in headers only."""
    bodies: list[str] = []
    for vendor in (w.slack, w.pager, w.teams, w.hook, w.status, w.graphs):
        for ex in vendor.requests():
            bodies.append(ex.request_body.decode(errors="replace"))
    bodies += [str(r.payload) for r in w.app.store.notices()]
    assert bodies
    leaks = [(secret, body[:80]) for secret in SECRETS for body in bodies if secret in body]
    assert leaks == []


def test_a_detected_prod_rollback_reaches_every_notifier_as_its_vendor_expects(
    world: Callable[..., World],
) -> None:
    w = world()
    w.watch()
    incident = w.run()
    _no_secret_in_any_payload(w)
    store = w.app.store
    assert incident.phase == IncidentPhase.RESOLVED and incident.trigger == "signal:healthcheck"
    pin = store.current_pin("prod", "stamps-api")
    assert pin is not None and pin.tag == STABLE
    _delivered(w)
    rows = store.notices()

    # Statuspage: one incident, identified → monitoring → resolved, the component degraded while it
    # ran and operational at the end, in words for customers
    (page,) = w.status.incidents()
    assert page.name.endswith(f"[rw-{incident.correlation_id}]")
    assert page.statuses == ["identified", "monitoring", "resolved"]
    first, *_, last = page.updates
    assert [(c["code"], c["new_status"]) for c in first.affected_components] == [
        (COMPONENT_ID, "degraded_performance")
    ]
    assert [(c["old_status"], c["new_status"]) for c in last.affected_components] == [
        ("degraded_performance", "operational")
    ]
    assert "reverted and it is operating normally again" in last.body
    assert w.status.component_statuses()[COMPONENT_ID] == "operational"
    assert page.impact_override == "minor" and page.resolved_at is not None
    for update in page.updates:
        assert not _no_internals(update.body), update.body

    # Opsgenie: one P1 alert under the incident's alias, noted at the milestones, closed by the
    # resolution (every request and answer checked against the Swagger spec by the fixture)
    (alert,) = w.pager.alerts()
    assert alert.alias == f"rollback-watchdog/{incident.correlation_id}"
    assert (alert.priority, alert.status, alert.count) == ("P1", "closed", 1)
    assert alert.message.startswith(f"Rolling back stamps-api in prod: {BAD} → {STABLE}")
    assert "healthcheck fail" in alert.description
    notes = "\n".join(n.note for n in alert.notes)
    for milestone in (
        "the rollback run was dispatched",
        "the rollback run finished",
        "the smoke checks passed",
    ):
        assert milestone in notes
    assert alert.notes[-1].note.startswith("Rolled back stamps-api in prod: back on v1.0.0")

    # Teams: a card per notice, each a valid Adaptive Card 1.5 (the receiver refuses others)
    cards = w.teams.cards()
    assert not w.teams.refusals
    assert len(cards) == len([r for r in rows if r.notifier == "teams"])
    assert all(w.teams.problems(card) == [] for card in cards)
    started = next(c for c in cards if c["fallbackText"].startswith("Rolling back stamps-api in prod"))
    texts = [b.get("text", "") for b in started["body"]]
    facts = {f["title"]: f["value"] for b in started["body"] if b["type"] == "FactSet" for f in b["facts"]}
    assert facts["Release"] == f"{BAD} → {STABLE}" and facts["Correlation id"] == incident.correlation_id
    assert "Evidence" in texts and any(t.startswith("healthcheck fail") for t in texts)
    assert cards[-1]["fallbackText"].startswith("Rolled back stamps-api in prod")

    # Grafana: annotations on the dashboard, tagged for its queries; the rollback's start stretched
    # into a region that ends at the resolution
    notes_of = {a.tags[-1]: a for a in w.graphs.annotations()}
    assert all(a.dashboard_uid == DASHBOARD_UID for a in notes_of.values())
    assert all({"env:prod", "service:stamps-api"} <= set(a.tags) for a in notes_of.values())
    (deploy,) = [a for a in notes_of.values() if "event:deploy" in a.tags]
    (start,) = [a for a in notes_of.values() if "event:rollback_started" in a.tags]
    (end,) = [a for a in notes_of.values() if "event:rollback_resolved" in a.tags]
    assert {f"release:{BAD}", f"target:{STABLE}"} <= set(start.tags) & set(end.tags)
    assert start.is_region and start.time_end == end.time and not end.is_region
    assert deploy.time < start.time

    # the webhook: every notice routed to it once, each signature verified by the receiver
    deliveries = w.hook.deliveries()
    assert not w.hook.refusals and not w.hook.duplicates()
    assert sorted(d.delivery_id for d in deliveries) == sorted(r.key for r in rows if r.notifier == "hook")
    events = [d.notice["event"] for d in deliveries]
    assert events[0] == "deploy" and "rollback_started" in events and events[-1] == "rollback_resolved"

    # Slack: the incident is one message, updated in place to its end
    (message,) = [m for m in w.slack.messages(DEPLOYS_CHANNEL) if not m.is_reply]
    assert message.edits and "Rolled back stamps-api in prod" in message.text
    assert "Rolling back stamps-api in prod" in str(message.edits[0].blocks)


def test_a_deploy_is_told_as_the_release_it_deploys(world: Callable[..., World]) -> None:
    """A watch's start entry names the previous pin and the new release: the notice (and so the
    Grafana annotation) is about the new one."""
    w = world()
    w.watch()
    w.run(until=lambda _incident: True)
    deploy = w.hook.deliveries()[0].notice
    assert deploy["event"] == "deploy"
    assert deploy["title"] == f"Watching {BAD} in prod (stamps-api)" and deploy["release"] == BAD
    (annotation,) = [a for a in w.graphs.annotations() if "event:deploy" in a.tags]
    assert f"release:{BAD}" in annotation.tags


def test_a_proposed_rollback_pages_and_chats_but_is_no_status_page_incident(
    world: Callable[..., World],
) -> None:
    w = world(config=PROPOSE)
    w.watch()
    incident = w.run(until=lambda i: i.phase == IncidentPhase.PROPOSED and not w.pending())
    _delivered(w)
    (message,) = [m for m in w.slack.messages(DEPLOYS_CHANNEL) if not m.is_reply]
    assert message.button("approve") is not None and "proposed" in message.text.lower()
    (alert,) = w.pager.alerts()
    assert (alert.alias, alert.priority, alert.status) == (
        f"rollback-watchdog/{incident.correlation_id}",
        "P3",
        "open",
    )
    assert any(
        c["fallbackText"].startswith("Rollback proposed for stamps-api in prod") for c in w.teams.cards()
    )
    assert any(a for a in w.graphs.annotations() if "event:rollback_proposed" in a.tags)
    # routed to the status page, which said nothing: a proposal is not yet a customer's incident
    assert [r.notifier for r in w.app.store.notices(incident_id=incident.id)].count("status") == 1
    assert w.status.incidents() == [] and w.status.requests() == []

    # approved, it is a rollback like any other: now the status page hears of it, to its end
    Overrides(w.app.engine).approve(incident.id, actor="alice", reason="the canary is clearly broken")
    w.run()
    (page_incident,) = w.status.incidents()
    assert page_incident.statuses[0] == "identified" and page_incident.statuses[-1] == "resolved"
    assert (alert_after := w.pager.alerts()[0]).status == "closed", alert_after


def test_a_dev_rollback_never_reaches_the_status_page(world: Callable[..., World]) -> None:
    w = world(config=WITH_DEV)
    w.app.engine.pin("dev", "stamps-api", ReleaseRef(STABLE, "1" * 40), actor="alice", reason="seed")
    w.watch("dev")
    incident = w.run("dev")
    assert incident.phase == IncidentPhase.RESOLVED
    _delivered(w)
    assert w.status.incidents() == [] and w.status.requests() == []
    # Slack and Opsgenie are routed for prod only; Teams, the webhook and Grafana hear of dev too
    assert w.slack.messages(DEPLOYS_CHANNEL) == [] and w.pager.alerts() == []
    assert any(c["fallbackText"].startswith("Rolled back stamps-api in dev") for c in w.teams.cards())
    assert [d.notice["env"] for d in w.hook.deliveries()] == ["dev"] * len(w.hook.deliveries())
    assert any("env:dev" in a.tags and "event:rollback_started" in a.tags for a in w.graphs.annotations())
