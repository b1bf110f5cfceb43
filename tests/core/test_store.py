"""The store: migrations, pins, steps, and a decision log the database refuses to change."""

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.exc import DBAPIError

from watchdog.errors import RollbackInProgress, StepConflict, StoreError
from watchdog.manifest import Migration
from watchdog.phases import ReleaseStatus, StepPhase
from watchdog.store import ReleaseRef, Store

HEAD = ScriptDirectory.from_config(Store._alembic()).get_current_head()  # the newest migration


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(f"sqlite:///{tmp_path / 'wd.db'}")
    yield s
    s.close()


def test_migrations_are_idempotent_and_use_wal(store: Store) -> None:
    store.migrate()
    with store.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == HEAD


def test_a_store_from_the_previous_release_is_upgraded_in_place(tmp_path: Path) -> None:
    old = Store(f"sqlite:///{tmp_path / 'old.db'}")
    old.migrate("0001")
    with old.engine.begin() as c:
        c.exec_driver_sql(
            "INSERT INTO releases (env, service, tag, status, created_at) "
            "VALUES ('prod', 's', 'v1', 'stable', 1)"
        )
    old.close()
    store = Store.open(f"sqlite:///{tmp_path / 'old.db'}")
    (release,) = [store.find_release("prod", "s", "v1")]
    assert release is not None and release.tag == "v1" and release.migrations is None
    ref = ReleaseRef("v2", migrations=(Migration("0007", False),))
    assert store.upsert_release("prod", "s", ref, 2.0).migrations == [{"id": "0007", "reversible": False}]
    store.close()


