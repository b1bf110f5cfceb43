"""The lease: renewals keep the token, a takeover after expiry raises it, and a leader that lost
its lease cannot commit anything (the fence), while readers and CLI writers are not fenced."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from watchdog.clock import SimClock
from watchdog.errors import LeaseLost, StoreUnavailable
from watchdog.leader import LEASE, Leadership
from watchdog.store import ReleaseRef, Store


def stores(tmp_path: Path, n: int = 2) -> list[Store]:
    url = f"sqlite:///{tmp_path / 'wd.db'}"
    Store.open(url).close()
    return [Store(url) for _ in range(n)]


def test_renewals_keep_the_token_and_a_takeover_raises_it(tmp_path: Path) -> None:
    a, b = stores(tmp_path)
    assert a.acquire_lease(LEASE, "a", 100.0, 10.0) == 1
    assert b.acquire_lease(LEASE, "b", 105.0, 10.0) is None  # held
    assert a.acquire_lease(LEASE, "a", 108.0, 10.0) == 1  # renewed until 118
    assert b.acquire_lease(LEASE, "b", 117.0, 10.0) is None
    assert b.acquire_lease(LEASE, "b", 118.5, 10.0) == 2  # a stopped renewing: b takes over
    assert a.acquire_lease(LEASE, "a", 119.0, 10.0) is None
    lease = a.lease(LEASE)
    assert lease is not None and (lease.holder, lease.token, lease.acquired_at) == ("b", 2, 118.5)
    assert a.acquire_lease(LEASE, "a", 120.0, 10.0, force=True) == 3  # b is known dead
    a.release_lease(LEASE, "a", 121.0)
    assert b.acquire_lease(LEASE, "b", 121.0, 10.0) == 4  # a let go: at once
    for s in (a, b):
        s.close()


def test_a_leader_that_lost_its_lease_writes_nothing(tmp_path: Path) -> None:
    old, new = stores(tmp_path)
    clock = SimClock(1000.0)
    leader = Leadership(old, clock, ttl_s=10.0, holder="old")
    assert leader.hold() and leader.token == 1
    old.upsert_release("prod", "api", ReleaseRef("v1"), clock.now())  # fenced, and still the leader
    clock.advance(30.0)  # paused past its lease
    standby = Leadership(new, clock, ttl_s=10.0, holder="new")
    assert standby.hold() and standby.token == 2
    with pytest.raises(LeaseLost, match="lease leader of old \\(token 1\\) is now held by new \\(token 2\\)"):
        old.upsert_release("prod", "api", ReleaseRef("v2"), clock.now())
    with pytest.raises(LeaseLost), old.atomic():
        old.log_decision(
            at=1.0, env="prod", service="api", kind="pin", reason="r", actor="a", result="pinned"
        )
    assert new.find_release("prod", "api", "v2") is None and new.decisions() == []
    assert not leader.hold() and not leader.leading  # it notices and stands by, still fenced
    with pytest.raises(LeaseLost):
        old.upsert_release("prod", "api", ReleaseRef("v2"), clock.now())
    new.upsert_release("prod", "api", ReleaseRef("v3"), clock.now())
    cli_writer = Store(new.url)  # announce/pin from the CLI hold no lease and are not fenced
    cli_writer.add_deploy_event("prod", "api", ReleaseRef("v4"), 1.0, 1.0, "cli", "bob")
    for s in (old, new, cli_writer):
        s.close()


def test_a_sqlite_store_has_one_daemon(tmp_path: Path) -> None:
    a, b = stores(tmp_path)
    clock = SimClock(1000.0)
    Leadership(a, clock, ttl_s=30.0, holder=f"{socket.gethostname()}:1:aa").claim_sole()  # pid 1 runs (init)
    with pytest.raises(StoreUnavailable, match=f"in use by rollback-watchdog {socket.gethostname()}:1:aa"):
        Leadership(b, clock, ttl_s=30.0, holder="second").claim_sole()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    a.acquire_lease(LEASE, f"{socket.gethostname()}:{dead.stdout.strip()}:bb", clock.now(), 30.0, force=True)
    successor = Leadership(b, clock, ttl_s=30.0, holder="successor")
    successor.claim_sole()  # the holder's process is gone: taken over at once
    assert successor.leading
    for s in (a, b):
        s.close()
