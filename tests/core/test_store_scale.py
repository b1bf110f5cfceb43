"""The store at scale (migration 0010): every hot read has an index — the database's own plan says
so, on SQLite and on PostgreSQL —, the retention deletes exactly what it should, and a tick
writes its signal points and verdicts in one transaction however many watches it evaluates."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event

from tests.fixtures.postgres import run_postgres
from tests.fixtures.scenarios import write_scenario
from tests.fixtures.volume import DAY, START, Volume, explain, fill, statements
from watchdog.clock import SimClock
from watchdog.config import RetentionConfig, WatchdogConfig, parse_config
from watchdog.engine import Engine
from watchdog.errors import LeaseLost
from watchdog.evaluate import SignalResult
from watchdog.leader import LEASE
from watchdog.phases import DecisionKind, IncidentPhase, WatchKind, WatchPhase
from watchdog.retention import Retention
from watchdog.sources import ReplaySource
from watchdog.store import (
    DecisionEntry,
    Incident,
    Release,
    ReleaseRef,
    Store,
    TickWrites,
    Watch,
)
from watchdog.store.models import Base

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)]
_databases = itertools.count()


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[str]:
    with run_postgres() as url:
        yield url


def _new_url(request: pytest.FixtureRequest, backend: str, where: Path) -> str:
    """A URL of an empty database of its own: a file, or a database of the module's cluster."""
    if backend == "sqlite":
        return f"sqlite:///{where / 'wd.db'}"
    cluster: str = request.getfixturevalue("pg_cluster")
    name = f"scale_{next(_databases)}"
    admin = sa.create_engine(cluster, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return f"{cluster.rsplit('/', 1)[0]}/{name}"


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = Store.open(_new_url(request, request.param, tmp_path))
    yield s
    s.close()


# ---------------------------------------------------------------------------- the schema


#: Migration 0007's unique index on an expression (the run id, a missing one as -1): Alembic
#: neither reflects it on SQLite nor compares its expression, so it is declared in the migration only.
EXPRESSION_INDEXES = {"uq_deploy_event"}


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_the_models_are_what_the_migrations_create(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in diff if not (d[0].endswith("_index") and d[1].name in EXPRESSION_INDEXES)] == []


def test_0010_downgrades_and_upgrades_again_keeping_the_rows(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'wd.db'}")
    rel = store.upsert_release("prod", "api", ReleaseRef("v1"), 1.0)
    watch = store.create_watch("prod", "api", WatchKind.DEPLOY.value, rel.id, None, 1.0, 2.0)
    store.add_verdict(watch.id, 1.0, "http_5xx", "pass", "sprt", 0.1, 1.0, "fine", {})
    cfg = Store._alembic()
    with store.engine.begin() as conn:  # the watch is referred to: no copy of its table may drop it
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0009")
    with store.engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("watches")}
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("decision_log")}
    assert "points_pruned_at" not in columns and indexes == {"ix_decision_log_env"}
    store.migrate()
    assert [v.signal for v in store.verdicts(watch.id)] == ["http_5xx"]
    assert store.watch(watch.id).points_pruned_at is None
    store.close()


# ---------------------------------------------------------------------------- the read paths

#: Tables the plan of a hot read must never scan whole (PostgreSQL: which it would choose to, at
#: the filled volume; the others' plans are asked with sequential scans off, to show an index
#: serves the read however small the table is in the test).
LARGE = {"verdicts", "signal_points", "decision_log", "watches", "notices", "deploy_events"}
#: Partial indexes: scanning one reads only the rows it holds (the open incidents, the notices
#: not delivered yet), never the table.
PARTIAL = ("uq_open_incident", "ix_notices_undelivered")


class _Undone(Exception):
    """Raised to roll back what a read path under test wrote (the retention's deletes)."""


def _pruning(ids: dict[str, Any]) -> Callable[[Store], object]:
    def prune(s: Store) -> None:  # as an hourly run finds it: the watches that ended a day past it
        with pytest.raises(_Undone), s.atomic():
            s.prune(START + 31 * DAY, points_s=30 * DAY, verdicts_s=30 * DAY, batch=1000)
            raise _Undone

    return prune


