"""The watch after promotion: a promoted release is watched before/after against its pre-deploy
window, and a regression rolls it back to the release pinned before it, through the same guard.

Real engine ticks in simulated time over replayed scenarios; the regression is written into the
scenario's counters from a chosen time on (after the deploy watch passed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.fixtures.scenarios import write_scenario
from watchdog.clock import SimClock
from watchdog.config import WatchdogConfig, parse_config
from watchdog.engine import Engine
from watchdog.overrides import Overrides
from watchdog.phases import DecisionKind, DecisionResult, ReleaseStatus, WatchKind, WatchPhase
from watchdog.sources import PrometheusSource, ReplaySource
from watchdog.store import ReleaseRef, Store, Watch

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "stamps-api"
WATCH_S, AFTER_S = 600.0, 1800.0


def config(tmp_path: Path, **policy: Any) -> WatchdogConfig:
    text = (ROOT / "config" / "demo.yaml").read_text()
    cfg = parse_config(text, "demo.yaml", env={"DEMO_STORE_URL": f"sqlite:///{tmp_path / 'wd.db'}"})
    svc = cfg.services[0]
    signals = [s for s in svc.signals if s.name in ("http_5xx", "latency_p95", "latency_p99", "healthcheck")]
    prod = cfg.environments["prod"].model_copy(
        update={"watch_s": WATCH_S, "post_promotion_watch_s": AFTER_S, "calibration_s": 600.0, **policy}
    )
    return cfg.model_copy(
        update={
            "services": [svc.model_copy(update={"match": {}, "signals": signals})],
            "environments": {"prod": prod},
        }
    )


def regress_after(path: Path, onset: float, errors_per_step: int = 15) -> Path:
    """Every cohort's 5xx counter gains ``errors_per_step`` per scrape from ``onset`` on (~9 %)."""
    series = path / "series.json"
    data = json.loads(series.read_text())
    for s in data["result"]:
        if s["metric"]["__name__"] == "http_requests_total" and s["metric"]["code"] == "500":
            extra = 0
            for v in s["values"]:
                if v[0] > onset:
                    extra += errors_per_step
                v[1] = str(int(v[1]) + extra)
    series.write_text(json.dumps(data))
    return path


def start(tmp_path: Path, scenario: Path, **policy: Any) -> tuple[Engine, SimClock, Store, float]:
    cfg = config(tmp_path, **policy)
    src = ReplaySource(scenario)
    clock = SimClock(src.scenario.start)
    store = Store.open(cfg.store.url)
    engine = Engine(cfg, store, src, clock)
    engine.pin("prod", SERVICE, ReleaseRef("v1.4.2", "a" * 40), actor="test", reason="seed")
    deploy_at = src.scenario.deploy_at
    engine.announce("prod", SERVICE, ReleaseRef("v1.5.0", "b" * 40), deployed_at=deploy_at)
    clock.set(deploy_at)
    return engine, clock, store, deploy_at


def run_until_quiet(engine: Engine, clock: SimClock, store: Store, step: float = 15.0) -> None:
    for _ in range(2000):
        engine.tick()
        if not store.running_watches():
            return
        clock.advance(step)
    raise AssertionError("a watch never ended")


def watches(store: Store, kind: WatchKind) -> list[Watch]:
    return sorted(store.page(Watch, limit=100, kind=kind), key=lambda w: w.id)


def test_a_promoted_release_that_regresses_later_is_rolled_back_to_the_previous_pin(tmp_path: Path) -> None:
    sc = write_scenario(tmp_path / "late", minutes_after=45)
    deploy_at = ReplaySource(sc).scenario.deploy_at
    regress_after(sc, deploy_at + 20 * 60)  # ten minutes after the promotion
    engine, clock, store, _ = start(tmp_path, sc)
    run_until_quiet(engine, clock, store)

    (promoted,) = [e for e in store.decisions() if e.kind == DecisionKind.PROMOTED]
    assert promoted.result == DecisionResult.SUCCESSFUL and promoted.at == deploy_at + WATCH_S
    (after,) = watches(store, WatchKind.POST_PROMOTION)
    assert after.started_at == deploy_at + WATCH_S and after.phase == WatchPhase.FAILED
    assert store.release(after.previous_release_id or 0).tag == "v1.4.2"
    assert after.summary.startswith("regressed after promotion: http_5xx")
    assert after.ended_at is not None and after.ended_at - (deploy_at + 20 * 60) <= 5 * 60

    (decided,) = [e for e in store.decisions() if e.kind == DecisionKind.ROLLBACK_DECIDED]
    assert decided.result == DecisionResult.ROLLBACK_STARTED
    assert "regressed after promotion: http_5xx" in decided.reason
    assert (decided.from_tag, decided.to_tag) == ("v1.5.0", "v1.4.2")
    assert decided.evidence["failed"][0]["signal"] == "http_5xx"
    # before/after, not canary against baseline: the query has no cohort grouping
    assert "by (cohort)" not in decided.evidence["failed"][0]["query"]
    (incident,) = store.open_incidents()
    assert incident.trigger == "post_promotion:http_5xx"
    assert store.release(incident.to_release_id or 0).tag == "v1.4.2"
    assert store.find_release("prod", SERVICE, "v1.5.0").status == ReleaseStatus.FAILED


