"""The store's tables. Times are Unix seconds from the injected clock (simulated or real).

The schema is created and changed only by Alembic migrations (``watchdog/migrations``); the same
migrations run on SQLite (the embedded default) and PostgreSQL (HA replicas).
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from watchdog.phases import (
    DecisionKind,
    DecisionResult,
    IncidentPhase,
    ReleaseStatus,
    StepPhase,
    WatchKind,
    WatchPhase,
)

_E = TypeVar("_E", bound=enum.StrEnum)


class Vocabulary(TypeDecorator[_E], Generic[_E]):
    """A column of one of the watchdog's enums (``watchdog.phases``), stored as its string value
    (the schema keeps a plain VARCHAR, readable by any SQL client). Writing a value outside the
    enum fails before it reaches the database; rows read back are enum members."""

    impl = String
    cache_ok = True

    def __init__(self, vocabulary: type[_E], length: int = 64) -> None:
        super().__init__(length)
        self.vocabulary = vocabulary

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else self.vocabulary(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> _E | None:
        return None if value is None else self.vocabulary(value)


#: The condition of an open incident (neither resolved nor escalated), as SQL.
OPEN_INCIDENT = "phase NOT IN ('resolved', 'escalated', 'vetoed')"
#: The condition of a notice not delivered yet (pending, or an attempt begun), as SQL.
UNDELIVERED_NOTICE = "phase IN ('pending', 'sending')"


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON}


class Release(Base):
    """A build of a service deployed to an environment."""

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("env", "service", "tag", name="uq_release"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    env: Mapped[str] = mapped_column(String(32))
    service: Mapped[str] = mapped_column(String(128))
    tag: Mapped[str] = mapped_column(String(256))
    sha: Mapped[str | None] = mapped_column(String(64))
    run_id: Mapped[int | None] = mapped_column(BigInteger)
    build_url: Mapped[str | None] = mapped_column(Text)
    status: Mapped[ReleaseStatus] = mapped_column(Vocabulary(ReleaseStatus, 32))
    created_at: Mapped[float] = mapped_column(Float)
    #: The migration manifest from the deploy event ([{id, reversible}]), when it carried one.
    migrations: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)


class Pin(Base):
    """History of stable pins; the newest row per (env, service) is the current pin."""

    __tablename__ = "pins"
    __table_args__ = (Index("ix_pins_env_service", "env", "service", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    env: Mapped[str] = mapped_column(String(32))
    service: Mapped[str] = mapped_column(String(128))
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    pinned_at: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)


class DeployEvent(Base):
    """A deploy announced to the watchdog (CLI, API, GitHub polling), consumed by the daemon."""

    __tablename__ = "deploy_events"
    #: Each tick reads the events not consumed yet (migration 0010).
    __table_args__ = (Index("ix_deploy_events_pending", "consumed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    env: Mapped[str] = mapped_column(String(32))
    service: Mapped[str] = mapped_column(String(128))
    tag: Mapped[str] = mapped_column(String(256))
    sha: Mapped[str | None] = mapped_column(String(64))
    run_id: Mapped[int | None] = mapped_column(BigInteger)
    build_url: Mapped[str | None] = mapped_column(Text)
    deployed_at: Mapped[float] = mapped_column(Float)
    announced_at: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    consumed_at: Mapped[float | None] = mapped_column(Float)
    migrations: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)


class Watch(Base):
    """One watch of a release: after its deploy, or after a rollback to it."""

    __tablename__ = "watches"
    __table_args__ = (
        Index("ix_watches_phase", "phase"),
        # the newest deploy watch of a service; a service's watches of a kind (migration 0010)
        Index("ix_watches_service", "env", "service", "kind", "id"),
        Index("ix_watches_incident", "incident_id", "kind"),
        # retention: the ended watches whose points (verdicts) are still stored, oldest first
        Index("ix_watches_points_kept", "points_pruned_at", "ended_at"),
        Index("ix_watches_verdicts_kept", "verdicts_pruned_at", "ended_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    env: Mapped[str] = mapped_column(String(32))
    service: Mapped[str] = mapped_column(String(128))
    kind: Mapped[WatchKind] = mapped_column(Vocabulary(WatchKind, 32))
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    previous_release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"))
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))
    phase: Mapped[WatchPhase] = mapped_column(Vocabulary(WatchPhase, 32))
    started_at: Mapped[float] = mapped_column(Float)
    ends_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float)
    summary: Mapped[str | None] = mapped_column(Text)
    #: When the retention deleted the ended watch's signal points (its verdicts): None while kept.
    points_pruned_at: Mapped[float | None] = mapped_column(Float)
    verdicts_pruned_at: Mapped[float | None] = mapped_column(Float)


class VerdictRow(Base):
    """A signal's verdict, stored when its state changes and when the watch ends."""

    __tablename__ = "verdicts"
    __table_args__ = (Index("ix_verdicts_watch", "watch_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    watch_id: Mapped[int] = mapped_column(ForeignKey("watches.id"))
    at: Mapped[float] = mapped_column(Float)
    signal: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(32))
    detector: Mapped[str] = mapped_column(String(64))
    statistic: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    summary: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)


