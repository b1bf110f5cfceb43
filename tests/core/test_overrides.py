"""Human overrides on the real pipeline (GitHub and PagerDuty emulators, a real demo service), on a
simulated clock: veto inside and after the window, proposals and approval, pause and resume with
expiry, promote now, extend, acknowledge — and what wins when two of them meet."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from github import Auth, Github

from tests.fixtures.concurrency import race
from tests.fixtures.pipeline import (
    CONFIG,
    NO_REVIEWERS,
    TOKEN,
    build,
    dispatches,
    drive,
    finished,
    on_sim_clock,
)
from watchdog.app import App
from watchdog.demo.service import ServiceProcess
from watchdog.emulator.github import GitHubEmulator
from watchdog.emulator.pagerduty import ROUTING_KEY, PagerDutyEmulator
from watchdog.errors import InputError
from watchdog.overrides import OverrideRefused, Overrides
from watchdog.phases import DecisionKind, DecisionResult, IncidentPhase, ReleaseStatus, StepPhase, WatchPhase
from watchdog.store import ReleaseRef, Watch

PAGED = """
incidents:
  pagerduty:
    events_url: ${PD}
    routing_key: ${PD_KEY}
"""
PROD = "prod: {approval: none, watch_s: 60, post_rollback_watch_s: 1.5, min_coverage: 0.3}"


def config(**policy: object) -> str:
    extra = "".join(f", {k}: {v}" for k, v in policy.items())
    return CONFIG.replace(PROD, PROD[:-1] + extra + "}") + PAGED


@pytest.fixture
def make_github_emulator(
    make_github_emulator: Callable[..., GitHubEmulator],
) -> Callable[..., GitHubEmulator]:
    return on_sim_clock(make_github_emulator, **NO_REVIEWERS)


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    with ServiceProcess("v1.0.0", "canary", seed=8) as svc:
        yield svc


def app_for(
    tmp_path: Path, service: ServiceProcess, gh: GitHubEmulator, pd: PagerDutyEmulator, text: str
) -> App:
    return build(tmp_path, service, gh, text, {"PD": pd.url, "PD_KEY": ROUTING_KEY})


def failed_watch(app: App, tag: str = "v1.1.0") -> int:
    """A deploy watch of ``tag`` that fails, decided as the engine decides it: its incident's id,
    or None when no incident opened."""
    engine = app.engine
    watch = engine.start_watch("prod", "stamps-api", ReleaseRef(tag, "2" * 40), app.clock.now(), actor="ci")
    with engine.decisions.transition():
        assert app.store.end_watch(watch.id, WatchPhase.FAILED, app.clock.now(), "failed: http_5xx")
        then = engine._decide_rollback(
            watch, "http_5xx: canary 40 bad vs 8 expected", {}, "http_5xx", app.clock.now()
        )
    if then is not None:
        then()  # as the engine's _fail does, after the commit
    opened = app.store.open_incidents()
    return opened[-1].id if opened else -1


def step(app: App, incident_id: int, name: str) -> StepPhase:
    return app.store.step(incident_id, name).phase


def kinds(app: App) -> list[tuple[str, str, str]]:
    return [(e.kind.value, e.result.value, e.actor) for e in app.store.decisions()]


def ticket_texts(gh: GitHubEmulator) -> tuple[str, list[str], str]:
    client = Github(base_url=gh.url, auth=Auth.Token(TOKEN), retry=None)
    (issue,) = client.get_repo(gh.full_name).get_issues(state="all")
    return issue.body, [c.body for c in issue.get_comments()], issue.state


def test_a_veto_inside_the_window_cancels_the_rollback_before_it_changes_anything(
    tmp_path: Path,
    service: ServiceProcess,
    make_github_emulator: Callable[..., GitHubEmulator],
    pagerduty_emulator: PagerDutyEmulator,
) -> None:
    gh = make_github_emulator()
    app = app_for(tmp_path, service, gh, pagerduty_emulator, config(veto_window_s=60))
    overrides = Overrides(app.engine)
    incident_id = failed_watch(app)
    drive(app, incident_id, lambda: step(app, incident_id, "go_ahead") == StepPhase.RUNNING)
    # oncall knows at once, and knows until when a veto stops it; nothing has changed yet
    body, _, _ = ticket_texts(gh)
    assert "**Veto window**: nothing is changed before" in body and f"veto --incident {incident_id}" in body
    incident = app.store.incident(incident_id)
    alert = pagerduty_emulator.alert(f"rollback-watchdog/{incident.correlation_id}")
    assert alert.custom_details is not None and "veto_until" in alert.custom_details
    assert dispatches(gh) == [] and step(app, incident_id, "dampen") == StepPhase.PENDING
    app.clock.advance(30)  # type: ignore[attr-defined]
    drive(app, incident_id, lambda: True)
    assert dispatches(gh) == []  # still inside the window

    overrides.veto(incident_id, actor="alice", reason="known noisy canary, fix in flight")
    drive(app, incident_id, lambda: app.store.incident(incident_id).phase == IncidentPhase.VETOED)
    release = app.store.find_release("prod", "stamps-api", "v1.1.0")
    assert release is not None and release.status == ReleaseStatus.VETOED
    assert dispatches(gh) == [] and step(app, incident_id, "dampen") == StepPhase.PENDING
    alert = pagerduty_emulator.alert(f"rollback-watchdog/{incident.correlation_id}")
    assert [e.action for e in alert.events] == ["trigger", "trigger", "resolve"]
    assert alert.events[1].payload["summary"].startswith("VETOED:") and alert.status == "resolved"
    _, comments, state = ticket_texts(gh)
    (comment,) = comments
    assert comment.startswith("**Vetoed — nothing was changed.** vetoed by alice: known noisy canary")
    assert state == "closed"
    # the watch goes on, and the release is never rolled back automatically again here
    (watch,) = app.store.running_watches("prod", "stamps-api")
    assert watch.release_id == release.id
    assert ("veto", "vetoed", "alice") in kinds(app)
    assert failed_watch(app) == -1  # fails again: logged, a human decides
    again = app.store.decisions()[-1]
    assert again.result == DecisionResult.NOT_STARTED and "vetoed" in again.reason
    with pytest.raises(OverrideRefused, match="is vetoed: there is nothing to veto"):
        overrides.veto(incident_id, actor="bob", reason="twice")
    app.close()


def test_after_the_window_a_veto_is_refused_with_the_reason_and_the_rollback_goes_on(
    tmp_path: Path,
    service: ServiceProcess,
    make_github_emulator: Callable[..., GitHubEmulator],
    pagerduty_emulator: PagerDutyEmulator,
) -> None:
    gh = make_github_emulator()
    app = app_for(tmp_path, service, gh, pagerduty_emulator, config(veto_window_s=5))
    incident_id = failed_watch(app)
    drive(app, incident_id, lambda: bool(dispatches(gh)))
    with pytest.raises(
        OverrideRefused, match=r"the veto window of incident \d+ closed at .* changing things now"
    ):
        Overrides(app.engine).veto(incident_id, actor="alice", reason="too late")
    drive(app, incident_id, finished(app, incident_id))
    assert app.store.incident(incident_id).phase == IncidentPhase.RESOLVED
    gate = app.store.step(incident_id, "go_ahead")
    assert gate.ended_at is not None and gate.ended_at >= app.store.incident(incident_id).created_at + 5
    app.close()


def test_a_humans_rollback_has_no_veto_window(
    tmp_path: Path,
    service: ServiceProcess,
    make_github_emulator: Callable[..., GitHubEmulator],
    pagerduty_emulator: PagerDutyEmulator,
) -> None:
    gh = make_github_emulator()
    app = app_for(tmp_path, service, gh, pagerduty_emulator, config(veto_window_s=600))
    app.engine.start_watch("prod", "stamps-api", ReleaseRef("v1.1.0"), app.clock.now(), actor="ci")
    incident_id = app.engine.request_rollback("prod", "stamps-api", reason="P1", actor="bob")
    with pytest.raises(OverrideRefused, match="requested by bob: a human's rollback has no veto window"):
        Overrides(app.engine).veto(incident_id, actor="alice", reason="no")
    drive(app, incident_id, lambda: bool(dispatches(gh)))  # at once, not after 600 s
    assert app.clock.now() - app.store.incident(incident_id).created_at < 60
    app.close()


def test_a_proposal_waits_for_an_operator_and_of_approve_and_veto_the_first_wins(
    tmp_path: Path,
    service: ServiceProcess,
    make_github_emulator: Callable[..., GitHubEmulator],
    pagerduty_emulator: PagerDutyEmulator,
) -> None:
    gh = make_github_emulator()
    app = app_for(
        tmp_path, service, gh, pagerduty_emulator, config(rollback_policy="propose", veto_window_s=30)
    )
    overrides = Overrides(app.engine)
    incident_id = failed_watch(app)
    assert app.store.incident(incident_id).phase == IncidentPhase.PROPOSED
    drive(app, incident_id, lambda: step(app, incident_id, "go_ahead") == StepPhase.RUNNING)
    app.clock.advance(3600)  # type: ignore[attr-defined]
    drive(app, incident_id, lambda: True)
    assert dispatches(gh) == []  # an hour later: still waiting for a human
    body, _, _ = ticket_texts(gh)
    assert "**Proposed, not started**" in body and f"approve --incident {incident_id}" in body

    levers = [
        lambda: overrides.approve(incident_id, actor="alice", reason="confirmed bad"),
        lambda: overrides.veto(incident_id, actor="bob", reason="not bad"),
    ]
    won, lost = race(2, lambda i: levers[i]())
    assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], OverrideRefused), lost
    phase = app.store.incident(incident_id).phase
    if phase == IncidentPhase.RUNNING:  # approved: it rolls back at once (no veto window after a human)
        drive(app, incident_id, finished(app, incident_id))
        assert app.store.incident(incident_id).phase == IncidentPhase.RESOLVED and len(dispatches(gh)) == 1
        assert ("approval", "approved", "alice") in kinds(app)
    else:
        assert phase == IncidentPhase.VETOING and dispatches(gh) == []
    with pytest.raises(OverrideRefused):
        overrides.approve(incident_id, actor="carol", reason="again")
    app.close()


def test_a_pause_logs_would_roll_back_pages_and_expires(
    tmp_path: Path,
    service: ServiceProcess,
    make_github_emulator: Callable[..., GitHubEmulator],
    pagerduty_emulator: PagerDutyEmulator,
) -> None:
    gh = make_github_emulator()
    app = app_for(tmp_path, service, gh, pagerduty_emulator, config())
    overrides = Overrides(app.engine)
    for bad in (0, -5, 8 * 86_400):
        with pytest.raises(InputError, match="a pause lasts more than 0 s and at most"):
            overrides.pause("prod", None, for_s=bad, actor="alice", reason="r")
    overrides.pause("prod", None, for_s=600, actor="alice", reason="db migration window")
    assert failed_watch(app) == -1  # no rollback while paused
    decided = app.store.decisions()[-1]
    assert decided.result == DecisionResult.WOULD_ROLL_BACK and "paused by alice" in decided.reason
    (alert,) = pagerduty_emulator.alerts()
    assert (
        alert.dedup_key.startswith("rollback-watchdog/paused/prod/stamps-api/")
        and alert.status == "triggered"
    )
    # a forced rollback is a human's: a pause does not hold it
    incident_id = app.engine.request_rollback("prod", "stamps-api", reason="P1 anyway", actor="bob")
    drive(app, incident_id, finished(app, incident_id))
    assert app.store.incident(incident_id).phase == IncidentPhase.RESOLVED
    # the pause ends by itself, logged once
    app.clock.advance(601)  # type: ignore[attr-defined]
    app.engine.tick()
    app.engine.tick()
    expired = [e for e in app.store.decisions() if e.result == DecisionResult.EXPIRED]
    assert len(expired) == 1 and "by alice expired" in expired[0].reason
    assert app.store.pauses_in_force("prod", "stamps-api", app.clock.now()) == []
    with pytest.raises(OverrideRefused, match="automation for prod is not paused"):
        overrides.resume("prod", None, actor="alice", reason="done")
    app.close()


def test_resume_ends_the_scopes_pause_and_a_service_pause_outlives_the_environments(
    tmp_path: Path,
    service: ServiceProcess,
    make_github_emulator: Callable[..., GitHubEmulator],
    pagerduty_emulator: PagerDutyEmulator,
) -> None:
    gh = make_github_emulator()
    app = app_for(tmp_path, service, gh, pagerduty_emulator, config())
    overrides = Overrides(app.engine)
    overrides.pause("prod", None, for_s=600, actor="alice", reason="env")
    overrides.pause("prod", "stamps-api", for_s=60, actor="bob", reason="service")
    overrides.pause("prod", "stamps-api", for_s=1200, actor="carol", reason="longer")  # replaces bob's
    now = app.clock.now()
    assert [p.actor for p in app.store.pauses_in_force("prod", "stamps-api", now)] == ["alice", "carol"]
    assert [p.actor for p in overrides.resume("prod", None, actor="dave", reason="env done")] == ["alice"]
    assert [p.actor for p in app.store.pauses_in_force("prod", "stamps-api", now)] == ["carol"]
    assert failed_watch(app) == -1  # still paused by the service's own pause
    overrides.resume("prod", "stamps-api", actor="dave", reason="all done")
    incident_id = failed_watch(app, "v1.2.0")
    assert incident_id > 0 and app.store.incident(incident_id).phase == IncidentPhase.RUNNING
    app.close()


def test_promote_now_and_extend_and_what_they_refuse(
    tmp_path: Path,
    service: ServiceProcess,
    make_github_emulator: Callable[..., GitHubEmulator],
    pagerduty_emulator: PagerDutyEmulator,
) -> None:
    gh = make_github_emulator()
    app = app_for(tmp_path, service, gh, pagerduty_emulator, config())
    overrides = Overrides(app.engine)
    watch: Watch = app.engine.start_watch(
        "prod", "stamps-api", ReleaseRef("v1.2.0"), app.clock.now(), actor="ci"
    )
    extended = overrides.extend("prod", "stamps-api", by_s=300, actor="alice", reason="low traffic")
    assert extended.ends_at == watch.ends_at + 300
    promoted = overrides.promote("prod", "stamps-api", actor="alice", reason="verified by hand")
    assert promoted.phase == WatchPhase.SUCCESSFUL
    pinned = app.store.current_pin("prod", "stamps-api")
    assert pinned is not None and pinned.tag == "v1.2.0" and pinned.status == ReleaseStatus.STABLE
    assert ("promoted", "successful", "alice") in kinds(app) and (
        "watch_extended",
        "extended",
        "alice",
    ) in kinds(app)
    for lever in (overrides.promote, lambda *a, **k: overrides.extend(*a, by_s=60, **k)):
        with pytest.raises(OverrideRefused, match="no watch of stamps-api in prod is running"):
            lever("prod", "stamps-api", actor="bob", reason="again")
    # a release whose rollback is open is never promoted
    app.engine.start_watch("prod", "stamps-api", ReleaseRef("v1.3.0"), app.clock.now(), actor="ci")
    app.engine.request_rollback("prod", "stamps-api", reason="P2", actor="bob")
    app.engine.start_watch("prod", "stamps-api", ReleaseRef("v1.4.0"), app.clock.now(), actor="ci")
    with pytest.raises(OverrideRefused, match="a rollback of stamps-api in prod is in progress"):
        overrides.promote("prod", "stamps-api", actor="alice", reason="r")
    with pytest.raises(InputError, match="extend by more than 0 s"):
        overrides.extend("prod", "stamps-api", by_s=0, actor="alice", reason="r")
    app.close()


def test_an_escalation_is_acknowledged_once(
    tmp_path: Path,
    service: ServiceProcess,
    make_github_emulator: Callable[..., GitHubEmulator],
    pagerduty_emulator: PagerDutyEmulator,
) -> None:
    gh = make_github_emulator(hook=lambda ctx: False)  # the rollback run fails: escalation
    app = app_for(tmp_path, service, gh, pagerduty_emulator, config())
    overrides = Overrides(app.engine)
    incident_id = failed_watch(app)
    with pytest.raises(OverrideRefused, match="not escalated: nothing to acknowledge"):
        overrides.acknowledge(incident_id, actor="alice", reason="mine")
    drive(app, incident_id, finished(app, incident_id))
    assert app.store.incident(incident_id).phase == IncidentPhase.ESCALATED
    overrides.acknowledge(incident_id, actor="alice", reason="on it")
    alert = pagerduty_emulator.alert(f"rollback-watchdog/{app.store.incident(incident_id).correlation_id}")
    assert alert.status == "acknowledged"
    with pytest.raises(OverrideRefused, match="acknowledged by alice already"):
        overrides.acknowledge(incident_id, actor="bob", reason="me too")
    assert [e.kind for e in app.store.decisions(incident_id=incident_id)].count(
        DecisionKind.ACKNOWLEDGED
    ) == 1
    with pytest.raises(InputError, match="incident 999: no such incident"):
        overrides.acknowledge(999, actor="bob", reason="?")
    app.close()


def test_a_pause_does_not_hold_a_rollback_already_open(
    tmp_path: Path,
    service: ServiceProcess,
    make_github_emulator: Callable[..., GitHubEmulator],
    pagerduty_emulator: PagerDutyEmulator,
) -> None:
    gh = make_github_emulator()
    app = app_for(tmp_path, service, gh, pagerduty_emulator, config())
    incident_id = failed_watch(app)
    drive(app, incident_id, lambda: step(app, incident_id, "ticket_and_page") == StepPhase.SUCCESSFUL)
    Overrides(app.engine).pause("prod", None, for_s=3600, actor="alice", reason="freeze")
    drive(app, incident_id, finished(app, incident_id))
    assert app.store.incident(incident_id).phase == IncidentPhase.RESOLVED and len(dispatches(gh)) == 1
    app.close()