def test_a_release_healthy_after_promotion_ends_its_watch_quietly(tmp_path: Path) -> None:
    sc = write_scenario(tmp_path / "good", minutes_after=45)
    engine, clock, store, deploy_at = start(tmp_path, sc)
    run_until_quiet(engine, clock, store)
    (after,) = watches(store, WatchKind.POST_PROMOTION)
    assert after.phase == WatchPhase.SUCCESSFUL and after.summary == "healthy after promotion"
    assert after.ended_at == deploy_at + WATCH_S + AFTER_S
    kinds = [e.kind for e in store.decisions()]
    assert kinds.count(DecisionKind.PROMOTED) == 1  # no second promotion
    assert DecisionKind.ROLLBACK_DECIDED not in kinds
    assert store.current_pin("prod", SERVICE).tag == "v1.5.0" and store.open_incidents() == []


def test_the_loop_guard_holds_a_second_rollback_after_promotion(tmp_path: Path) -> None:
    """Two services promoted in prod regress together: the first is rolled back, the second is
    held by the loop guard (one automatic rollback per environment and cooldown)."""
    sc = write_scenario(tmp_path / "late", minutes_after=45)
    src = ReplaySource(sc)
    regress_after(sc, src.scenario.deploy_at + 20 * 60)
    cfg = config(tmp_path)
    twin = cfg.services[0].model_copy(update={"name": "rewards-api"})
    cfg = cfg.model_copy(update={"services": [*cfg.services, twin]})
    clock = SimClock(src.scenario.start)
    store = Store.open(cfg.store.url)
    engine = Engine(cfg, store, ReplaySource(sc), clock)
    for service in (SERVICE, "rewards-api"):
        engine.pin("prod", service, ReleaseRef("v1.4.2"), actor="test", reason="seed")
        engine.announce("prod", service, ReleaseRef("v1.5.0"), deployed_at=src.scenario.deploy_at)
    clock.set(src.scenario.deploy_at)
    run_until_quiet(engine, clock, store)
    assert [e.service for e in store.decisions() if e.kind == DecisionKind.PROMOTED] == [
        SERVICE,
        "rewards-api",
    ]
    decided = [e for e in store.decisions() if e.kind == DecisionKind.ROLLBACK_DECIDED]
    assert [e.result for e in decided] == [DecisionResult.ROLLBACK_STARTED, DecisionResult.NOT_STARTED]
    assert all("regressed after promotion" in e.reason for e in decided)
    assert decided[1].service == "rewards-api" and "loop guard" in decided[1].reason
    assert [i.service for i in store.open_incidents()] == [SERVICE]


def test_a_blind_watch_after_promotion_never_rolls_back(tmp_path: Path) -> None:
    sc = write_scenario(tmp_path / "late", minutes_after=45)
    deploy_at = ReplaySource(sc).scenario.deploy_at
    regress_after(sc, deploy_at + 20 * 60)  # the regression is there, but nobody can see it
    engine, clock, store, _ = start(tmp_path, sc)
    while not watches(store, WatchKind.POST_PROMOTION):
        engine.tick()
        clock.advance(15.0)
    engine.source = PrometheusSource("http://127.0.0.1:9", timeout_s=1)  # the source goes away
    run_until_quiet(engine, clock, store)
    (after,) = watches(store, WatchKind.POST_PROMOTION)
    assert after.phase == WatchPhase.INCONCLUSIVE
    blind = [e for e in store.decisions() if e.kind == DecisionKind.BLIND and e.watch_id == after.id]
    assert blind and blind[0].result == DecisionResult.BLIND
    assert DecisionKind.ROLLBACK_DECIDED not in [e.kind for e in store.decisions()]
    assert store.open_incidents() == [] and store.current_pin("prod", SERVICE).tag == "v1.5.0"


def test_a_newer_deploy_supersedes_the_watch_after_promotion(tmp_path: Path) -> None:
    sc = write_scenario(tmp_path / "good", minutes_after=45)
    engine, clock, store, _ = start(tmp_path, sc)
    while not watches(store, WatchKind.POST_PROMOTION):
        engine.tick()
        clock.advance(15.0)
    engine.announce("prod", SERVICE, ReleaseRef("v1.6.0", "d" * 40), deployed_at=clock.now())
    engine.tick()
    (after,) = watches(store, WatchKind.POST_PROMOTION)
    assert after.phase == WatchPhase.SUPERSEDED
    superseded = [e for e in store.decisions() if e.kind == DecisionKind.WATCH_SUPERSEDED]
    assert superseded[-1].watch_id == after.id and superseded[-1].to_tag == "v1.6.0"


def test_a_human_promotion_is_watched_after_too(tmp_path: Path) -> None:
    sc = write_scenario(tmp_path / "late", minutes_after=45)
    deploy_at = ReplaySource(sc).scenario.deploy_at
    regress_after(sc, deploy_at + 10 * 60)
    engine, clock, store, _ = start(tmp_path, sc)
    for _ in range(8):  # two minutes into the deploy watch
        engine.tick()
        clock.advance(15.0)
    Overrides(engine).promote("prod", SERVICE, actor="alice", reason="hotfix for a P2, verified by hand")
    (after,) = watches(store, WatchKind.POST_PROMOTION)
    assert after.started_at == clock.now() and after.ends_at == clock.now() + AFTER_S
    run_until_quiet(engine, clock, store)
    decided = [e for e in store.decisions() if e.kind == DecisionKind.ROLLBACK_DECIDED]
    assert [e.result for e in decided] == [DecisionResult.ROLLBACK_STARTED]
    assert "regressed after promotion" in decided[0].reason and decided[0].to_tag == "v1.4.2"


def test_post_promotion_watch_s_0_turns_it_off(tmp_path: Path) -> None:
    sc = write_scenario(tmp_path / "good", minutes_after=15)
    engine, clock, store, _ = start(tmp_path, sc, post_promotion_watch_s=0.0)
    run_until_quiet(engine, clock, store)
    assert watches(store, WatchKind.POST_PROMOTION) == []
    assert store.current_pin("prod", SERVICE).tag == "v1.5.0"