def _hot(ids: dict[str, Any]) -> dict[str, Callable[[Store], object]]:
    """Every read the tick, the API, the dashboard, the CLI and the retention make, as they make it."""
    w, inc, now = ids["watch"], ids["incident"], START + 30 * DAY
    return {
        # the tick
        "running watches": lambda s: s.running_watches(),
        "a service's running watches": lambda s: s.running_watches("prod", "svc-0001"),
        "deploy events to consume": lambda s: s.pending_deploy_events(),
        "expired pauses": lambda s: s.expired_pauses(now),
        "pauses in force": lambda s: s.pauses_in_force("prod", "svc-0001", now),
        "open incidents": lambda s: s.open_incidents(),
        "incidents since (loop guard, after promotion)": lambda s: s.incidents_since(
            "prod", now - 3600, actor="automatic"
        ),
        "the newest deploy watch": lambda s: s.last_deploy_watch("prod", "svc-0001"),
        "a release's deploy watch": lambda s: s.page(
            Watch, limit=1, env="prod", service="svc-0001", kind=WatchKind.DEPLOY, release_id=5
        ),
        "an incident's post-rollback watch": lambda s: s.incident_watch(inc, WatchKind.POST_ROLLBACK),
        "the stable pin": lambda s: s.current_pin("prod", "svc-0001"),
        "a quarantine": lambda s: s.quarantined("prod", "svc-0001", "v3"),
        "an incident's steps": lambda s: s.steps(inc),
        "a watch's verdicts (recall, API)": lambda s: s.verdicts(w),
        "a watch's blind entries (recall)": lambda s: s.decisions(watch_id=w, kind=DecisionKind.BLIND),
        "due notices": lambda s: s.due_notices(now),
        "notifiers of a subject": lambda s: s.notifiers_of_subject(f"watch-{w}"),
        # the API, the dashboard, the evidence picture
        "a watch's points": lambda s: s.points(w),
        "a signal's points": lambda s: s.points(w, "http_5xx"),
        "a watch's entries": lambda s: s.decisions(watch_id=w),
        "an incident's entries": lambda s: s.decisions(incident_id=inc),
        "log page by environment": lambda s: s.page(DecisionEntry, limit=50, env="prod"),
        "log page before a cursor": lambda s: s.page(
            DecisionEntry, limit=50, before=ids["entry"], env="prod"
        ),
        "log page by service": lambda s: s.page(DecisionEntry, limit=50, env="prod", service="svc-0001"),
        "log page by kind": lambda s: s.page(DecisionEntry, limit=50, env="prod", kind=DecisionKind.PROMOTED),
        "log page by incident": lambda s: s.page(DecisionEntry, limit=50, incident_id=inc),
        "a service's watches": lambda s: s.page(Watch, limit=50, env="prod", service="svc-0001"),
        "a service's releases": lambda s: s.page(Release, limit=50, env="prod", service="svc-0001"),
        "an incident by correlation id": lambda s: s.page(
            Incident, limit=1, correlation_id="wd-000000000001"
        ),
        "the pin history": lambda s: s.pins("prod", "svc-0001"),
        "pauses": lambda s: s.list_pauses("prod", in_force_at=now),
        # the CLI
        "log, newest": lambda s: s.decisions(env="prod", limit=50),
        "a service's entries (the replay benchmark)": lambda s: s.decisions(env="prod", service="svc-0001"),
        "log, of kinds": lambda s: s.decisions(
            env="prod", limit=50, kind=[DecisionKind.PROMOTED, DecisionKind.ROLLBACK_DECIDED]
        ),
        # the retention (its deletes rolled back)
        "the retention": _pruning(ids),
    }


HOT = list(_hot({"watch": 1, "incident": 1, "entry": 1}))


