"""Exactly once in the store: a transition commits whole or not at all, an incident is opened by a
compare-and-set the database enforces (also for callers racing on their own connections), and a
watch ends once. On SQLite here; ``test_store_postgres.py`` runs the race on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.test_engine_replay import make
from tests.fixtures.concurrency import race
from tests.fixtures.scenarios import write_scenario
from watchdog.engine import Engine
from watchdog.errors import RollbackInProgress
from watchdog.phases import IncidentPhase, WatchPhase
from watchdog.store import ReleaseRef, Store


def open_incident(store: Store, service: str = "api") -> object:
    bad = store.upsert_release("prod", service, ReleaseRef("v2"), 1.0)
    return store.create_incident("prod", service, bad.id, None, "manual", "r", "alice", 2.0, {})


def test_concurrent_callers_open_one_incident_per_service(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wd.db'}"
    Store.open(url).close()
    stores = [Store(url) for _ in range(6)]  # each caller on its own connection, like replicas
    opened, refused = race(6, lambda i: open_incident(stores[i]))
    assert len(opened) == 1 and len(refused) == 5
    assert all(isinstance(e, RollbackInProgress) for e in refused), refused
    assert "a rollback of api in prod is already in progress" in str(refused[0])
    store = stores[0]
    assert len(store.open_incidents()) == 1
    open_incident(store, "other")  # another service is its own
    (first,) = [i for i in store.open_incidents() if i.service == "api"]
    store.set_incident_phase(first.id, IncidentPhase.RESOLVED)
    open_incident(store)  # once it is resolved, the next may open
    assert sorted(i.service for i in store.open_incidents()) == ["api", "other"]
    for s in stores:
        s.close()


def test_a_transition_commits_whole_or_not_at_all(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'wd.db'}")
    with pytest.raises(RuntimeError), store.atomic():
        release = store.upsert_release("prod", "api", ReleaseRef("v1"), 1.0)
        store.pin("prod", "api", release.id, 1.0, "alice", "seed")
        store.log_decision(
            at=1.0, env="prod", service="api", kind="pin", reason="r", actor="a", result="pinned"
        )
        raise RuntimeError("the process dies here")
    assert store.find_release("prod", "api", "v1") is None
    assert store.current_pin("prod", "api") is None and store.decisions() == []
    with store.atomic(), store.atomic():  # nested blocks join the outer one
        store.upsert_release("prod", "api", ReleaseRef("v1"), 1.0)
    assert store.find_release("prod", "api", "v1") is not None
    store.close()


def test_a_watch_ends_once(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'wd.db'}")
    release = store.upsert_release("prod", "api", ReleaseRef("v1"), 1.0)
    watch = store.create_watch("prod", "api", "deploy", release.id, None, 1.0, 100.0)
    assert store.end_watch(watch.id, WatchPhase.FAILED, 5.0, "failed: http_5xx") is True
    assert store.end_watch(watch.id, WatchPhase.SUCCESSFUL, 6.0, "healthy") is False
    ended = store.watch(watch.id)
    assert (ended.phase, ended.ended_at, ended.summary) == ("failed", 5.0, "failed: http_5xx")
    store.close()


def test_concurrent_manual_rollbacks_open_one_incident(tmp_path: Path) -> None:
    """Four people (or replicas) ask at once: one rollback, three refusals, one log entry."""
    engine, clock, store = make(tmp_path, write_scenario(tmp_path / "s", seed=3))
    engine.tick()
    # the others each on their own connection to the same store
    engines = [engine] + [
        Engine(engine.cfg, Store(engine.cfg.store.url), engine.source, clock) for _ in range(3)
    ]
    opened, refused = race(
        4, lambda i: engines[i].request_rollback("prod", "stamps-api", reason="P1", actor=f"u{i}")
    )
    assert len(opened) == 1 and len(refused) == 3 and all(isinstance(e, ValueError) for e in refused)
    assert [i.id for i in store.open_incidents()] == opened
    decided = [e for e in store.decisions() if e.kind == "rollback_decided"]
    assert len(decided) == 1 and decided[0].incident_id == opened[0]
    for e in engines:
        e.store.close()


def test_a_crash_while_a_watch_fails_leaves_nothing_half_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies after the watch ended and the release was marked failed but before the
    incident was written: none of it is kept, and the next tick decides the rollback, once."""
    engine, clock, store = make(tmp_path, write_scenario(tmp_path / "bad", err_after=0.08, regression=True))
    real = store.create_incident

    def dies(*args: object, **kw: object) -> object:
        raise SystemExit("killed")  # like SIGKILL at this line: nothing after it runs

    monkeypatch.setattr(store, "create_incident", dies)
    with pytest.raises(SystemExit):
        for _ in range(100):
            engine.tick()
            clock.advance(15.0)
    (watch,) = store.running_watches()  # still running: its end was not committed
    assert store.find_release("prod", "stamps-api", "v1.5.0").status == "deployed"
    assert [e.kind for e in store.decisions()].count("rollback_decided") == 0
    monkeypatch.setattr(store, "create_incident", real)
    engine.tick()
    assert store.watch(watch.id).phase == WatchPhase.FAILED.value
    assert store.find_release("prod", "stamps-api", "v1.5.0").status == "failed"
    (incident,) = store.open_incidents()
    decided = [e for e in store.decisions() if e.kind == "rollback_decided"]
    assert len(decided) == 1 and decided[0].incident_id == incident.id
    store.close()


def test_a_deploy_event_is_consumed_only_with_the_watch_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, clock, store = make(tmp_path, write_scenario(tmp_path / "s", seed=5))
    engine.tick()  # the deploy make() announced becomes its watch
    engine.announce("prod", "stamps-api", ReleaseRef("v1.6.0", "c" * 40), deployed_at=clock.now())
    real = store.create_watch

    def dies(*args: object, **kw: object) -> object:
        raise SystemExit("killed")

    monkeypatch.setattr(store, "create_watch", dies)
    with pytest.raises(SystemExit):
        engine.tick()
    assert [ev.tag for ev in store.pending_deploy_events()] == ["v1.6.0"]  # not lost
    monkeypatch.setattr(store, "create_watch", real)
    engine.tick()
    assert store.pending_deploy_events() == []
    assert [w.release_id for w in store.running_watches()] == [
        store.find_release("prod", "stamps-api", "v1.6.0").id
    ]
    store.close()
