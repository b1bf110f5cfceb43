"""Telling people: the incident ticket (a GitHub issue), the PagerDuty page, reminders to reviewers,
the escalation notice, and dampening through Unleash, in whole rollbacks against the emulators
(every GitHub and PagerDuty exchange is checked against its spec by the fixtures)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from github import Auth, Github
from github.Issue import Issue

from tests.fixtures.pipeline import (
    CONFIG,
    NO_REVIEWERS,
    TOKEN,
    build,
    dispatches,
    drive,
    finished,
    on_sim_clock,
    start_incident,
)
from tests.fixtures.unleash import ADMIN_TOKEN
from watchdog.app import App
from watchdog.demo.service import ServiceProcess
from watchdog.emulator.github import GitHubEmulator
from watchdog.emulator.pagerduty import ROUTING_KEY, PagerDutyEmulator
from watchdog.emulator.unleash import UnleashEmulator
from watchdog.phases import DecisionKind, IncidentPhase, StepPhase
from watchdog.pipeline import ESCALATION_NOTICE

INCIDENTS = """
incidents:
  pagerduty:
    events_url: ${PD}
    routing_key: ${PD_KEY}
"""

DAMPENING = """    dampening:
      prod:
        - name: flags
          kind: unleash
          unleash:
            url: ${UNLEASH}
            token: ${UNLEASH_TOKEN}
            environment: production
            disable: [checkout, new-pricing]
            enable: [read-only]