@pytest.fixture(scope="module", params=BACKENDS)
def month(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A store like a month of 100 services in two environments (4,000 watches, 240,000 signal
    points, 16,000 decision-log entries), with the planner's statistics."""
    s = Store.open(_new_url(request, request.param, tmp_path_factory.mktemp("month")))
    ids = fill(s, Volume())
    yield s, ids
    s.close()


def _full_scans(store: Store, plan: list[str], tables: set[str] | None) -> list[str]:
    """The steps of a plan that read a whole table (of ``tables``; None: any of the store's)."""
    tables = tables if tables is not None else set(Base.metadata.tables)
    found = []
    for line in plan:
        if store.engine.dialect.name == "postgresql":
            m = re.search(r"Seq Scan on (\w+)", line)
        else:
            m = re.match(r"SCAN (\w+)", line.strip())
            if m and any(f"USING INDEX {p}" in line for p in PARTIAL):
                m = None
        if m and m.group(1) in tables:
            found.append(line.strip())
    return found


@pytest.mark.parametrize("read", HOT)
def test_every_hot_read_is_served_by_an_index(month: Any, read: str) -> None:
    store, ids = month
    with statements(store) as seen:
        _hot(ids)[read](store)
    queries = [(q, p) for q, p in seen if q.lstrip().split(None, 1)[0] in ("SELECT", "UPDATE", "DELETE")]
    assert queries, f"{read}: no query seen"
    for query, params in queries:
        if store.engine.dialect.name == "postgresql":
            chosen = explain(store, query, params)
            assert not _full_scans(store, chosen, LARGE), f"{read}:\n{query}\n" + "\n".join(chosen)
            plan = explain(store, query, params, seqscan=False)  # which index serves it at all
        else:
            plan = explain(store, query, params)
        assert not _full_scans(store, plan, None), f"{read}:\n{query}\n" + "\n".join(plan)


# ---------------------------------------------------------------------------- the retention

T = START + 100 * DAY


def _watch(store: Store, service: str, *, ended_days_ago: float | None, **kw: Any) -> int:
    rel = store.upsert_release("prod", service, ReleaseRef(f"v-{service}"), T - 50 * DAY)
    kind = kw.pop("kind", WatchKind.DEPLOY.value)
    w = store.create_watch("prod", service, kind, rel.id, None, T - 50 * DAY, T + DAY, **kw)
    store.add_points(
        [
            {"watch_id": w.id, "at": T - 50 * DAY + 15 * i, "signal": "http_5xx", "state": "pass"}
            for i in range(30)
        ]
    )
    for signal in ("http_5xx", "latency_p95"):
        store.add_verdict(w.id, T - 50 * DAY, signal, "pass", "sprt", 0.1, 1.0, "fine", {})
    if ended_days_ago is not None:
        assert store.end_watch(w.id, WatchPhase.SUCCESSFUL, T - ended_days_ago * DAY, "done")
    store.log_decision(
        at=T - 50 * DAY,
        env="prod",
        service=service,
        kind="watch_started",
        reason="deploy",
        actor="automatic",
        result="running",
        watch_id=w.id,
    )
    return w.id


def _kept(store: Store, *watches: int) -> dict[int, tuple[int, int]]:
    return {w: (len(store.points(w)), len(store.verdicts(w))) for w in watches}


def _decided(store: Store, service: str, watch_id: int, incident_id: int) -> None:
    """The decision-log entry of a rollback a watch decided 40 days ago."""
    store.log_decision(
        at=T - 40 * DAY,
        env="prod",
        service=service,
        kind="rollback_decided",
        reason="5xx",
        actor="automatic",
        result="rollback_started",
        watch_id=watch_id,
        incident_id=incident_id,
    )


def test_the_retention_prunes_ended_watches_only_and_never_the_decision_log(store: Store) -> None:
    old = _watch(store, "old", ended_days_ago=40)
    recent = _watch(store, "recent", ended_days_ago=10)
    running = _watch(store, "running", ended_days_ago=None)  # begun 50 days ago, still watched
    deciding = _watch(store, "deciding", ended_days_ago=40)  # decided an incident still open
    bad = store.upsert_release("prod", "deciding", ReleaseRef("v-bad"), T - 41 * DAY)
    opened = store.create_incident(
        "prod", "deciding", bad.id, None, "signal:http_5xx", "5xx", "automatic", T - 40 * DAY, {}
    )
    _decided(store, "deciding", deciding, opened.id)
    after = _watch(  # the open incident's watch after its rollback
        store, "deciding", ended_days_ago=39, kind=WatchKind.POST_ROLLBACK.value, incident_id=opened.id
    )
    closed_deciding = _watch(store, "closed", ended_days_ago=40)  # decided an incident now resolved
    closed = store.create_incident(
        "prod", "closed", bad.id, None, "signal:http_5xx", "5xx", "automatic", T - 40 * DAY, {}
    )
    store.set_incident_phase(closed.id, IncidentPhase.RESOLVED, T - 39 * DAY)
    _decided(store, "closed", closed_deciding, closed.id)
    entries = len(store.decisions())
    clock = SimClock(T)
    retention = Retention(store, clock, RetentionConfig(points_days=30, verdicts_days=30, batch=100))

    pruned = retention.run()

    assert pruned is not None and (pruned.points, pruned.verdicts) == (60, 4)
    assert (pruned.points_watches, pruned.verdicts_watches) == (2, 2)
    assert _kept(store, old, closed_deciding) == {old: (0, 0), closed_deciding: (0, 0)}
    assert _kept(store, recent, running, deciding, after) == dict.fromkeys(
        (recent, running, deciding, after), (30, 2)
    )
    assert len(store.decisions()) == entries  # the decision log is never pruned
    assert store.watch(old).points_pruned_at == T and store.watch(recent).points_pruned_at is None
    again = retention.run()
    assert again is not None and (again.points, again.verdicts, again.points_watches) == (0, 0, 0)

    store.set_incident_phase(opened.id, IncidentPhase.RESOLVED, T)  # no longer needed: pruned next
    clock.advance(25 * DAY)  # the injected clock: ``recent`` ended 35 days ago now
    pruned = retention.run()
    assert pruned is not None and (pruned.points, pruned.verdicts) == (90, 6)
    assert _kept(store, recent, deciding, after, running) == {
        recent: (0, 0),
        deciding: (0, 0),
        after: (0, 0),
        running: (30, 2),
    }
    assert len(store.decisions()) == entries


def test_points_and_verdicts_have_retentions_of_their_own(store: Store) -> None:
    a = _watch(store, "a", ended_days_ago=10)
    forever = Retention(store, SimClock(T), RetentionConfig(points_days=0, verdicts_days=None))
    assert not forever.enabled and forever.run() is None and _kept(store, a) == {a: (30, 2)}
    points_only = Retention(store, SimClock(T), RetentionConfig(points_days=7, verdicts_days=0))
    assert points_only.run() is not None
    assert _kept(store, a) == {a: (0, 2)}
    assert store.watch(a).points_pruned_at == T and store.watch(a).verdicts_pruned_at is None


def test_the_retention_deletes_in_bounded_transactions_and_stops_between_them(store: Store) -> None:
    watches = [_watch(store, f"s{i}", ended_days_ago=40) for i in range(5)]  # 150 points
    deletes: list[int] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("DELETE FROM signal_points"):
            deletes.append(1)

    event.listen(store.engine, "before_cursor_execute", count)
    calls = itertools.count()
    stopping = Retention(store, SimClock(T), RetentionConfig(batch=100, verdicts_days=0))
    stopping.leading = lambda: next(calls) < 2  # the lease is lost after the first transaction
    first = stopping.run()
    assert first is not None and first.interrupted and (first.points, first.points_watches) == (100, 0)
    assert sum(len(store.points(w)) for w in watches) == 50
    done = Retention(store, SimClock(T), RetentionConfig(batch=100, verdicts_days=0)).run()
    assert done is not None and not done.interrupted and (done.points, done.points_watches) == (50, 5)
    assert len(deletes) == 2  # 100 rows, then the last 50 with the watches' marks
    event.remove(store.engine, "before_cursor_execute", count)


def test_the_retention_runs_on_the_leader_only_and_a_deposed_one_deletes_nothing(store: Store) -> None:
    w = _watch(store, "a", ended_days_ago=40)
    standby = Retention(store, SimClock(T), RetentionConfig(), leading=lambda: False)
    assert standby.run() is None and _kept(store, w) == {w: (30, 2)}
    token = store.acquire_lease(LEASE, "old", T, 30.0)
    store.fence(LEASE, "old", token)
    other = Store(store.url)
    assert other.acquire_lease(LEASE, "new", T + 60, 30.0) is not None  # the old lease ran out
    assert Retention(store, SimClock(T + 60), RetentionConfig()).run() is None  # LeaseLost, reported
    with pytest.raises(LeaseLost):
        store.prune(T + 60, points_s=DAY, verdicts_s=DAY)
    assert _kept(other, w) == {w: (30, 2)}
    other.close()


# ---------------------------------------------------------------------------- the tick's writes


def _engine(
    store: Store, tmp_path: Path, watches: int
) -> tuple[Engine, SimClock, Callable[[int], list[int]]]:
    """An engine over ``watches`` running watches of one service (the replayed scenario's), its
    clock, and how to start more such watches."""
    text = (ROOT / "config" / "demo.yaml").read_text()
    cfg: WatchdogConfig = parse_config(text, "demo.yaml", env={"DEMO_STORE_URL": store.url})
    svc = cfg.services[0]
    signals = [s for s in svc.signals if s.name in ("http_5xx", "latency_p95", "healthcheck")]
    cfg = cfg.model_copy(update={"services": [svc.model_copy(update={"match": {}, "signals": signals})]})
    src = ReplaySource(write_scenario(tmp_path / "scenario", minutes_after=30))
    clock = SimClock(src.scenario.deploy_at + 120)
    rel = store.upsert_release("prod", svc.name, ReleaseRef("v2"), src.scenario.deploy_at)
    deployed, ends = src.scenario.deploy_at, clock.now() + 3600

    def more(n: int) -> list[int]:
        return [
            store.create_watch("prod", svc.name, WatchKind.DEPLOY.value, rel.id, None, deployed, ends).id
            for _ in range(n)
        ]

    engine = Engine(cfg, store, src, clock)
    return engine, clock, more


class _Transactions:
    """Counts the store's transactions, and those that wrote signal points or verdicts."""

    def __init__(self, store: Store) -> None:
        self.store, self.begun, self.writing = store, 0, set[int]()
        self.inserts: list[str] = []

    def _begin(self, _conn: Any) -> None:
        self.begun += 1

    def _execute(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if re.match(r"INSERT INTO (signal_points|verdicts)\b", statement):
            self.writing.add(self.begun)
            self.inserts.append(statement.split()[2])

    def __enter__(self) -> _Transactions:
        event.listen(self.store.engine, "begin", self._begin)
        event.listen(self.store.engine, "before_cursor_execute", self._execute)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.store.engine, "begin", self._begin)
        event.remove(self.store.engine, "before_cursor_execute", self._execute)


def _rows(store: Store, ids: list[int]) -> tuple[int, int]:
    return sum(len(store.points(w)) for w in ids), sum(len(store.verdicts(w)) for w in ids)


def _newest_states(rows: list[Any]) -> dict[str, str]:
    return {r.signal: r.state for r in rows}


def test_a_tick_writes_all_its_watches_points_and_verdicts_in_one_transaction(
    store: Store, tmp_path: Path
) -> None:
    engine, clock, more = _engine(store, tmp_path, watches=0)
    ids = more(25)
    with _Transactions(store) as txns:
        engine.tick()
    assert len(txns.writing) == 1 and sorted(txns.inserts) == ["signal_points", "verdicts"]
    assert _rows(store, ids) == (25 * 3, 25 * 3)  # every signal's point; each state is new: a verdict
    for _ in range(3):
        clock.advance(15.0)
        with _Transactions(store) as txns:
            engine.tick()
        assert len(txns.writing) == 1
    assert _rows(store, ids)[0] == 25 * 3 * 4
    for w in ids:  # what a restarted engine recalls from the verdicts is each signal's state now
        assert _newest_states(store.verdicts(w)) == _newest_states(store.points(w))


class _StopAfter:
    """A reporter that asks the engine to stop (SIGTERM) once it evaluated ``n`` watches."""

    def __init__(self, n: int) -> None:
        self.n, self.engine, self.seen = n, None, 0

    def tick(self, now: float, watch: Watch, results: list[SignalResult]) -> None:
        self.seen += 1
        if self.seen == self.n and self.engine is not None:
            self.engine.stopping.set()

    def decision(self, entry: DecisionEntry) -> None:
        """Decisions are not what this reporter counts."""


def test_a_tick_that_stops_early_or_meets_a_failing_watch_still_writes_what_it_evaluated(
    store: Store, tmp_path: Path
) -> None:
    engine, clock, more = _engine(store, tmp_path, watches=0)
    good = more(2)
    rel = store.upsert_release("prod", "ghost", ReleaseRef("v1"), 1.0)
    store.create_watch("prod", "ghost", WatchKind.DEPLOY.value, rel.id, None, 1.0, 1e12)  # not configured:
    good += more(4)  # … its evaluation raises, between the others'
    stop = _StopAfter(4)
    engine = Engine(engine.cfg, store, engine.source, clock, reporter=stop)
    stop.engine = engine
    with _Transactions(store) as txns:
        engine.tick()
    assert engine.faults == 1 and engine.stopping.is_set()
    assert len(txns.writing) == 1  # written once, at the end, though the tick stopped early
    assert {w: len(store.points(w)) for w in good} == dict(zip(good, [3, 3, 3, 3, 0, 0], strict=True))


class _TakeOverAfter(_StopAfter):
    """A reporter during whose ``n``-th watch another replica takes the lease over (the leader was
    paused past it): the tick's write, at its end, is a deposed leader's."""

    def __init__(self, n: int, other: Store, clock: SimClock) -> None:
        super().__init__(n)
        self.other, self.clock = other, clock

    def tick(self, now: float, watch: Watch, results: list[SignalResult]) -> None:
        self.seen += 1
        if self.seen == self.n:
            assert self.other.acquire_lease(LEASE, "new", self.clock.now(), 30.0, force=True)


def test_a_deposed_leaders_tick_writes_nothing_and_records_again_once_it_leads(
    store: Store, tmp_path: Path
) -> None:
    engine, clock, more = _engine(store, tmp_path, watches=0)
    ids = more(4)
    token = store.acquire_lease(LEASE, "old", clock.now(), 30.0)
    store.fence(LEASE, "old", token)
    other = Store(store.url)
    engine = Engine(engine.cfg, store, engine.source, clock, reporter=_TakeOverAfter(4, other, clock))
    engine.tick()
    assert engine.faults == 1 and _rows(other, ids) == (0, 0)  # the tick's write was refused
    token = store.acquire_lease(LEASE, "old", clock.now(), 30.0, force=True)  # it leads again
    store.fence(LEASE, "old", token)
    engine.reporter = None
    clock.advance(15.0)
    engine.tick()
    # the watches whose rows were refused were forgotten: their states are recorded, not lost
    assert _rows(store, ids) == (4 * 3, 4 * 3)
    other.close()


def test_tick_writes_are_scrubbed_of_secrets(store: Store) -> None:
    from watchdog.observability import register_secrets

    rel = store.upsert_release("prod", "api", ReleaseRef("v1"), 1.0)
    w = store.create_watch("prod", "api", WatchKind.DEPLOY.value, rel.id, None, 1.0, 2.0)
    register_secrets(["hunter2-secret"])
    writes = TickWrites()
    writes.verdict(
        w.id, 1.0, "s", "error", "source", None, None, "no hunter2-secret", {"e": "hunter2-secret"}
    )
    store.write_tick(writes)
    (v,) = store.verdicts(w.id)
    assert "hunter2-secret" not in v.summary and "hunter2-secret" not in str(v.evidence)
