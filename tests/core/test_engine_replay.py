"""The engine in simulated time over replayed scenarios: bad → rollback decided; good → promoted."""

from pathlib import Path

import pytest

from tests.fixtures.scenarios import write_scenario
from watchdog.clock import SimClock
from watchdog.config import parse_config
from watchdog.engine import Engine
from watchdog.phases import DecisionKind, IncidentPhase, ReleaseStatus, SignalState, WatchPhase
from watchdog.sources import PrometheusSource, ReplaySource
from watchdog.store import ReleaseRef, Store

ROOT = Path(__file__).resolve().parents[2]


def make(tmp_path: Path, scenario: Path) -> tuple[Engine, SimClock, Store]:
    text = (ROOT / "config" / "demo.yaml").read_text()
    cfg = parse_config(text, "demo.yaml", env={"DEMO_STORE_URL": f"sqlite:///{tmp_path / 'wd.db'}"})
    # A scenario holds one service and none of the job labels the demo selects on; watch 30 minutes
    # with the signals whose series the scenario has (a signal without data would hold the release).
    svc = cfg.services[0]
    signals = [s for s in svc.signals if s.name in ("http_5xx", "latency_p95", "latency_p99", "healthcheck")]
    cfg = cfg.model_copy(
        update={
            "services": [svc.model_copy(update={"match": {}, "signals": signals})],
            "environments": {
                "prod": cfg.environments["prod"].model_copy(
                    update={"watch_s": 1800.0, "post_promotion_watch_s": 0.0}
                )
            },
        }
    )
    src = ReplaySource(scenario)
    clock = SimClock(src.scenario.start)
    store = Store.open(cfg.store.url)
    engine = Engine(cfg, store, src, clock)
    engine.pin("prod", "stamps-api", ReleaseRef("v1.4.2", "a" * 40), actor="test", reason="seed")
    engine.announce("prod", "stamps-api", ReleaseRef("v1.5.0", "b" * 40), deployed_at=src.scenario.deploy_at)
    clock.set(src.scenario.deploy_at)
    return engine, clock, store


def run_until_watch_ends(engine: Engine, clock: SimClock, store: Store, step: float = 15.0) -> float:
    for _ in range(1000):
        engine.tick()
        if not store.running_watches():
            return clock.now()
        clock.advance(step)
    raise AssertionError("watch never ended")


def test_bad_release_fails_its_watch_and_a_rollback_is_decided(tmp_path: Path) -> None:
    sc = write_scenario(tmp_path / "bad", err_after=0.08, regression=True)
    engine, clock, store = make(tmp_path, sc)
    decided_at = run_until_watch_ends(engine, clock, store)
    deploy_at = ReplaySource(sc).scenario.deploy_at
    assert decided_at - deploy_at <= 5 * 60  # 8% vs a 1% SLO at 4 req/s on the canary: minutes at most
    kinds = [e.kind for e in store.decisions()]
    assert DecisionKind.ROLLBACK_DECIDED.value in kinds
    entry = next(e for e in store.decisions() if e.kind == DecisionKind.ROLLBACK_DECIDED.value)
    assert entry.from_tag == "v1.5.0" and entry.to_tag == "v1.4.2" and entry.result == "rollback_started"
    assert entry.evidence["failed"][0]["signal"] == "http_5xx"
    assert entry.evidence["failed"][0]["query"].startswith("sum by (cohort) (increase(http_requests_total")
    assert store.find_release("prod", "stamps-api", "v1.5.0").status == ReleaseStatus.FAILED.value
    assert len(store.open_incidents()) == 1


def test_healthy_release_is_promoted_and_pinned(tmp_path: Path) -> None:
    sc = write_scenario(tmp_path / "good", minutes_after=30)
    engine, clock, store = make(tmp_path, sc)
    run_until_watch_ends(engine, clock, store)
    assert store.current_pin("prod", "stamps-api").tag == "v1.5.0"
    last = store.decisions()[-1]
    assert last.kind == DecisionKind.PROMOTED.value and last.from_tag == "v1.4.2"
    assert store.open_incidents() == []


def test_no_data_is_never_a_failure(tmp_path: Path) -> None:
    sc = write_scenario(tmp_path / "quiet", rps=0.0, minutes_after=2)
    engine, clock, store = make(tmp_path, sc)
    engine.tick()
    watch = store.running_watches()
    run_until_watch_ends(engine, clock, store)
    assert store.watch(watch[0].id).phase == WatchPhase.INCONCLUSIVE.value
    assert not any(v.state == SignalState.FAIL.value for v in store.verdicts(watch[0].id))
    assert store.open_incidents() == []
    # healthchecks passed but no request was seen, and the data ended after 2 of 30 minutes:
    # inconclusive, and the release is held, never promoted
    assert store.current_pin("prod", "stamps-api").tag == "v1.4.2"
    last = store.decisions()[-1]
    assert last.kind == DecisionKind.INCONCLUSIVE.value and "held for a human" in last.reason
    assert "http_5xx: data in 7% of 900 steps (needs 80%)" in last.reason