"""


@pytest.fixture
def make_github_emulator(
    make_github_emulator: Callable[..., GitHubEmulator],
) -> Callable[..., GitHubEmulator]:
    """Every emulator here runs on a simulated clock that the app shares (``on_sim_clock``)."""
    return on_sim_clock(make_github_emulator)


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    with ServiceProcess("v1.0.0", "canary", seed=5) as svc:
        yield svc


def app_for(
    tmp_path: Path,
    service: ServiceProcess,
    gh: GitHubEmulator,
    pd: PagerDutyEmulator,
    unleash: UnleashEmulator | None = None,
    config: str = CONFIG,
) -> App:
    text = config + (DAMPENING if unleash else "") + INCIDENTS
    env = {"PD": pd.url, "PD_KEY": ROUTING_KEY}
    if unleash is not None:
        env |= {"UNLEASH": unleash.url, "UNLEASH_TOKEN": ADMIN_TOKEN}
    return build(tmp_path, service, gh, text, env)


def issues(gh: GitHubEmulator) -> list[Issue]:
    client = Github(base_url=gh.url, auth=Auth.Token(TOKEN), retry=None)
    return list(client.get_repo(gh.full_name).get_issues(state="all"))


def comments(issue: Issue) -> list[str]:
    return [c.body for c in issue.get_comments()]


def flags(unleash: UnleashEmulator) -> dict[str, bool]:
    names = ("checkout", "recommendations", "new-pricing", "read-only")
    return {n: unleash.enabled("default", n, "production") for n in names}


BEFORE = {"checkout": True, "recommendations": True, "new-pricing": False, "read-only": False}
DAMPENED = {"checkout": False, "recommendations": True, "new-pricing": False, "read-only": True}


def test_a_rollback_opens_a_ticket_pages_oncall_dampens_and_resolves_all_of_it(
    tmp_path: Path,
    service: ServiceProcess,
    make_github_emulator: Callable[..., GitHubEmulator],
    pagerduty_emulator: PagerDutyEmulator,
    unleash_emulator: UnleashEmulator,
) -> None:
    gh = make_github_emulator(**NO_REVIEWERS)
    seen: list[dict[str, bool]] = []
    gh.set_hook(lambda ctx: seen.append(flags(unleash_emulator)) or True)  # flags while the rollback deploys
    app = app_for(tmp_path, service, gh, pagerduty_emulator, unleash_emulator)
    incident_id = start_incident(app)
    drive(app, incident_id, finished(app, incident_id))
    incident = app.store.incident(incident_id)
    assert incident.phase == IncidentPhase.RESOLVED.value

    (ticket,) = issues(gh)
    assert incident.correlation_id in ticket.title and "v1.1.0 → v1.0.0" in ticket.title
    assert {label.name for label in ticket.labels} == {"rollback", "incident"}
    assert ticket.state == "closed"
    (resolved,) = comments(ticket)
    assert resolved.startswith("Resolved: stamps-api in prod is back on `v1.0.0`")

    alert = pagerduty_emulator.alert(f"rollback-watchdog/{incident.correlation_id}")
    assert [e.action for e in alert.events] == ["trigger", "resolve"]
    assert alert.status == "resolved" and alert.severity == "error"
    assert alert.custom_details is not None and alert.custom_details["incident_id"] == incident_id
    assert alert.links[0]["href"] == ticket.html_url

    assert seen == [DAMPENED]  # flags off and read-only on while the stable release deploys
    assert flags(unleash_emulator) == BEFORE  # each flag back as it was: new-pricing stays off
    notices = next(s for s in app.store.steps(incident_id) if s.name == "ticket_and_page").evidence
    assert notices["ticket"]["number"] == ticket.number and notices["problems"] == {}
    app.close()


def test_an_escalation_pages_critical_updates_the_ticket_and_keeps_the_dampening(
    tmp_path: Path,
    service: ServiceProcess,
    make_github_emulator: Callable[..., GitHubEmulator],
    pagerduty_emulator: PagerDutyEmulator,
    unleash_emulator: UnleashEmulator,
) -> None:
    gh = make_github_emulator(hook=lambda ctx: False, **NO_REVIEWERS)  # the rollback run fails
    app = app_for(tmp_path, service, gh, pagerduty_emulator, unleash_emulator)
    incident_id = start_incident(app)
    drive(app, incident_id, finished(app, incident_id))
    incident = app.store.incident(incident_id)
    assert incident.phase == IncidentPhase.ESCALATED.value

    alert = pagerduty_emulator.alert(f"rollback-watchdog/{incident.correlation_id}")
    assert [e.action for e in alert.events] == ["trigger", "trigger"]
    assert alert.status == "triggered" and alert.severity == "critical"  # high urgency
    assert alert.summary.startswith("ESCALATED: Rollback of stamps-api in prod")
    assert "restore-db.md" in str(alert.custom_details)
    (ticket,) = issues(gh)
    assert ticket.state == "open"
    (escalated,) = comments(ticket)
    assert escalated.startswith("**Escalated — a human must take over.**") and "ended failure" in escalated
    assert flags(unleash_emulator) == DAMPENED  # kept for the humans
    notice = app.store.step(incident_id, ESCALATION_NOTICE)
    assert notice.phase == StepPhase.SUCCESSFUL.value and set(notice.evidence) >= {"page", "ticket"}
    app.close()


def test_undo_dampening_on_escalation_restores_the_flags_when_configured(
    tmp_path: Path,
    service: ServiceProcess,
    make_github_emulator: Callable[..., GitHubEmulator],
    pagerduty_emulator: PagerDutyEmulator,
    unleash_emulator: UnleashEmulator,
) -> None:
    gh = make_github_emulator(hook=lambda ctx: False, **NO_REVIEWERS)
    config = CONFIG.replace("approval: none,", "approval: none, undo_dampening_on_escalation: true,")
    app = app_for(tmp_path, service, gh, pagerduty_emulator, unleash_emulator, config)
    incident_id = start_incident(app)
    drive(app, incident_id, finished(app, incident_id))
    assert app.store.incident(incident_id).phase == IncidentPhase.ESCALATED.value
    assert flags(unleash_emulator) == BEFORE
    assert app.store.step(incident_id, ESCALATION_NOTICE).evidence["undo_dampening"] == {"undone": ["flags"]}
    app.close()


def test_pagerduty_down_never_holds_the_rollback_back(
    tmp_path: Path,
    service: ServiceProcess,
    make_github_emulator: Callable[..., GitHubEmulator],
    pagerduty_emulator: PagerDutyEmulator,
) -> None:
    gh = make_github_emulator(**NO_REVIEWERS)
    pagerduty_emulator.inject_error("POST", r"/enqueue$", 503, times=50)
    app = app_for(tmp_path, service, gh, pagerduty_emulator)
    incident_id = start_incident(app)
    drive(app, incident_id, finished(app, incident_id))
    assert app.store.incident(incident_id).phase == IncidentPhase.RESOLVED.value
    assert len(dispatches(gh)) == 1
    failed = [e for e in app.store.decisions(incident_id=incident_id) if e.result == "notify_failed"]
    assert [e.evidence["problems"].keys() for e in failed] == [{"page"}, {"page_resolved"}]
    assert "PagerDuty" in failed[0].reason and "503" in failed[0].reason
    assert ROUTING_KEY not in str([e.reason for e in failed])
    assert len(issues(gh)) == 1  # the ticket went out all the same
    app.close()


def test_a_lost_answer_to_the_ticket_creation_never_opens_a_second_ticket(
    tmp_path: Path,
    service: ServiceProcess,
    make_github_emulator: Callable[..., GitHubEmulator],
    pagerduty_emulator: PagerDutyEmulator,
) -> None:
    gh = make_github_emulator(**NO_REVIEWERS)
    gh.inject_accept_then_drop("POST", r"/issues$")  # GitHub opened it; the answer never arrived
    app = app_for(tmp_path, service, gh, pagerduty_emulator)
    incident_id = start_incident(app)
    drive(app, incident_id, finished(app, incident_id))
    assert app.store.incident(incident_id).phase == IncidentPhase.RESOLVED.value
    assert len(gh.requests("POST", r"/issues$")) == 1
    (ticket,) = issues(gh)
    assert len(comments(ticket)) == 1  # the resolution, once
    app.close()


def test_reviewers_are_reminded_on_the_ticket_and_an_unapproved_run_is_cancelled(
    tmp_path: Path,
    service: ServiceProcess,
    make_github_emulator: Callable[..., GitHubEmulator],
    pagerduty_emulator: PagerDutyEmulator,
) -> None:
    gh = make_github_emulator()  # prod requires alice or watchdog-bot
    config = CONFIG.replace(
        "approval: none,", "approval: reviewers, approval_reminder_s: 0.5, approval_timeout_s: 2.5,"
    )
    app = app_for(tmp_path, service, gh, pagerduty_emulator, config=config)
    incident_id = start_incident(app)
    drive(app, incident_id, finished(app, incident_id))
    assert app.store.incident(incident_id).phase == IncidentPhase.ESCALATED.value
    (run,) = gh.list_runs()
    assert run["status"] == "completed" and run["conclusion"] == "cancelled"
    assert gh.requests("POST", r"/pending_deployments$") == []  # never approved on its own

    (ticket,) = issues(gh)
    texts = comments(ticket)
    reminders = [t for t in texts if "waits for your approval" in t]
    assert len(reminders) >= 2  # at once, then every 0.5 s until the 2.5 s timeout
    assert all(t.startswith("@alice @watchdog-bot: rollback run") for t in reminders)
    assert [f"(reminder {i + 1};" in t for i, t in enumerate(reminders)] == [True] * len(reminders)
    assert "nobody approved rollback run" in texts[-1] and "cancelled" in texts[-1]
    log = app.store.decisions(incident_id=incident_id)
    assert [e.result for e in log if e.result in ("awaiting_approval", "reminded")] == [
        "awaiting_approval"
    ] + ["reminded"] * (len(reminders) - 1)
    app.close()


def test_an_escalation_the_process_died_in_is_sent_on_the_next_tick(
    tmp_path: Path,
    service: ServiceProcess,
    make_github_emulator: Callable[..., GitHubEmulator],
    pagerduty_emulator: PagerDutyEmulator,
) -> None:
    gh = make_github_emulator(**NO_REVIEWERS)
    app = app_for(tmp_path, service, gh, pagerduty_emulator)
    incident_id = start_incident(app)
    # the decision was logged, then the process died before the page and the ticket update
    app.store.update_step(
        app.store.step(incident_id, ESCALATION_NOTICE).id,
        phase=StepPhase.RUNNING,
        now=app.clock.now(),
        evidence={"reason": "step smoke failed: health"},
    )
    app.store.set_incident_phase(incident_id, IncidentPhase.ESCALATING, app.clock.now())
    app.engine.tick()
    incident = app.store.incident(incident_id)
    assert incident.phase == IncidentPhase.ESCALATED.value
    alert = pagerduty_emulator.alert(f"rollback-watchdog/{incident.correlation_id}")
    assert alert.severity == "critical" and "step smoke failed: health" in alert.summary
    (ticket,) = issues(gh)  # the first step never ran: the escalation opens the ticket
    assert "step smoke failed: health" in comments(ticket)[0]
    assert dispatches(gh) == []
    assert app.store.decisions(incident_id=incident_id)[-1].result == "escalation_sent"
    assert DecisionKind.ESCALATED.value not in [e.kind for e in app.store.decisions(incident_id=incident_id)]
    app.close()
