"""The decision log, as the engine and the pipeline write it: one object, built once and shared.

Every entry is appended through ``DecisionLog.record``. Inside ``transition()`` the entry commits
with the state change it records (one store transaction) and is told — to the structured log and
to the reporter — only after that commit, so nothing is announced that a crash then takes back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

import structlog

from watchdog.clock import Clock
from watchdog.phases import Actor, DecisionKind, DecisionResult
from watchdog.store import DecisionEntry, Release, Store

log = structlog.get_logger("watchdog.decisions")


class Listener(Protocol):
    """Who hears about each entry once it is committed (the demo's terminal view, later the API)."""

    def decision(self, entry: DecisionEntry) -> None: ...


class Outbox(Protocol):
    """Who queues the notices of each entry, in the entry's own transaction (``watchdog.notify``)."""

    def enqueue(self, entry: DecisionEntry) -> object: ...


class DecisionLog:
    def __init__(
        self, store: Store, clock: Clock, listener: Listener | None = None, outbox: Outbox | None = None
    ) -> None:
        self.store = store
        self.clock = clock
        self.listener = listener
        #: Set once the notifiers are built: every entry's notices commit with the entry.
        self.outbox = outbox
        #: Entries of the transition open in this thread (the API's threads have their own, as
        #: each has its own store transaction).
        self._untold: ContextVar[list[DecisionEntry] | None] = ContextVar(f"untold-{id(self)}", default=None)

    @contextmanager
    def transition(self) -> Iterator[None]:
        """One transition of the watchdog's state (a watch fails and its incident opens, a step
        completes, a watch ends and its release is pinned): its writes and its entries commit
        together or not at all. Nested transitions join the outer one."""
        if self._untold.get() is not None:
            yield
            return
        entries: list[DecisionEntry] = []
        token = self._untold.set(entries)
        try:
            with self.store.atomic():
                yield
        finally:
            self._untold.reset(token)
        for entry in entries:
            self.tell(entry)

    def record(
        self,
        kind: DecisionKind,
        reason: str,
        result: DecisionResult,
        *,
        env: str,
        service: str,
        actor: str = Actor.AUTOMATIC.value,
        evidence: dict[str, Any] | None = None,
        from_release: Release | None = None,
        to_release: Release | None = None,
        watch_id: int | None = None,
        incident_id: int | None = None,
        at: float | None = None,
    ) -> DecisionEntry:
        """Append one entry. ``from_release``/``to_release`` are the two releases of the decision:
        for a rollback the bad one and its target, for a promotion the previous pin and the new."""
        with self.store.atomic():  # the entry and its notices, together
            entry = self.store.log_decision(
                at=self.clock.now() if at is None else at,
                env=env,
                service=service,
                kind=DecisionKind(kind),
                reason=reason,
                actor=actor,
                result=DecisionResult(result),
                evidence=evidence or {},
                from_release=from_release,
                to_release=to_release,
                watch_id=watch_id,
                incident_id=incident_id,
            )
            if self.outbox is not None:
                self.outbox.enqueue(entry)
        untold = self._untold.get()
        if untold is not None:
            untold.append(entry)  # told once its transition commits
        else:
            self.tell(entry)
        return entry

    def tell(self, entry: DecisionEntry) -> None:
        """Tell the logs and the listener about an entry already in the decision log."""
        log.info(
            "decision",
            kind=entry.kind,
            env=entry.env,
            service=entry.service,
            result=entry.result,
            reason=entry.reason,
            actor=entry.actor,
        )
        if self.listener is not None:
            self.listener.decision(entry)
