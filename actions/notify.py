"""What every notifier shares: the notice it is handed, and the protocol it speaks.

A :class:`Notice` is one decision of the watchdog told to people: a rollback started, a step
completed, a human vetoed it, the release recovered. The watchdog renders it once from its
decision-log entry (``watchdog.notify``) and hands the same notice to every notifier its routing
table names; each notifier turns it into its vendor's shape (a Slack Block Kit message, an Adaptive
Card, an Opsgenie alert, a Statuspage incident, a Grafana annotation, a signed webhook).

Notices about one *subject* (an incident, a watch) form a thread: a notifier keeps what it needs
to continue the thread — Slack's message ``ts``, Statuspage's incident id — in a *memo*, a small
JSON object the watchdog stores per (notifier, subject) and hands back with the next notice. A
notifier never keeps state of its own between calls.

Errors are the watchdog's: a notifier raises ``ActionFailed`` (via ``watchdog.errors.action_error``)
with ``retryable`` set as the vendor documents (429, 5xx, timeouts: retryable; 4xx: final), and
never puts a secret (token, webhook URL, signing secret) into a message.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Button",
    "EvidenceLine",
    "Link",
    "Notice",
    "NoticeEvent",
    "NoticeSeverity",
    "NoticeStatus",
    "Notifier",
]


class NoticeSeverity(enum.StrEnum):
    """How urgent a notice is; routes select by it. Ordered: critical > warning > info."""

    CRITICAL = "critical"  # a rollback started, escalated, a quarantined release came back
    WARNING = "warning"  # a rollback proposed or held by a pause, the watchdog is blind
    INFO = "info"  # deploys, promotions, steps, resolutions, overrides

    @property
    def rank(self) -> int:
        return {"critical": 2, "warning": 1, "info": 0}[self.value]


class NoticeEvent(enum.StrEnum):
    """What a notice is about (routes may select by it)."""

    DEPLOY = "deploy"  # a deploy was announced and its watch started
    PROMOTED = "promoted"  # a release passed its watch and is the new stable pin
    INCONCLUSIVE = "inconclusive"  # a watch ended without enough evidence either way
    BLIND = "blind"  # the metric source is unavailable: nothing is decided
    ROLLBACK_PROPOSED = "rollback_proposed"  # rollback_policy propose: waits for an operator
    ROLLBACK_HELD = "rollback_held"  # automation is paused: it would have rolled back
    ROLLBACK_STARTED = "rollback_started"
    ROLLBACK_STEP = "rollback_step"  # a milestone of the rollback (dispatched, approved, smoke passed…)
    ROLLBACK_RESOLVED = "rollback_resolved"
    ESCALATED = "escalated"  # a step failed or the release did not recover: humans take over
    OVERRIDE = "override"  # a human vetoed, approved, acknowledged, promoted, paused, resumed
    QUARANTINE = "quarantine"  # a release that was rolled back was deployed again


class NoticeStatus(enum.StrEnum):
    """Where the notice's subject stands: an open problem, or over."""

    OPEN = "open"  # a rollback is running, proposed or escalated: someone may need to act
    RESOLVED = "resolved"  # the rollback is done and confirmed, or the deploy is fine
    CLOSED = "closed"  # over without a rollback (vetoed), or nothing to act on


@dataclass(frozen=True)
class Link:
    text: str
    url: str


@dataclass(frozen=True)
class EvidenceLine:
    """One number of the evidence, as a human reads it: the signal, what it measured and against what.

    ``value`` and ``threshold`` are preformatted ("4.1 %", "0.500 s"); ``canary``/``baseline`` are
    the two cohorts' figures where the signal compares them; ``statistic`` and ``bound`` the test's
    path and its limit (an e-value against 1/α, say)."""

    signal: str
    state: str  # pass, fail, inconclusive, no_data, error
    value: str | None = None
    threshold: str | None = None
    canary: str | None = None
    baseline: str | None = None
    statistic: str | None = None
    bound: str | None = None
    detector: str | None = None

    def summary(self) -> str:
        """One line: ``5xx_rate fail: canary 4.1 % vs baseline 0.2 %; e-value 812 ≥ 100``."""
        parts: list[str] = []
        if self.canary is not None and self.baseline is not None:
            parts.append(f"canary {self.canary} vs baseline {self.baseline}")
        elif self.value is not None:
            parts.append(self.value + (f" vs {self.threshold}" if self.threshold else ""))
        if self.statistic is not None:
            parts.append(self.statistic + (f" vs bound {self.bound}" if self.bound else ""))
        return f"{self.signal} {self.state}" + (": " + "; ".join(parts) if parts else "")