class Incident(Base):
    """One rollback: from the bad release to the pinned stable one, through the pipeline steps."""

    __tablename__ = "incidents"
    #: At most one open incident per environment and service, held by the database itself.
    __table_args__ = (
        Index(
            "uq_open_incident",
            "env",
            "service",
            unique=True,
            sqlite_where=text(OPEN_INCIDENT),
            postgresql_where=text(OPEN_INCIDENT),
        ),
        Index("ix_incidents_env_created", "env", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    env: Mapped[str] = mapped_column(String(32))
    service: Mapped[str] = mapped_column(String(128))
    from_release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    to_release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"))
    trigger: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(128))
    correlation_id: Mapped[str] = mapped_column(String(64), unique=True)
    phase: Mapped[IncidentPhase] = mapped_column(Vocabulary(IncidentPhase, 32))
    created_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)


class Step(Base):
    """A pipeline step, recorded before it runs and after; the key makes its effect happen once."""

    __tablename__ = "steps"
    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_step_key"),
        Index("ix_steps_incident", "incident_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    name: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    phase: Mapped[StepPhase] = mapped_column(Vocabulary(StepPhase, 32))
    #: Failed (retryable) attempts so far; the step escalates when they reach the limit.
    attempts: Mapped[int] = mapped_column(Integer)
    #: The step does not run again before this time (a backoff, a server's Retry-After, a wait).
    next_attempt_at: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float)
    outcome: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)