def test_pins_survive_reopen_and_failed_releases_are_never_pinned(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    s = Store.open(url)
    good = s.upsert_release("prod", "api", ReleaseRef("v1", "a" * 40, 9_000_000_000, "https://b/1"), 1.0)
    s.pin("prod", "api", good.id, 2.0, "alice", "known good")
    bad = s.upsert_release("prod", "api", ReleaseRef("v2"), 3.0)
    s.set_release_status(bad.id, ReleaseStatus.FAILED)
    with pytest.raises(StoreError, match="never pinned"):
        s.pin("prod", "api", bad.id, 4.0, "bob", "oops")
    with pytest.raises(StoreError, match="cannot become stable"):
        s.set_release_status(bad.id, ReleaseStatus.STABLE)
    s.close()
    again = Store.open(url)
    pinned = again.current_pin("prod", "api")
    assert pinned is not None and pinned.tag == "v1" and pinned.run_id == 9_000_000_000
    again.close()


def test_decision_log_is_append_only(store: Store) -> None:
    store.log_decision(
        at=1.0, env="prod", service="api", kind="pin", reason="r", actor="alice", result="pinned"
    )
    for stmt in ("UPDATE decision_log SET reason = 'changed'", "DELETE FROM decision_log"):
        with pytest.raises(DBAPIError, match="append-only"), store.session() as s:
            s.execute(sa.text(stmt))
    assert [e.reason for e in store.decisions()] == ["r"]


def test_steps_have_one_row_per_key_and_keep_attempts(store: Store) -> None:
    rel = store.upsert_release("prod", "api", ReleaseRef("v2"), 1.0)
    inc = store.create_incident("prod", "api", rel.id, None, "manual", "test", "alice", 1.0, {})
    a = store.step(inc.id, "dispatch")
    b = store.step(inc.id, "dispatch")
    assert a.id == b.id and a.phase == StepPhase.PENDING.value
    store.update_step(
        a.id, phase=StepPhase.RUNNING, now=2.0, attempts=1, next_attempt_at=4.0, evidence={"x": 1}
    )
    done = store.update_step(a.id, phase=StepPhase.SUCCESSFUL, now=3.0, evidence={"run_id": 5})
    assert done.attempts == 1 and done.evidence == {"x": 1, "run_id": 5} and done.ended_at == 3.0
    assert done.next_attempt_at == 4.0  # kept unless given; None clears it
    assert (
        store.update_step(a.id, phase=StepPhase.SUCCESSFUL, now=3.0, next_attempt_at=None).next_attempt_at
        is None
    )


def test_a_step_write_is_a_compare_and_set_on_its_phase_and_attempt(store: Store) -> None:
    rel = store.upsert_release("prod", "api", ReleaseRef("v2"), 1.0)
    inc = store.create_incident("prod", "api", rel.id, None, "manual", "test", "alice", 1.0, {})
    step = store.step(inc.id, "dispatch")
    store.update_step(step.id, phase=StepPhase.RUNNING, now=2.0, expect=(StepPhase.PENDING, 0))
    # a second process that read the step as pending moves it nowhere, and writes nothing
    with pytest.raises(
        StepConflict, match=r"dispatch of incident \d+ is running at attempt 0, not pending at 0"
    ):
        store.update_step(
            step.id, phase=StepPhase.RUNNING, now=3.0, evidence={"x": 1}, expect=(StepPhase.PENDING, 0)
        )
    store.update_step(step.id, phase=StepPhase.RUNNING, now=4.0, attempts=1, expect=(StepPhase.RUNNING, 0))
    with pytest.raises(StepConflict):  # an attempt another process counted already
        store.update_step(step.id, phase=StepPhase.SUCCESSFUL, now=5.0, expect=(StepPhase.RUNNING, 0))
    row = store.step(inc.id, "dispatch")
    assert (row.phase, row.attempts, row.evidence) == (StepPhase.RUNNING, 1, {})


def test_a_store_before_0005_keeps_each_steps_failed_attempts_in_the_column(tmp_path: Path) -> None:
    old = Store(f"sqlite:///{tmp_path / 'old.db'}")
    old.migrate("0004")
    with old.engine.begin() as c:
        c.exec_driver_sql(
            "INSERT INTO releases (env, service, tag, status, created_at) "
            "VALUES ('prod', 's', 'v2', 'failed', 1)"
        )
        c.exec_driver_sql(
            "INSERT INTO incidents (env, service, from_release_id, trigger, reason, actor, correlation_id, "
            "phase, created_at, evidence) "
            "VALUES ('prod', 's', 1, 'manual', 'r', 'a', 'wd-1', 'running', 1, '{}')"
        )
        for name, attempts, evidence in [
            ("dispatch", 2, '{"retryable_errors": 3, "run_id": 7}'),  # 0004 counted dispatches here
            ("smoke", 0, "{}"),
        ]:
            c.exec_driver_sql(
                "INSERT INTO steps (incident_id, name, idempotency_key, phase, attempts, evidence) "
                f"VALUES (1, '{name}', 'incident-1/{name}', 'running', {attempts}, '{evidence}')"
            )
    old.close()
    store = Store.open(f"sqlite:///{tmp_path / 'old.db'}")
    dispatch, smoke = store.step(1, "dispatch"), store.step(1, "smoke")
    assert (dispatch.attempts, dispatch.next_attempt_at, dispatch.evidence["run_id"]) == (3, None, 7)
    assert (smoke.attempts, smoke.phase) == (0, StepPhase.RUNNING)
    store.close()


def test_deploy_events_are_consumed_once(store: Store) -> None:
    ev = store.add_deploy_event("prod", "api", ReleaseRef("v3"), 1.0, 1.0, "cli", "alice")
    assert [e.id for e in store.pending_deploy_events()] == [ev.id]
    assert store.consume_deploy_event(ev.id, 2.0) is True
    assert store.consume_deploy_event(ev.id, 3.0) is False
    assert store.pending_deploy_events() == []


def test_an_upgrade_keeps_one_open_incident_per_service(tmp_path: Path) -> None:
    """Stores written before 0003 may hold racing duplicates: the oldest stays open, the others go
    to a human (escalated); then the database refuses a second open incident."""
    old = Store(f"sqlite:///{tmp_path / 'old.db'}")
    old.migrate("0002")
    with old.engine.begin() as c:
        c.exec_driver_sql(
            "INSERT INTO releases (env, service, tag, status, created_at) "
            "VALUES ('prod', 's', 'v2', 'failed', 1)"
        )
        for n, phase in enumerate(["running", "watching", "running", "resolved"]):
            c.exec_driver_sql(
                "INSERT INTO incidents (env, service, from_release_id, trigger, reason, actor, "
                f"correlation_id, phase, created_at, evidence) VALUES ('prod', 's', 1, 'manual', 'r', 'a', "
                f"'wd-{n}', '{phase}', {n}, '{{}}')"
            )
    old.close()
    store = Store.open(f"sqlite:///{tmp_path / 'old.db'}")
    assert [(i.correlation_id, i.phase) for i in store.open_incidents()] == [("wd-0", "running")]
    with store.session() as s:
        phases = dict(s.execute(sa.text("SELECT correlation_id, phase FROM incidents")).all())
    assert phases == {"wd-0": "running", "wd-1": "escalated", "wd-2": "escalated", "wd-3": "resolved"}
    with pytest.raises(RollbackInProgress):
        store.create_incident("prod", "s", 1, None, "manual", "r", "a", 9.0, {})
    store.close()
