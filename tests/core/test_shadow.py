"""Shadow mode: the watchdog watches and decides, logs what it would have done, and changes
nothing; ``shadow-report`` compares those decisions with what the team did.

Real engine ticks in simulated time over replayed scenarios; the team's own actions (a rollback by
hand, a hotfix deploy, redeploying the old release) go through the engine and its levers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from actions.notify import NoticeEvent, NoticeSeverity
from actions.pagerduty import PagerDuty
from tests.core.test_post_promotion import run_until_quiet
from tests.fixtures.scenarios import write_scenario
from watchdog.cli import main
from watchdog.clock import SimClock
from watchdog.config import WatchdogConfig, parse_config
from watchdog.emulator.pagerduty import ROUTING_KEY, PagerDutyEmulator
from watchdog.engine import Engine
from watchdog.notify.render import render
from watchdog.phases import DecisionKind, DecisionResult, ReleaseStatus, WatchKind, WatchPhase
from watchdog.shadow import Agreement, Outcome, Shadowed, shadow_report
from watchdog.sources import ReplaySource
from watchdog.store import ReleaseRef, Store, Watch

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "stamps-api"
HOUR = 3600.0


def config(url: str, services: tuple[str, ...] = (SERVICE,), **policy: Any) -> WatchdogConfig:
    cfg = parse_config((ROOT / "config" / "demo.yaml").read_text(), "demo.yaml", env={"DEMO_STORE_URL": url})
    svc = cfg.services[0]
    signals = [s for s in svc.signals if s.name in ("http_5xx", "latency_p95", "latency_p99", "healthcheck")]
    base = svc.model_copy(update={"match": {}, "signals": signals})
    prod = cfg.environments["prod"].model_copy(update={"mode": "shadow", "watch_s": 600.0, **policy})
    return cfg.model_copy(
        update={
            "services": [base.model_copy(update={"name": name}) for name in services],
            "environments": {"prod": prod},
        }
    )


def engine_on(cfg: WatchdogConfig, store: Store, scenario: Path, pager: PagerDuty | None = None) -> Engine:
    src = ReplaySource(scenario)
    return Engine(cfg, store, src, SimClock(src.scenario.start), pager=pager)


def deploy(engine: Engine, service: str, tag: str, at: float | None = None) -> None:
    assert isinstance(engine.clock, SimClock)
    at = engine.clock.now() if at is None else at
    engine.announce("prod", service, ReleaseRef(tag), deployed_at=at)
    if engine.clock.now() < at:
        engine.clock.set(at)


def run(engine: Engine) -> None:
    assert isinstance(engine.clock, SimClock)
    run_until_quiet(engine, engine.clock, engine.store)


def test_a_bad_release_in_shadow_is_logged_as_would_have_rolled_back_and_nothing_happens(
    tmp_path: Path, pagerduty_emulator: PagerDutyEmulator
) -> None:
    cfg = config(f"sqlite:///{tmp_path / 'wd.db'}")
    store = Store.open(cfg.store.url)
    sc = write_scenario(tmp_path / "bad", err_after=0.08, regression=True)
    with httpx.Client() as http:
        engine = engine_on(cfg, store, sc, PagerDuty(pagerduty_emulator.url, ROUTING_KEY, http))
        engine.pin("prod", SERVICE, ReleaseRef("v1.4.2"), actor="test", reason="seed")
        deploy(engine, SERVICE, "v1.5.0", ReplaySource(sc).scenario.deploy_at)
        run(engine)

    (decided,) = [e for e in store.decisions() if e.kind == DecisionKind.ROLLBACK_DECIDED]
    assert decided.result == DecisionResult.SHADOW_ROLLBACK
    assert decided.reason.startswith("shadow mode: would have rolled back v1.5.0 to v1.4.2: http_5xx")
    assert "nothing was changed" in decided.reason
    assert decided.evidence["failed"][0]["signal"] == "http_5xx"
    assert decided.evidence["trigger"] == "signal:http_5xx"
    assert decided.evidence["failed"][0]["query"].startswith("sum by (cohort)")
    # nothing else happened: no incident, no pin change, the release's status stays, nobody paged
    assert store.open_incidents() == [] and store.incidents_since("prod", 0.0) == []
    assert store.current_pin("prod", SERVICE).tag == "v1.4.2"
    assert store.find_release("prod", SERVICE, "v1.5.0").status == ReleaseStatus.DEPLOYED
    assert pagerduty_emulator.alerts() == []
    (watch,) = store.page(Watch, limit=10, kind=WatchKind.DEPLOY)
    assert watch.phase == WatchPhase.FAILED
    assert store.points(watch.id, "http_5xx")  # the signal points are kept as in act mode
    # the notice is an info "rollback held", never a critical "rollback started"
    notice = render(cfg, store, decided, engine.clock.now())
    assert notice is not None
    assert (notice.event, notice.severity) == (NoticeEvent.ROLLBACK_HELD, NoticeSeverity.INFO)
    assert notice.title == "Shadow mode: would have rolled back stamps-api in prod: v1.5.0 → v1.4.2"


def test_a_healthy_release_in_shadow_is_logged_promoted_and_the_pin_stays(tmp_path: Path) -> None:
    cfg = config(f"sqlite:///{tmp_path / 'wd.db'}", post_promotion_watch_s=0.0)
    store = Store.open(cfg.store.url)
    sc = write_scenario(tmp_path / "good", minutes_after=15)
    engine = engine_on(cfg, store, sc)
    engine.pin("prod", SERVICE, ReleaseRef("v1.4.2"), actor="test", reason="seed")
    deploy(engine, SERVICE, "v1.5.0", ReplaySource(sc).scenario.deploy_at)
    run(engine)
    (promoted,) = [e for e in store.decisions() if e.kind == DecisionKind.PROMOTED]
    assert promoted.result == DecisionResult.SHADOW and "the pin was not moved" in promoted.reason
    assert (promoted.from_tag, promoted.to_tag) == ("v1.4.2", "v1.5.0")
    assert store.current_pin("prod", SERVICE).tag == "v1.4.2"
    assert store.find_release("prod", SERVICE, "v1.5.0").status == ReleaseStatus.DEPLOYED
    assert render(cfg, store, promoted, engine.clock.now()) is None  # nothing moved: nothing told


def test_a_shadow_watchdog_pages_nobody(tmp_path: Path, pagerduty_emulator: PagerDutyEmulator) -> None:
    """A watch whose data stops goes blind (paged after a minute in act mode) and ends inconclusive
    (paged too, on_inconclusive: page); in shadow mode both are logged, and nobody is woken."""
    cfg = config(f"sqlite:///{tmp_path / 'wd.db'}", post_promotion_watch_s=0.0, blind_page_after_s=60.0)
    store = Store.open(cfg.store.url)
    sc = write_scenario(tmp_path / "quiet", rps=0.0, minutes_after=2)
    with httpx.Client() as http:
        engine = engine_on(cfg, store, sc, PagerDuty(pagerduty_emulator.url, ROUTING_KEY, http))
        engine.pin("prod", SERVICE, ReleaseRef("v1.4.2"), actor="test", reason="seed")
        deploy(engine, SERVICE, "v1.5.0", ReplaySource(sc).scenario.deploy_at)
        run(engine)
    last = store.decisions()[-1]
    assert last.kind == DecisionKind.INCONCLUSIVE and last.reason.endswith("the release is held for a human")
    blind = [e.result for e in store.decisions() if e.kind == DecisionKind.BLIND]
    assert blind == [DecisionResult.BLIND]  # blind for longer than blind_page_after_s, not paged
    assert pagerduty_emulator.alerts() == []


@dataclass(frozen=True)
class History:
    url: str
    deploy_at: float


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    """A shadow environment's month, built through the engine and the team's own actions:

    - s1 v1.5.0 is bad; the watchdog would roll back; alice rolls it back by hand (agreed)
    - s2 v1.5.0 is bad; the watchdog would roll back; the team keeps it (a false alarm)
    - s3 v1.5.0 is bad; would roll back; v1.5.1 follows minutes later (hotfixed: agreed); v1.5.1
      is on the same bad data: would roll back, kept (a false alarm)
    - s4 v1.5.0 is healthy: shadow promotion, kept (agreed)
    - s5 v1.5.0 is healthy: shadow promotion; alice rolls it back by hand (a miss)
    - s6 v1.5.0 is healthy: shadow promotion; the team redeploys v1.4.2 soon after (a miss)
    """
    tmp = tmp_path_factory.mktemp("shadow")
    url = f"sqlite:///{tmp / 'wd.db'}"
    cfg = config(url, ("s1", "s2", "s3", "s4", "s5", "s6"), post_promotion_watch_s=0.0)
    store = Store.open(url)
    bad = write_scenario(tmp / "bad", err_after=0.08, regression=True)
    good = write_scenario(tmp / "good", minutes_after=20)
    deploy_at = ReplaySource(bad).scenario.deploy_at
    assert ReplaySource(good).scenario.deploy_at == deploy_at

    engine = engine_on(cfg, store, bad)
    for service in ("s1", "s2", "s3", "s4", "s5", "s6"):
        engine.pin("prod", service, ReleaseRef("v1.4.2"), actor="test", reason="seed")
    for service in ("s1", "s2", "s3"):
        deploy(engine, service, "v1.5.0", deploy_at)
    run(engine)
    deploy(engine, "s3", "v1.5.1")  # the hotfix, minutes after
    run(engine)
    engine.request_rollback("prod", "s1", reason="P1: claims failing", actor="alice")

    engine = engine_on(cfg, store, good)  # the healthy releases, on their own data
    for service in ("s4", "s5", "s6"):
        deploy(engine, service, "v1.5.0", deploy_at)
    run(engine)
    engine.request_rollback("prod", "s5", reason="customers report wrong stamp counts", actor="alice")
    deploy(engine, "s6", "v1.4.2")  # the team redeploys the old release by hand
    engine.tick()
    store.close()
    return History(url, deploy_at)


def test_shadow_report_classifies_each_decision_against_what_the_team_did(history: History) -> None:
    store = Store.open(history.url, create=False)
    report = shadow_report(
        store, env="prod", since=0.0, now=history.deploy_at + 10 * 86400, hotfix_window_s=HOUR
    )
    got = [(c.service, c.release, c.shadowed, c.outcome, c.agreement) for c in report.cases]
    would, promoted = Shadowed.WOULD_ROLL_BACK, Shadowed.PROMOTED
    assert sorted(got) == [
        ("s1", "v1.5.0", would, Outcome.ROLLED_BACK, Agreement.AGREED),
        ("s2", "v1.5.0", would, Outcome.KEPT, Agreement.DISAGREED),
        ("s3", "v1.5.0", would, Outcome.HOTFIXED, Agreement.AGREED),
        ("s3", "v1.5.1", would, Outcome.KEPT, Agreement.DISAGREED),
        ("s4", "v1.5.0", promoted, Outcome.KEPT, Agreement.AGREED),
        ("s5", "v1.5.0", promoted, Outcome.ROLLED_BACK, Agreement.DISAGREED),
        ("s6", "v1.5.0", promoted, Outcome.ROLLED_BACK, Agreement.DISAGREED),
    ]
    assert report.counts == {
        "cases": 7,
        "agreed": 3,
        "disagreed": 4,
        "unknown": 0,
        "false_alarms": 2,
        "misses": 2,
    }
    details = {(c.service, c.release): c.detail for c in report.cases}
    assert details[("s1", "v1.5.0")].startswith("rolled back by alice")
    assert details[("s3", "v1.5.0")].startswith("v1.5.1 deployed")
    assert details[("s6", "v1.5.0")].startswith("v1.4.2 (older) redeployed")
    # soon after the deploys, a release nobody touched is not known yet
    early = shadow_report(store, env="prod", since=0.0, now=history.deploy_at + 700, hotfix_window_s=HOUR)
    assert {(c.service, c.outcome) for c in early.cases if c.service in ("s2", "s4")} == {
        ("s2", Outcome.UNKNOWN),
        ("s4", Outcome.UNKNOWN),
    }
    # a decision older than --since is not in the report
    assert (
        shadow_report(
            store, env="prod", since=history.deploy_at + 86400, now=1e10, hotfix_window_s=HOUR
        ).cases
        == []
    )
    store.close()


def test_the_cli_prints_the_shadow_report_as_a_table_and_as_json(
    history: History, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEMO_STORE_URL", history.url)
    cfg = str(ROOT / "config" / "demo.yaml")
    # the scenarios are in the past: --since reaches back to them
    args = ["shadow-report", "-c", cfg, "--env", "prod", "--since", "3650d", "--hotfix-window", "1h"]
    assert main(args) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["when", "env", "service", "release"]
    assert any(" s2 " in line and "kept" in line and "disagreed" in line for line in table)
    assert table[-1] == (
        "prod: 7 shadow decisions: 3 agreed, 4 disagreed (2 false alarms, 2 misses), 0 not known yet "
        "(hotfix window 3600s)"
    )
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"]["agreed"] == 3 and out["counts"]["misses"] == 2
    assert {c["outcome"] for c in out["cases"]} == {"rolled_back", "hotfixed", "kept"}
    # bad input: a clear error naming the argument, exit 2, nothing opened
    assert main(["shadow-report", "-c", cfg, "--env", "qa"]) == 2
    assert "--env qa" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["shadow-report", "-c", cfg, "--since", "soon"])
    assert exc.value.code == 2
    assert "'soon': a positive duration" in capsys.readouterr().err
