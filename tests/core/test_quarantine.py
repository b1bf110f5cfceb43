"""A release that was rolled back is quarantined in its environment: deployed there again, it is
reported at once and rolled back without waiting for new evidence — as the environment's policy
allows — until an operator lifts the quarantine with a reason."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.github import TOKEN as GH_TOKEN
from watchdog.app import App
from watchdog.clock import SimClock
from watchdog.config import parse_config
from watchdog.emulator.github import GitHubEmulator
from watchdog.emulator.pagerduty import ROUTING_KEY, PagerDutyEmulator
from watchdog.errors import InputError
from watchdog.overrides import OverrideRefused, Overrides
from watchdog.phases import DecisionKind, DecisionResult, IncidentPhase, WatchPhase
from watchdog.store import ReleaseRef

CONFIG = """
version: 1
source: {kind: scrape, scrape: {targets: [{url: "http://127.0.0.1:9/metrics"}]}}
github: {repo: acme/stamps, token: "${TOKEN}", api_url: "${GH}", request_interval_s: 0, write_interval_s: 0}
store: {url: "${DB}"}
incidents:
  pagerduty: {events_url: "${PD}", routing_key: "${PD_KEY}"}
environments:
  prod:
    rollback_policy: "${POLICY}"
  stage:
    auto_rollback: false
services:
  - name: stamps-api
    signals:
      - name: http_5xx
        kind: ratio
        bad: {metric: http_requests_total, match: {code: "=~5.."}}
        total: {metric: http_requests_total}
"""
BAD = ReleaseRef("v1.1.0", "2" * 40)


def _app(tmp_path: Path, gh: GitHubEmulator, pd: PagerDutyEmulator, policy: str = "auto") -> App:
    env = {
        "TOKEN": GH_TOKEN,
        "GH": gh.url,
        "PD": pd.url,
        "PD_KEY": ROUTING_KEY,
        "DB": f"sqlite:///{tmp_path / 'wd.db'}",
        "POLICY": policy,
    }
    cfg = parse_config(CONFIG, "watchdog.yaml", env=env)
    app = App.build(cfg, SimClock(1_800_000_000.0))
    for env_name in ("prod", "stage"):
        app.engine.pin(env_name, "stamps-api", ReleaseRef("v1.0.0", "1" * 40), actor="alice", reason="seed")
    return app


@pytest.fixture
def app(
    tmp_path: Path, github_emulator: GitHubEmulator, pagerduty_emulator: PagerDutyEmulator
) -> Iterator[App]:
    a = _app(tmp_path, github_emulator, pagerduty_emulator)
    yield a
    a.close()


def _quarantine(app: App, env: str = "prod") -> None:
    app.store.quarantine(env, "stamps-api", BAD.tag, BAD.sha, 7, "5xx above SLO", app.clock.now())


def _kinds(app: App) -> list[tuple[str, str]]:
    return [(e.kind.value, e.result.value) for e in app.store.decisions()]


def test_a_quarantined_release_deployed_again_is_rolled_back_without_new_evidence(app: App) -> None:
    _quarantine(app)
    watch = app.engine.start_watch("prod", "stamps-api", BAD, app.clock.now())
    # no tick, no sample: the decision is the quarantine's alone
    assert app.store.watch(watch.id).phase == WatchPhase.FAILED
    (incident,) = app.store.open_incidents()
    assert (incident.trigger, incident.phase) == ("quarantine", IncidentPhase.RUNNING)
    assert "quarantined release v1.1.0 deployed again to prod" in incident.reason
    assert ("quarantine", "redeployed") in _kinds(app)
    assert ("rollback_decided", "rollback_started") in _kinds(app)
    # the report is a critical notice of its own (routes decide where it goes)
    from watchdog.notify.render import classify

    redeployed = next(e for e in app.store.decisions() if e.kind == DecisionKind.QUARANTINE)
    told = classify(redeployed)
    assert told is not None and told.severity.value == "critical"


def test_a_proposing_environment_proposes_and_one_without_auto_rollback_only_reports(
    tmp_path: Path, github_emulator: GitHubEmulator, pagerduty_emulator: PagerDutyEmulator
) -> None:
    app = _app(tmp_path, github_emulator, pagerduty_emulator, policy="propose")
    try:
        _quarantine(app)
        _quarantine(app, "stage")
        app.engine.start_watch("prod", "stamps-api", BAD, app.clock.now())
        (incident,) = app.store.open_incidents()
        assert incident.phase == IncidentPhase.PROPOSED
        app.engine.start_watch("stage", "stamps-api", BAD, app.clock.now())
        assert len(app.store.open_incidents()) == 1  # stage: reported, not rolled back
        stage = [e for e in app.store.decisions() if e.env == "stage"]
        assert [(e.kind.value, e.result.value) for e in stage][-2:] == [
            ("quarantine", "redeployed"),
            ("rollback_decided", "not_started"),
        ]
        assert "automatic rollback is off" in stage[-1].reason
        # reported at once: a page and a ticket, though nothing was rolled back
        (alert,) = [a for a in pagerduty_emulator.alerts() if "/refused/stage/" in a.dedup_key]
        assert "quarantined release v1.1.0 deployed again to stage" in alert.events[0].payload["summary"]
        tickets = [ex.response_json["title"] for ex in github_emulator.requests("POST", r"/issues$")]
        assert any("quarantined release v1.1.0 deployed again to stage" in t for t in tickets), tickets
    finally:
        app.close()


def test_a_lifted_quarantine_lets_the_release_be_watched_like_any_other(app: App) -> None:
    _quarantine(app)
    levers = Overrides(app.engine)
    with pytest.raises(InputError, match="needs a reason"):
        levers.lift_quarantine("prod", "stamps-api", BAD.tag, actor="alice", reason="  ")
    lifted = levers.lift_quarantine(
        "prod", "stamps-api", BAD.tag, actor="alice", reason="the bug was in a flag, now fixed"
    )
    assert (lifted.lifted_by, lifted.lift_reason) == ("alice", "the bug was in a flag, now fixed")
    entry = app.store.decisions()[-1]
    assert (entry.kind, entry.result, entry.actor) == (
        DecisionKind.QUARANTINE,
        DecisionResult.LIFTED,
        "alice",
    )
    with pytest.raises(OverrideRefused, match="not quarantined"):
        levers.lift_quarantine("prod", "stamps-api", BAD.tag, actor="alice", reason="again")
    watch = app.engine.start_watch("prod", "stamps-api", BAD, app.clock.now())
    assert app.store.watch(watch.id).phase == WatchPhase.RUNNING
    assert app.store.open_incidents() == []


def test_one_quarantine_is_in_force_per_release_and_environment(app: App) -> None:
    """(That a resolved rollback quarantines its release is shown by a whole rollback in
    tests/core/test_notify.py.)"""
    first = app.store.quarantine("prod", "stamps-api", "v1.1.0", None, 1, "r", 1.0)
    again = app.store.quarantine("prod", "stamps-api", "v1.1.0", None, 2, "r", 2.0)
    assert again.id == first.id
    assert app.store.quarantine("stage", "stamps-api", "v1.1.0", None, 3, "r", 3.0).id != first.id