@dataclass(frozen=True)
class Button:
    """An override the reader may take from the message: ``action`` is the override's name."""

    action: str  # veto, approve, promote, acknowledge
    label: str
    style: str = "default"  # default, primary, danger (Slack's button styles)
    confirm: str | None = None  # a confirmation question, for the ones that change things


@dataclass(frozen=True)
class Notice:
    """One decision told to people, the same for every notifier.

    ``key`` is the notice's idempotency key (the decision-log entry it renders): a receiver that
    sees it twice may drop the second. ``subject`` names the thread it belongs to
    (``incident-7``, ``watch-3``); the newest notice of a subject describes it as it stands now.
    """

    key: str
    subject: str
    event: NoticeEvent
    severity: NoticeSeverity
    status: NoticeStatus
    at: float  # epoch seconds of the decision
    env: str
    service: str
    title: str  # one line, no markup
    text: str  # a few plain sentences: what happened and what comes next
    actor: str = "watchdog"  # who made the decision (a human's name for an override)
    release: str | None = None  # the release the notice is about (the bad one, in a rollback)
    target: str | None = None  # the release rolled back to
    incident_id: int | None = None
    watch_id: int | None = None
    correlation_id: str | None = None
    evidence: tuple[EvidenceLine, ...] = ()
    links: tuple[Link, ...] = ()
    buttons: tuple[Button, ...] = ()
    #: What happened so far in the subject's thread, oldest first ("12:01:05 dispatched run 42 by watchdog").
    history: tuple[str, ...] = ()
    #: Extra facts for machine readers (the generic webhook's JSON, Opsgenie's details).
    facts: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The notice as plain JSON (the generic webhook's payload, the store's copy)."""
        return {
            "key": self.key,
            "subject": self.subject,
            "event": self.event.value,
            "severity": self.severity.value,
            "status": self.status.value,
            "at": self.at,
            "env": self.env,
            "service": self.service,
            "title": self.title,
            "text": self.text,
            "actor": self.actor,
            "release": self.release,
            "target": self.target,
            "incident_id": self.incident_id,
            "watch_id": self.watch_id,
            "correlation_id": self.correlation_id,
            "evidence": [vars(e) for e in self.evidence],
            "links": [vars(link) for link in self.links],
            "buttons": [vars(b) for b in self.buttons],
            "history": list(self.history),
            "facts": dict(self.facts),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Notice:
        return cls(
            key=data["key"],
            subject=data["subject"],
            event=NoticeEvent(data["event"]),
            severity=NoticeSeverity(data["severity"]),
            status=NoticeStatus(data["status"]),
            at=float(data["at"]),
            env=data["env"],
            service=data["service"],
            title=data["title"],
            text=data["text"],
            actor=data.get("actor", "watchdog"),
            release=data.get("release"),
            target=data.get("target"),
            incident_id=data.get("incident_id"),
            watch_id=data.get("watch_id"),
            correlation_id=data.get("correlation_id"),
            evidence=tuple(EvidenceLine(**e) for e in data.get("evidence", ())),
            links=tuple(Link(**link) for link in data.get("links", ())),
            buttons=tuple(Button(**b) for b in data.get("buttons", ())),
            history=tuple(data.get("history", ())),
            facts=dict(data.get("facts", {})),
        )


@runtime_checkable
class Notifier(Protocol):
    """One configured destination (``notifications.notifiers.<name>``)."""

    #: The notifier's name in the config (the routing table's ``to``).
    name: str

    def deliver(self, notice: Notice, memo: Mapping[str, Any]) -> dict[str, Any]:
        """Send ``notice``; return the subject's memo for the next notice (``memo`` is the last one,
        empty for the subject's first notice). Raise ``ActionFailed`` when it did not arrive.

        A notifier that cannot express a notice (Statuspage and a deploy that went fine) returns
        the memo unchanged without sending anything."""
        ...

    def recover(self, notice: Notice, memo: Mapping[str, Any]) -> dict[str, Any] | None:
        """After a crash or a lost answer in the middle of ``deliver``: the memo if ``notice``
        did arrive (found at the vendor: a Slack message carrying its key, an Opsgenie alert by its
        alias), None if it did not or cannot be known — then it is delivered again."""
        ...
