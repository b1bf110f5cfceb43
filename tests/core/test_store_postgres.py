"""The same migrations and guarantees on a real PostgreSQL (the HA store)."""

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.exc import DBAPIError

from tests.fixtures.concurrency import race
from tests.fixtures.postgres import run_postgres
from watchdog.errors import RollbackInProgress
from watchdog.store import ReleaseRef, Store

HEAD = ScriptDirectory.from_config(Store._alembic()).get_current_head()  # the newest migration

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pg_store() -> Iterator[Store]:
    with run_postgres() as url:
        store = Store.open(url)
        yield store
        store.close()


def test_migrations_run_on_postgresql(pg_store: Store) -> None:
    pg_store.migrate()  # idempotent
    with pg_store.engine.connect() as c:
        assert c.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == HEAD


def test_decision_log_is_append_only_on_postgresql(pg_store: Store) -> None:
    pg_store.log_decision(
        at=1.0, env="prod", service="api", kind="pin", reason="r", actor="alice", result="pinned"
    )
    for stmt in ("UPDATE decision_log SET reason = 'changed'", "DELETE FROM decision_log"):
        with pytest.raises(DBAPIError, match="append-only"), pg_store.session() as s:
            s.execute(sa.text(stmt))
    assert [e.reason for e in pg_store.decisions()] == ["r"]


def test_big_run_ids_pins_and_single_consumption(pg_store: Store) -> None:
    rel = pg_store.upsert_release("prod", "api", ReleaseRef("v1", "a" * 40, 9_876_543_210_123, "u"), 1.0)
    pg_store.pin("prod", "api", rel.id, 2.0, "alice", "seed")
    pinned = pg_store.current_pin("prod", "api")
    assert pinned is not None and pinned.run_id == 9_876_543_210_123
    ev = pg_store.add_deploy_event("prod", "api", ReleaseRef("v2"), 3.0, 3.0, "cli", "bob")
    assert [pg_store.consume_deploy_event(ev.id, 4.0) for _ in range(2)] == [True, False]


def test_concurrent_callers_open_one_incident_on_postgresql(pg_store: Store) -> None:
    stores = [Store(pg_store.url) for _ in range(6)]  # each on its own connection, like replicas
    bad = pg_store.upsert_release("prod", "race", ReleaseRef("v2"), 1.0)
    opened, refused = race(
        6, lambda i: stores[i].create_incident("prod", "race", bad.id, None, "manual", "r", f"u{i}", 2.0, {})
    )
    assert len(opened) == 1 and len(refused) == 5
    assert all(isinstance(e, RollbackInProgress) for e in refused), refused
    assert [i.service for i in pg_store.open_incidents()].count("race") == 1
    releases = [stores[i].upsert_release("prod", "race", ReleaseRef("v3"), 3.0) for i in range(2)]
    assert releases[0].id == releases[1].id
    for s in stores:
        s.close()