class DecisionEntry(Base):
    """The append-only decision log: database triggers refuse UPDATE and DELETE."""

    __tablename__ = "decision_log"
    __table_args__ = (
        Index("ix_decision_log_env", "env", "at"),
        # the read paths of migration 0010: newest first by environment (and service, kind), a
        # watch's entries (of a kind), an incident's entries
        Index("ix_decision_log_env_id", "env", "id"),
        Index("ix_decision_log_service", "env", "service", "id"),
        Index("ix_decision_log_kind", "env", "kind", "id"),
        Index("ix_decision_log_watch", "watch_id", "kind"),
        Index("ix_decision_log_incident", "incident_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float)
    env: Mapped[str] = mapped_column(String(32))
    service: Mapped[str] = mapped_column(String(128))
    kind: Mapped[DecisionKind] = mapped_column(Vocabulary(DecisionKind, 64))
    from_tag: Mapped[str | None] = mapped_column(String(256))
    from_sha: Mapped[str | None] = mapped_column(String(64))
    from_run_id: Mapped[int | None] = mapped_column(BigInteger)
    from_build_url: Mapped[str | None] = mapped_column(Text)
    to_tag: Mapped[str | None] = mapped_column(String(256))
    to_sha: Mapped[str | None] = mapped_column(String(64))
    to_run_id: Mapped[int | None] = mapped_column(BigInteger)
    to_build_url: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(128))
    result: Mapped[DecisionResult] = mapped_column(Vocabulary(DecisionResult, 64))
    watch_id: Mapped[int | None] = mapped_column(Integer)
    incident_id: Mapped[int | None] = mapped_column(Integer)


class Lease(Base):
    """Who leads (one row per lease name): the replica whose ``holder`` it is acts until
    ``expires_at``; ``token`` goes up with every new tenure, and the leader's writes check it."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(256))
    token: Mapped[int] = mapped_column(BigInteger)
    acquired_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)


class Pause(Base):
    """Automation paused for an environment (``service`` None) or one service in it, until
    ``until`` — a pause is never forgotten — or until a human resumes it (``ended_at``)."""

    __tablename__ = "pauses"
    __table_args__ = (
        Index("ix_pauses_env", "env", "ended_at"),
        Index("ix_pauses_open", "ended_at", "until"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    env: Mapped[str] = mapped_column(String(32))
    service: Mapped[str | None] = mapped_column(String(128))
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    until: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float)
    ended_by: Mapped[str | None] = mapped_column(String(128))


class NoticeRow(Base):
    """One notice for one notifier: a transactional outbox. It is written in the transaction of
    the decision-log entry it tells (so no decision goes untold and none is told that did not
    commit), delivered after the commit, retried with backoff, and its end recorded.

    ``phase``: ``pending`` (due at ``next_attempt_at``), ``sending`` (an attempt began at
    ``attempted_at``: after a crash, the notifier is asked whether it arrived before it is sent
    again), ``sent``, ``failed`` (given up after the attempts or a final refusal)."""

    __tablename__ = "notices"
    __table_args__ = (
        UniqueConstraint("notifier", "key", name="uq_notice_key"),
        Index("ix_notices_due", "phase", "next_attempt_at"),
        Index("ix_notices_subject", "notifier", "subject", "id"),
        Index("ix_notices_by_subject", "subject", "notifier"),
        # the outbox's queue: only the few notices not delivered yet, however many were (0010)
        Index(
            "ix_notices_undelivered",
            "id",
            sqlite_where=text(UNDELIVERED_NOTICE),
            postgresql_where=text(UNDELIVERED_NOTICE),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notifier: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(128))
    entry_id: Mapped[int | None] = mapped_column(Integer)
    env: Mapped[str] = mapped_column(String(32))
    service: Mapped[str] = mapped_column(String(128))
    incident_id: Mapped[int | None] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    phase: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    attempted_at: Mapped[float | None] = mapped_column(Float)
    sent_at: Mapped[float | None] = mapped_column(Float)
    last_error: Mapped[str | None] = mapped_column(Text)


class NoticeThread(Base):
    """What a notifier keeps to continue a subject's thread (Slack's message ts, Statuspage's
    incident id): the memo its last delivery returned."""

    __tablename__ = "notice_threads"

    notifier: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(128), primary_key=True)
    memo: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[float] = mapped_column(Float)


class SeenRequest(Base):
    """A signed request already taken (a Slack button press, a PagerDuty webhook delivery): the
    same one again inside its replay window is refused, on every replica."""

    __tablename__ = "seen_requests"

    digest: Mapped[str] = mapped_column(String(128), primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    seen_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)


class Quarantine(Base):
    """A release rolled back in an environment: a later deploy of it is reported at once and, where
    the policy allows, rolled back without new evidence, until an operator lifts it with a reason."""

    __tablename__ = "quarantines"
    __table_args__ = (Index("ix_quarantines_release", "env", "service", "tag"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    env: Mapped[str] = mapped_column(String(32))
    service: Mapped[str] = mapped_column(String(128))
    tag: Mapped[str] = mapped_column(String(256))
    sha: Mapped[str | None] = mapped_column(String(64))
    incident_id: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    lifted_at: Mapped[float | None] = mapped_column(Float)
    lifted_by: Mapped[str | None] = mapped_column(String(128))
    lift_reason: Mapped[str | None] = mapped_column(Text)


class SignalPoint(Base):
    """One signal of one watch at one tick: its state, the test's statistic against its threshold,
    and the canary's and the baseline's figure where it compares them — the path the dashboard and
    the evidence picture draw (verdicts keep only the changes of state)."""

    __tablename__ = "signal_points"
    __table_args__ = (Index("ix_signal_points_watch", "watch_id", "signal", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    watch_id: Mapped[int] = mapped_column(Integer)
    at: Mapped[float] = mapped_column(Float)
    signal: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(32))
    statistic: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    canary: Mapped[float | None] = mapped_column(Float)
    baseline: Mapped[float | None] = mapped_column(Float)
