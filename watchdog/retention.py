"""The retention job: the signal points and verdicts of watches that ended long ago are deleted.

The decision log is never pruned: it is the record of every decision, append-only in the database
itself. What goes are the rows a watch wrote at every tick (its signal points) and at each change
of state (its verdicts), once the watch ended ``store.retention.points_days`` /
``verdicts_days`` ago — never a running watch's, never those an open incident still shows.

The daemon runs it on the leader only, every ``store.retention.interval_s``, on the injected
clock. Each transaction deletes at most ``store.retention.batch`` rows (``Store.prune``), so the
tick and the API are never held behind it; a run stops between two batches when the daemon stops
or the lease is lost, and the next run goes on from where it stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from watchdog.clock import Clock
from watchdog.config import RetentionConfig
from watchdog.observability import report_exception
from watchdog.store import Pruned, Store

log = structlog.get_logger("watchdog.retention")


class Retention:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        cfg: RetentionConfig,
        *,
        leading: Callable[[], bool] = lambda: True,
        stopping: threading.Event | None = None,
    ) -> None:
        self.store, self.clock, self.cfg = store, clock, cfg
        self.leading = leading
        self.stopping = stopping or threading.Event()

    @property
    def enabled(self) -> bool:
        """Something is pruned at all (a retention of 0 or null keeps its rows for ever)."""
        return self.cfg.points_s is not None or self.cfg.verdicts_s is not None

    def _keep_going(self) -> bool:
        return self.leading() and not self.stopping.is_set()

    def run(self) -> Pruned | None:
        """One run (the scheduled job): None when this replica does not lead or nothing is pruned.
        A failure (the store down, the lease lost) is reported; the next run tries again."""
        if not self.enabled or not self.leading():
            return None
        now = self.clock.now()
        try:
            pruned = self.store.prune(
                now,
                points_s=self.cfg.points_s,
                verdicts_s=self.cfg.verdicts_s,
                batch=self.cfg.batch,
                keep_going=self._keep_going,
            )
        except Exception as exc:
            report_exception(log, "retention failed", exc)
            return None
        if pruned.points or pruned.verdicts or pruned.points_watches or pruned.verdicts_watches:
            log.info(
                "retention pruned ended watches",
                points=pruned.points,
                verdicts=pruned.verdicts,
                points_watches=pruned.points_watches,
                verdicts_watches=pruned.verdicts_watches,
                points_days=self.cfg.points_days,
                verdicts_days=self.cfg.verdicts_days,
                interrupted=pruned.interrupted,
            )
        return pruned
