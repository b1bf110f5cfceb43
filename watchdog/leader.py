"""One replica acts, the others stand by: a lease row in the store with a fencing token.

Every replica renews or tries to take the lease every ``lease_ttl_s / 3`` seconds. The one that
holds it ticks (evaluates watches, runs rollbacks); the others only keep scraping, so a takeover
starts with the history a watch needs. A leader that stops renewing (killed, paused, cut off from
the database) loses the lease once it expires, and the first standby to ask takes it with a new
token. From then on the old leader's commits are refused (``Store.fence``): whatever it still had
in hand cannot reach the store, and an action it would take next is never taken.

On SQLite (one host, one file) a standby is pointless: a second daemon refuses to start, naming
the process that holds the store. A holder that died without letting go (SIGKILL) on this host is
recognised by its process id and replaced at once.
"""

from __future__ import annotations

import os
import socket
import uuid

import structlog

from watchdog.clock import Clock
from watchdog.errors import StoreUnavailable
from watchdog.store import Store, display_url

log = structlog.get_logger("watchdog.leader")

LEASE = "leader"


def holder_id() -> str:
    """``host:pid:nonce``: which process holds the lease, for people and for the dead-holder check."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _dead_here(holder: str) -> bool:
    """The holder is a process of this host that no longer runs."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it runs, as another user
        return False
    return False


class Leadership:
    def __init__(self, store: Store, clock: Clock, ttl_s: float, holder: str | None = None) -> None:
        self.store = store
        self.clock = clock
        self.ttl_s = ttl_s
        self.holder = holder or holder_id()
        self.token: int | None = None
        self._standby_logged = False

    @property
    def leading(self) -> bool:
        return self.token is not None

    def claim_sole(self) -> None:
        """SQLite: take the store or refuse to start (``StoreUnavailable``) naming who has it."""
        if self.hold():
            return
        current = self.store.lease(LEASE)
        if current is not None and _dead_here(current.holder):
            log.warning("the store's last holder died without letting go; taking over", was=current.holder)
            if self.hold(force=True):
                return
        current = self.store.lease(LEASE)
        who = current.holder if current is not None else "another process"
        until = f" (its lease runs until {current.expires_at:.0f})" if current is not None else ""
        raise StoreUnavailable(
            f"store {display_url(self.store.url)}: in use by rollback-watchdog {who}{until}; "
            "one daemon per SQLite store (use PostgreSQL for replicas)"
        )

    def hold(self, *, force: bool = False) -> bool:
        """Renew or take the lease; True while this replica leads. Fences the store to the tenure."""
        token = self.store.acquire_lease(LEASE, self.holder, self.clock.now(), self.ttl_s, force=force)
        if token != self.token:
            if token is None:
                log.warning("leadership lost: standing by", holder=self.holder, token=self.token)
            else:
                log.info("leading", holder=self.holder, token=token)
            self.token = token
            self._standby_logged = False
            if token is not None:  # a lost tenure keeps its fence: whatever is still in hand fails
                self.store.fence(LEASE, self.holder, token)
        if token is None and not self._standby_logged:
            current = self.store.lease(LEASE)
            log.info("standing by", holder=self.holder, leader=current.holder if current else None)
            self._standby_logged = True
        return token is not None

    def release(self) -> None:
        """At a clean stop: give the lease up so a standby takes over at its next renewal."""
        if self.token is not None:
            self.store.fence(LEASE, self.holder, None)
            self.store.release_lease(LEASE, self.holder, self.clock.now())
            self.token = None
