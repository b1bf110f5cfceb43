"""Telling people: the routing table, the outbox, and its delivery (ADR 0015).

A decision-log entry that people should hear about becomes one notice per notifier its route
names, written in the same transaction as the entry (``Outbox.enqueue``, called by
``DecisionLog.record``): a decision that commits is told, one that does not is never told. A
separate job delivers them (``Outbox.deliver_due``), so a slow or broken notifier never holds the
tick or the rollback back (ADR 0006): each notice is tried with backoff up to
``notifications.max_attempts`` times, a thread's notices go out in order, and each delivery — sent
or given up — is recorded on the notice's row and in the decision log.

Exactly once: an attempt is marked ``sending`` before the call. If the process dies in the call
(or its answer is lost, or an earlier attempt failed), the next attempt first asks the notifier
whether the notice arrived (``recover``: a Slack message carrying the notice's key, an Opsgenie
alert by its alias) and sends it again only if not. Receivers that cannot be asked (a Teams
webhook) may see a notice twice in that window; the generic webhook carries the key
(``X-Watchdog-Delivery``) for receivers to drop the second.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx
import structlog

from actions.notify import Notice, NoticeEvent, Notifier
from watchdog.clock import Clock
from watchdog.config import (
    GrafanaNotifierConfig,
    NotifierConfig,
    OpsgenieNotifierConfig,
    SlackNotifierConfig,
    StatuspageNotifierConfig,
    TeamsNotifierConfig,
    WatchdogConfig,
    WebhookNotifierConfig,
)
from watchdog.errors import ActionFailed, LeaseLost, StoreError
from watchdog.notify.render import render
from watchdog.observability import report_exception
from watchdog.phases import DecisionKind, DecisionResult
from watchdog.store import (
    NOTICE_FAILED,
    NOTICE_PENDING,
    NOTICE_SENDING,
    NOTICE_SENT,
    DecisionEntry,
    NoticeRow,
    Store,
)

if TYPE_CHECKING:
    from watchdog.decisions import DecisionLog

__all__ = ["POSTMORTEM", "Outbox", "build_notifiers", "routed"]

log = structlog.get_logger("watchdog.notify")

#: The follow-up notifier's name: it opens the postmortem issue when a rollback ends.
POSTMORTEM = "postmortem"
#: Notices one delivery run takes at most (the rest wait for the next run).
BATCH = 50


def build_notifier(name: str, cfg: NotifierConfig, http: httpx.Client, clock: Clock) -> Notifier:
    """The notifier for one ``notifications.notifiers`` entry (its module imported only when used)."""
    if isinstance(cfg, SlackNotifierConfig):
        from actions.slack import SlackNotifier

        return SlackNotifier(name, cfg, http, clock)
    if isinstance(cfg, TeamsNotifierConfig):
        from actions.teams import TeamsNotifier

        return TeamsNotifier(name, cfg, http, clock)
    if isinstance(cfg, OpsgenieNotifierConfig):
        from actions.opsgenie import OpsgenieNotifier

        return OpsgenieNotifier(name, cfg, http, clock)
    if isinstance(cfg, WebhookNotifierConfig):
        from actions.webhook import WebhookNotifier

        return WebhookNotifier(name, cfg, http, clock)
    if isinstance(cfg, StatuspageNotifierConfig):
        from actions.statuspage import StatuspageNotifier

        return StatuspageNotifier(name, cfg, http, clock)
    if isinstance(cfg, GrafanaNotifierConfig):
        from actions.grafana import GrafanaNotifier

        return GrafanaNotifier(name, cfg, http, clock)
    raise AssertionError(f"notifier {name}: unknown kind {cfg!r}")


def build_notifiers(cfg: WatchdogConfig, http: httpx.Client, clock: Clock) -> dict[str, Notifier]:
    return {name: build_notifier(name, n, http, clock) for name, n in cfg.notifications.notifiers.items()}


def destinations(cfg: WatchdogConfig) -> list[str]:
    """Every notifier a notice may be queued for: the configured ones, and the postmortem when the
    tickets are on (a process that only queues — the CLI — needs no notifier objects for this)."""
    names = list(cfg.notifications.notifiers)
    if cfg.incidents.ticket.enabled and cfg.incidents.postmortem.enabled:
        names.append(POSTMORTEM)
    return names


def routed(cfg: WatchdogConfig, notice: Notice) -> list[str]:
    """The notifiers the routing table sends ``notice`` to, in the order the table names them."""
    names: list[str] = []
    for route in cfg.notifications.routes:
        if route.environments is not None and notice.env not in route.environments:
            continue
        if route.severities is not None and notice.severity.value not in route.severities:
            continue
        if route.events is not None and notice.event.value not in route.events:
            continue
        names.extend(n for n in route.to if n not in names)
    return names


#: The events the postmortem follows up (a rollback that ended, one way or the other).
FOLLOW_UP = (NoticeEvent.ROLLBACK_RESOLVED, NoticeEvent.ESCALATED)


class Outbox:
    def __init__(
        self,
        cfg: WatchdogConfig,
        store: Store,
        clock: Clock,
        notifiers: Mapping[str, Notifier],
        decisions: DecisionLog | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.notifiers = dict(notifiers)
        self.decisions = decisions
        #: Where notices are queued; only the daemon's outbox has the notifiers that deliver them.
        self.destinations = destinations(cfg)

    # ------------------------------------------------------------------ enqueue (in the entry's transaction)

    def enqueue(self, entry: DecisionEntry) -> list[str]:
        """Queue the notices of ``entry``; returns the notifiers it went to. Runs in the entry's
        own transaction: a store error fails the transition (nothing commits), any other error of
        rendering is logged and the entry goes untold rather than the transition failing."""
        if not self.destinations:
            return []
        try:
            notice = render(self.cfg, self.store, entry, self.clock.now())
        except StoreError:
            raise
        except Exception as exc:  # a rendering bug must never stop a rollback
            report_exception(log, "notice not rendered", exc, entry_id=entry.id)
            return []
        if notice is None:
            return []
        names = routed(self.cfg, notice)
        if notice.event in FOLLOW_UP and POSTMORTEM in self.destinations and notice.incident_id is not None:
            names.append(POSTMORTEM)
        # a thread once told is told to its end: the resolve reaches where the start went
        told = self.store.notifiers_of_subject(notice.subject)
        names.extend(n for n in self.destinations if n in told and n not in names and n != POSTMORTEM)
        payload = notice.as_dict()
        now = self.clock.now()
        for name in names:
            self.store.add_notice(
                notifier=name,
                key=notice.key,
                subject=notice.subject,
                entry_id=entry.id,
                env=notice.env,
                service=notice.service,
                incident_id=notice.incident_id,
                event=notice.event.value,
                severity=notice.severity.value,
                payload=payload,
                created_at=now,
                next_attempt_at=now,
            )
        return names

    # ------------------------------------------------------------------ delivery (a job of its own)

    def deliver_due(self) -> int:
        """Deliver what is due; returns how many went out. A notifier that fails in this run is not
        tried again in it (its other notices wait for their backoff), so one dead destination costs
        at most one timeout per run."""
        sent = 0
        broken: set[str] = set()
        for row in self.store.due_notices(self.clock.now(), BATCH):
            if row.notifier in broken:
                continue
            notifier = self.notifiers.get(row.notifier)
            if notifier is None:  # removed from the config since: give it up, recorded
                self._give_up(row, "the notifier is no longer configured")
                continue
            outcome = self._attempt(row, notifier)
            if outcome is True:
                sent += 1
            elif outcome is False:
                broken.add(row.notifier)
        return sent

    def _attempt(self, row: NoticeRow, notifier: Notifier) -> bool | None:
        """One attempt: True sent, False failed (retry or give up), None taken elsewhere."""
        now = self.clock.now()
        # an earlier attempt never recorded its end (a crash), or ended without knowing whether it
        # arrived (a timeout, a lost answer): ask the notifier before sending again
        interrupted = row.phase == NOTICE_SENDING or row.attempts > 0
        claimed = self.store.claim_notice(row.id, (row.phase, row.attempts), now)
        if claimed is None:
            return None
        notice = Notice.from_dict(row.payload)
        memo = self.store.thread_memo(row.notifier, row.subject)
        try:
            found = notifier.recover(notice, memo) if interrupted else None
            new_memo = found if found is not None else notifier.deliver(notice, memo)
        except ActionFailed as exc:
            return self._failed(row, exc)
        except LeaseLost:
            raise
        except Exception as exc:  # a notifier's bug is one failed delivery, never a dead job
            report_exception(log, "notifier broke", exc, notifier=row.notifier, notice=row.key)
            return self._failed(row, exc)
        with self._transition():
            self.store.set_thread_memo(row.notifier, row.subject, new_memo, self.clock.now())
            self.store.finish_notice(row.id, NOTICE_SENT, self.clock.now(), attempts=row.attempts + 1)
            self._record(
                row,
                f"{notice.event.value} told to {row.notifier}"
                + (" (found delivered)" if found is not None else ""),
                DecisionResult.SENT,
                {"attempts": row.attempts + 1, "recovered": found is not None},
            )
        return True

    def _failed(self, row: NoticeRow, exc: Exception) -> bool:
        attempts = row.attempts + 1
        retryable = isinstance(exc, ActionFailed) and exc.retryable
        error = str(exc)
        if retryable and attempts < self.cfg.notifications.max_attempts:
            hint = exc.retry_after if isinstance(exc, ActionFailed) else None
            delay = hint if hint is not None else min(self.cfg.notifications.max_backoff_s, 2.0**attempts)
            self.store.finish_notice(
                row.id,
                NOTICE_PENDING,
                self.clock.now(),
                attempts=attempts,
                next_attempt_at=self.clock.now() + delay,
                error=error,
            )
            log.warning(
                "notice retry",
                notifier=row.notifier,
                notice=row.key,
                attempt=attempts,
                delay_s=delay,
                error=error,
            )
            return False
        self._give_up(row, error, attempts)
        return False

    def _give_up(self, row: NoticeRow, error: str, attempts: int | None = None) -> None:
        attempts = row.attempts + 1 if attempts is None else attempts
        with self._transition():
            self.store.finish_notice(row.id, NOTICE_FAILED, self.clock.now(), attempts=attempts, error=error)
            self._record(
                row,
                f"{row.event} not told to {row.notifier} after {attempts} attempt(s): {error}",
                DecisionResult.NOTIFY_FAILED,
                {"attempts": attempts, "error": error},
            )
        log.error("notice given up", notifier=row.notifier, notice=row.key, attempts=attempts, error=error)

    def _transition(self) -> Any:
        return self.decisions.transition() if self.decisions is not None else self.store.atomic()

    def _record(self, row: NoticeRow, reason: str, result: DecisionResult, evidence: dict[str, Any]) -> None:
        if self.decisions is None:
            return
        self.decisions.record(
            DecisionKind.NOTICE,
            reason,
            result,
            env=row.env,
            service=row.service,
            incident_id=row.incident_id,
            evidence={"notifier": row.notifier, "notice": row.key, "subject": row.subject, **evidence},
        )