@pytest.mark.parametrize("seed", range(5))
def test_counter_reset_at_deploy_creates_no_events(tmp_path: Path, seed: int) -> None:
    """The canary restarts at deploy (its counters drop to zero); a healthy release is not failed."""
    sc = write_scenario(tmp_path / f"reset{seed}", minutes_after=5, seed=seed, reset_at_deploy=True)
    engine, clock, store = make(tmp_path, sc)
    run_until_watch_ends(engine, clock, store)
    assert store.open_incidents() == []


def test_an_unreachable_source_makes_the_watchdog_blind_not_trigger_happy(tmp_path: Path) -> None:
    """Prometheus down for the whole watch: logged as blind, never a rollback, never a promotion."""
    text = (ROOT / "config" / "demo.yaml").read_text()
    cfg = parse_config(text, "demo.yaml", env={"DEMO_STORE_URL": f"sqlite:///{tmp_path / 'wd.db'}"})
    clock = SimClock(1_764_300_000.0)
    store = Store.open(cfg.store.url)
    engine = Engine(cfg, store, PrometheusSource("http://127.0.0.1:9", timeout_s=1), clock)
    engine.pin("prod", "stamps-api", ReleaseRef("v1.0.0"), actor="test", reason="seed")
    engine.announce("prod", "stamps-api", ReleaseRef("v1.1.0"))
    run_until_watch_ends(engine, clock, store, step=10.0)
    kinds = [e.kind for e in store.decisions()]
    assert kinds.count(DecisionKind.BLIND.value) == 1
    assert DecisionKind.ROLLBACK_DECIDED.value not in kinds and DecisionKind.PROMOTED.value not in kinds
    blind = next(e for e in store.decisions() if e.kind == DecisionKind.BLIND.value)
    assert "did not answer" in blind.evidence["errors"][0]
    assert store.open_incidents() == []


def test_loop_guard_allows_one_automatic_rollback_per_environment_and_period(tmp_path: Path) -> None:
    first = write_scenario(tmp_path / "first", err_after=0.08, regression=True)
    engine, clock, store = make(tmp_path, first)
    run_until_watch_ends(engine, clock, store)
    assert len(store.open_incidents()) == 1
    for incident in store.open_incidents():  # the first rollback finished (no pipeline in this test)
        store.set_incident_phase(incident.id, IncidentPhase.RESOLVED, clock.now())
    # a second bad release minutes later (replayed on the same data) finds the loop guard
    engine.announce(
        "prod", "stamps-api", ReleaseRef("v1.5.1"), deployed_at=ReplaySource(first).scenario.deploy_at
    )
    run_until_watch_ends(engine, clock, store)
    guarded = [e for e in store.decisions() if e.kind == DecisionKind.ROLLBACK_DECIDED.value][-1]
    assert guarded.result == "not_started" and "loop guard" in guarded.reason
    assert store.open_incidents() == []


def test_every_tick_leaves_each_signals_point_for_the_dashboard(tmp_path: Path) -> None:
    """Verdicts keep only the changes of state; the points keep the path: one per signal per tick,
    the statistic against its threshold, the canary's and the baseline's bad fraction."""
    from watchdog.api import watch_series_of

    sc = write_scenario(tmp_path / "bad", err_after=0.08, regression=True)
    engine, clock, store = make(tmp_path, sc)
    run_until_watch_ends(engine, clock, store)
    (watch,) = [w for w in store.page(type(store.watch(1)), limit=10) if w.kind == "deploy"]
    points = store.points(watch.id, "http_5xx")
    ticks = {p.at for p in store.points(watch.id)}
    assert len(points) == len(ticks) >= 2  # every tick, not only the changes
    last = points[-1]
    assert last.state == "fail" and last.statistic is not None and last.threshold is not None
    assert last.statistic >= last.threshold
    assert last.canary is not None and last.baseline is not None and last.canary > last.baseline
    series = watch_series_of(store, watch)
    assert {s.signal for s in series.signals} >= {"http_5xx"}
    kinds = [m.kind for m in series.markers]
    assert kinds[0] == "deploy" and "rollback_decided" in kinds
