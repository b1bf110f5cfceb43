"""The store: SQLite (WAL) by default, PostgreSQL for HA; schema by Alembic migrations.

Every state the daemon needs to resume after a crash lives here: releases and pins, deploy events,
watches and their verdicts, rollback incidents and their steps, and the append-only decision log.
Rows come back detached (``expire_on_commit=False``) so callers can read them after the session.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from watchdog.errors import LeaseLost, RollbackInProgress, StepConflict, StoreError, StoreUnavailable
from watchdog.manifest import Migration, manifest_to_json
from watchdog.observability import has_secrets, redact
from watchdog.phases import (
    DecisionKind,
    DecisionResult,
    IncidentPhase,
    ReleaseStatus,
    StepPhase,
    WatchKind,
    WatchPhase,
)
from watchdog.store.models import (
    OPEN_INCIDENT,
    UNDELIVERED_NOTICE,
    DecisionEntry,
    DeployEvent,
    Incident,
    Lease,
    NoticeRow,
    NoticeThread,
    Pause,
    Pin,
    Quarantine,
    Release,
    SeenRequest,
    SignalPoint,
    Step,
    VerdictRow,
    Watch,
)

#: How every incident's correlation id begins (its rollback run carries it: ``wd-`` and 12 hex digits).
CORRELATION_PREFIX = "wd-"

#: A notice's phases (``NoticeRow.phase``).
NOTICE_PENDING, NOTICE_SENDING, NOTICE_SENT, NOTICE_FAILED = "pending", "sending", "sent", "failed"

#: The index that holds one open incident per environment and service (migration 0003).
OPEN_INCIDENT_INDEX = "uq_open_incident"

__all__ = [
    "KEEP",
    "DecisionEntry",
    "DeployEvent",
    "Incident",
    "Keep",
    "NoticeRow",
    "Pause",
    "Pin",
    "Pruned",
    "Quarantine",
    "Release",
    "ReleaseRef",
    "SignalPoint",
    "Step",
    "Store",
    "TickWrites",
    "VerdictRow",
    "Watch",
    "display_url",
]

_Row = TypeVar("_Row", Release, Watch, Incident, Step, NoticeRow)
_Listed = TypeVar("_Listed", Release, Watch, Incident, DecisionEntry)
#: The column a listing's ``since`` compares with.
_WHEN: dict[type[Any], str] = {
    DecisionEntry: "at",
    Incident: "created_at",
    Watch: "started_at",
    Release: "created_at",
}


class Keep:
    """The default of an optional column argument: leave the column as it is (``None`` clears it)."""


KEEP = Keep()
#: The tables the tick writes in bulk (Core inserts: one executemany each).
_POINTS = cast(sa.Table, SignalPoint.__table__)
_VERDICTS = cast(sa.Table, VerdictRow.__table__)
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


@dataclass(frozen=True)
class ReleaseRef:
    """What identifies a build: the tag, and where known its SHA, workflow run and build URL."""

    tag: str
    sha: str | None = None
    run_id: int | None = None
    build_url: str | None = None
    #: The release's migration manifest, when the deploy event carried one.
    migrations: tuple[Migration, ...] | None = None


@dataclass
class TickWrites:
    """What one tick writes of its watches — every signal's point, each change of state's verdict —
    collected while it runs and written at its end in one transaction (``Store.write_tick``)."""

    points: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)

    def verdict(
        self,
        watch_id: int,
        at: float,
        signal: str,
        state: str,
        detector: str,
        statistic: float | None,
        threshold: float | None,
        summary: str,
        evidence: dict[str, Any],
    ) -> None:
        """A verdict row of the tick (``Store.write_tick`` writes it)."""
        self.verdicts.append(
            {
                "watch_id": watch_id,
                "at": at,
                "signal": signal,
                "state": state,
                "detector": detector,
                "statistic": statistic,
                "threshold": threshold,
                "summary": summary,
                "evidence": evidence,
            }
        )

    def watch_ids(self) -> set[int]:
        return {int(r["watch_id"]) for r in (*self.points, *self.verdicts)}

    def __bool__(self) -> bool:
        return bool(self.points or self.verdicts)


@dataclass(frozen=True)
class Pruned:
    """What one run of the retention deleted (``Store.prune``)."""

    points: int = 0
    verdicts: int = 0
    #: Watches whose points (verdicts) are all gone now.
    points_watches: int = 0
    verdicts_watches: int = 0
    #: The run stopped before it was done (the daemon stops, the leader changed): the next goes on.
    interrupted: bool = False


def _get(s: Session, model: type[_Row], row_id: int) -> _Row:
    row = s.get(model, row_id)
    if row is None:
        raise StoreError(f"no {model.__tablename__} row with id {row_id}")
    return row


def _ref(r: Release | None) -> tuple[str | None, str | None, int | None, str | None]:
    return (None, None, None, None) if r is None else (r.tag, r.sha, r.run_id, r.build_url)


def _decision(
    s: Session,
    *,
    at: float,
    env: str,
    service: str,
    kind: str,
    reason: str,
    actor: str,
    result: str,
    evidence: dict[str, Any] | None = None,
    from_release: Release | None = None,
    to_release: Release | None = None,
    watch_id: int | None = None,
    incident_id: int | None = None,
) -> DecisionEntry:
    """A decision-log row added to the session's transaction (so it commits with what it records)."""
    kind, result = DecisionKind(kind), DecisionResult(result)  # a ValueError names what is not ours
    ft, fs, fr, fu = _ref(from_release)
    tt, ts, tr, tu = _ref(to_release)
    row = DecisionEntry(
        at=at,
        env=env,
        service=service,
        kind=kind,
        from_tag=ft,
        from_sha=fs,
        from_run_id=fr,
        from_build_url=fu,
        to_tag=tt,
        to_sha=ts,
        to_run_id=tr,
        to_build_url=tu,
        reason=reason,
        evidence=evidence or {},
        actor=actor,
        result=result,
        watch_id=watch_id,
        incident_id=incident_id,
    )
    s.add(row)
    s.flush()
    return row


def _locked(s: Session, model: type[_Row], row_id: int, q: sa.Select[Any]) -> _Row | None:
    """The row, read under a write lock held to the transaction's end, for a compare-and-set: of
    two callers the second reads what the first wrote. PostgreSQL: ``SELECT … FOR UPDATE``.
    SQLite has no row locks and pysqlite starts a transaction only at the first write, so a no-op
    write comes first: it takes the database's write lock, and the read after it is current."""
    if s.get_bind().dialect.name == "sqlite":
        s.execute(sa.update(model).where(model.id == row_id).values(id=model.id))
    else:
        q = q.with_for_update()
    row: _Row | None = s.scalar(q)
    return row


def _scrub_secrets(session: Session, _context: Any, _instances: Any) -> None:
    """Every row is written without the registered secrets: the decision log, a step's evidence
    (a command's stderr, an API's complaint), an incident's reason, a watch's summary."""
    if not has_secrets():
        return
    for row in (*session.new, *session.dirty):
        for column in sa.inspect(row).mapper.column_attrs:
            value = getattr(row, column.key)
            if isinstance(value, str | dict | list):
                clean = redact(value)
                if clean != value:
                    setattr(row, column.key, clean)


#: Failures to reach or write the store while it is in use (down, locked, read-only, connection lost).
_UNREACHABLE: tuple[type[Exception], ...] = (sa.exc.OperationalError, sa.exc.InterfaceError)
#: … and while it is opened: a URL SQLAlchemy cannot use, a missing driver, a file that is not a
#: database, a schema revision Alembic does not know.
_UNOPENABLE: tuple[type[Exception], ...] = (sa.exc.SQLAlchemyError, ImportError, CommandError)


def display_url(url: str) -> str:
    """The store's URL as it may be shown to people and logs: the password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:  # not a URL SQLAlchemy can parse: hide whatever sits where one would
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _cause(exc: BaseException, url: str) -> str:
    """The first line of what went wrong, without SQLAlchemy's SQL, parameters and links."""
    orig = getattr(exc, "orig", None)  # a DBAPIError wraps the driver's own exception
    lines = str(orig if orig is not None else exc).strip().splitlines()
    cause = lines[0] if lines else type(exc).__name__
    with suppress(sa.exc.ArgumentError):
        password = make_url(url).password
        if password:
            cause = cause.replace(str(password), "***")
    return cause


@contextmanager
def _mapped(url: str, errors: tuple[type[Exception], ...]) -> Iterator[None]:
    """SQLAlchemy's, the driver's and Alembic's errors → one ``StoreUnavailable`` line naming the store."""
    try:
        yield
    except errors as exc:
        raise StoreUnavailable(f"store {display_url(url)}: {_cause(exc, url)}") from exc


def _missing_sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names when it does not exist (SQLite would create it on connect)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or u.database in (None, "", ":memory:") or "uri" in u.query:
        return None
    path = Path(u.database)
    return None if path.exists() else path


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = sa.create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        event.listen(self._session, "before_flush", _scrub_secrets)
        self._current: ContextVar[Session | None] = ContextVar(f"store-{id(self)}", default=None)
        self._fence: tuple[str, str, int] | None = None  # (lease, holder, token) every commit checks
        event.listen(self._session, "before_commit", self._check_fence)

    # ------------------------------------------------------------------ lifecycle

    @staticmethod
    def _alembic() -> AlembicConfig:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        return cfg

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision``, the newest by default (idempotent)."""
        cfg = self._alembic()
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

    def _check_schema(self) -> None:
        """A reader needs the schema this version writes; it never migrates (that is the writers' job)."""
        with self.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
        head = ScriptDirectory.from_config(self._alembic()).get_current_head()
        name = display_url(self.url)
        if current is None:
            raise StoreUnavailable(f"store {name}: is not a watchdog store (it has no schema)")
        if current != head:
            raise StoreUnavailable(
                f"store {name}: its schema is at revision {current}, this version reads {head}; "
                "start the daemon (or run a writing command) with this version to migrate it"
            )

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> Store:
        """The store at ``url``. Writers (the daemon, ``announce``, ``pin``) ``create`` it and bring
        its schema up to date; readers (``create=False``) need an existing store with the current
        schema and write nothing. Raises ``StoreUnavailable``, one line naming the store."""
        if not create:
            with _mapped(url, _UNOPENABLE):
                missing = _missing_sqlite_file(url)
            if missing is not None:
                where = "" if missing.is_absolute() else f" (looked for {missing.resolve()})"
                raise StoreUnavailable(
                    f"store {display_url(url)}: does not exist{where}; reading never creates one"
                )
        with _mapped(url, _UNOPENABLE):
            store = cls(url)
            try:
                if create:
                    store.migrate()
                else:
                    store._check_schema()
            except BaseException:
                store.close()
                raise
        return store

    @contextmanager
    def map_errors(self) -> Iterator[None]:
        """Inside it, a failure to reach or write the store (down, locked, read-only) raises
        ``StoreUnavailable`` naming the store instead of a driver traceback."""
        with _mapped(self.url, _UNREACHABLE):
            yield

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction of its own, or, inside :meth:`atomic`, the one already open."""
        joined = self._current.get()
        if joined is not None:
            yield joined
            return
        with self._session.begin() as s:
            yield s

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Every store call inside commits together, or none does: a transition and its decision-log
        entries are written in one transaction, so a crash at any line leaves all or nothing.
        Nested blocks join the outermost. Keep outside calls (HTTP) out of it: it holds the lock."""
        if self._current.get() is not None:
            yield
            return
        with self._session.begin() as s:
            token = self._current.set(s)
            try:
                yield
            finally:
                self._current.reset(token)

    # ------------------------------------------------------------------ leadership

    def acquire_lease(
        self, name: str, holder: str, now: float, ttl_s: float, *, force: bool = False
    ) -> int | None:
        """Take or renew the lease ``name`` for ``holder`` until ``now + ttl_s``: a compare-and-set
        that succeeds when the lease is free, expired, already the holder's, or ``force``d (its
        holder is known to be dead). Returns the tenure's fencing token, None when another holds it.
        The token goes up with each new tenure, never with a renewal."""
        with self.session() as s:
            s.info["unfenced"] = True  # the lease itself is what the fence guards
            insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
            s.execute(
                insert(Lease)
                .values(name=name, holder="", token=0, acquired_at=0.0, expires_at=0.0)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            renewal = sa.and_(Lease.holder == holder, Lease.expires_at >= now)
            free = sa.or_(renewal, Lease.expires_at < now, sa.true() if force else sa.false())
            s.execute(
                sa.update(Lease)
                .where(Lease.name == name, free)
                .values(
                    holder=holder,
                    token=sa.case((renewal, Lease.token), else_=Lease.token + 1),
                    acquired_at=sa.case((renewal, Lease.acquired_at), else_=now),
                    expires_at=now + ttl_s,
                )
            )
            row = s.get(Lease, name, populate_existing=True)
            assert row is not None
            return row.token if row.holder == holder else None

    def lease(self, name: str) -> Lease | None:
        with self.session() as s:
            s.info["unfenced"] = True
            return s.get(Lease, name)

    def release_lease(self, name: str, holder: str, now: float) -> None:
        """Give the lease up at a clean stop, so a standby takes over at once."""
        with self.session() as s:
            s.info["unfenced"] = True
            s.execute(
                sa.update(Lease)
                .where(Lease.name == name, Lease.holder == holder)
                .values(expires_at=now - 1e-3)
            )

    def fence(self, name: str, holder: str, token: int | None) -> None:
        """From now on every transaction of this store commits only while ``holder`` still holds
        ``name`` with ``token`` (None: no fence). A leader that lost its lease, paused or cut off,
        cannot write after a standby took over: its commit is refused with ``LeaseLost``."""
        self._fence = None if token is None else (name, holder, token)

    def _check_fence(self, session: Session) -> None:
        fence = self._fence
        if fence is None or session.info.pop("unfenced", False):
            return
        name, holder, token = fence
        # FOR SHARE (PostgreSQL): a takeover's update waits until this transaction is over, so a write
        # either commits before the new tenure or not at all. SQLite serialises writers anyway.
        now = session.execute(
            sa.select(Lease.holder, Lease.token).where(Lease.name == name).with_for_update(read=True)
        ).one_or_none()
        if now is None or tuple(now) != (holder, token):
            who = f"{now[0]} (token {now[1]})" if now is not None else "nobody"
            raise LeaseLost(f"lease {name} of {holder} (token {token}) is now held by {who}: not writing")

    # ------------------------------------------------------------------ releases and pins

    def upsert_release(
        self,
        env: str,
        service: str,
        ref: ReleaseRef,
        now: float,
        status: ReleaseStatus = ReleaseStatus.DEPLOYED,
    ) -> Release:
        """The release row for (env, service, tag); fills in SHA/run/URL it did not know yet.

        Created with ``INSERT … ON CONFLICT DO NOTHING``: callers racing on their own connections
        get the same row, and a transaction around it stays usable (no failed insert to catch)."""
        with self.session() as s:
            insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
            s.execute(
                insert(Release)
                .values(env=env, service=service, tag=ref.tag, status=status, created_at=now)
                .on_conflict_do_nothing(index_elements=["env", "service", "tag"])
            )
            row = s.scalar(sa.select(Release).filter_by(env=env, service=service, tag=ref.tag))
            assert row is not None
            row.sha = ref.sha or row.sha
            row.run_id = ref.run_id or row.run_id
            if ref.migrations is not None:
                row.migrations = manifest_to_json(ref.migrations)
            row.build_url = ref.build_url or row.build_url
            s.flush()
            return row

    def release(self, release_id: int) -> Release:
        with self.session() as s:
            row = _get(s, Release, release_id)
            return row

    def find_release(self, env: str, service: str, tag: str) -> Release | None:
        with self.session() as s:
            return s.scalar(sa.select(Release).filter_by(env=env, service=service, tag=tag))

    def set_release_status(self, release_id: int, status: ReleaseStatus) -> None:
        with self.session() as s:
            row = _get(s, Release, release_id)
            if (
                row.status == ReleaseStatus.FAILED and status is ReleaseStatus.STABLE
            ):  # a veto goes via VETOED
                raise StoreError(f"release {row.tag} failed its watch in {row.env} and cannot become stable")
            row.status = status

    def pin(self, env: str, service: str, release_id: int, now: float, actor: str, reason: str) -> Pin:
        with self.session() as s:
            rel = _get(s, Release, release_id)
            if rel.status == ReleaseStatus.FAILED:
                raise StoreError(f"release {rel.tag} failed its watch in {env}: it is never pinned")
            row = Pin(
                env=env, service=service, release_id=release_id, pinned_at=now, actor=actor, reason=reason
            )
            s.add(row)
            s.flush()
            return row

    def current_pin(self, env: str, service: str) -> Release | None:
        with self.session() as s:
            pin = s.scalar(
                sa.select(Pin).filter_by(env=env, service=service).order_by(Pin.id.desc()).limit(1)
            )
            return None if pin is None else s.get(Release, pin.release_id)

    # ------------------------------------------------------------------ deploy events

    def add_deploy_event(
        self, env: str, service: str, ref: ReleaseRef, deployed_at: float, now: float, source: str, actor: str
    ) -> DeployEvent:
        """Queue a deploy, once: an event with the same (env, service, tag, run id) as one already
        stored (a missing run id matching a missing one) is not added again, and that one comes back.

        The CLI, the API and the GitHub deployments poller may each see the same deploy. A unique
        index holds the key (migration 0007) and the insert is ``ON CONFLICT DO NOTHING``: callers
        racing on their own connections get the same row, and a transaction around it stays usable."""
        values: dict[str, Any] = {
            "env": env,
            "service": service,
            "tag": ref.tag,
            "sha": ref.sha,
            "run_id": ref.run_id,
            "build_url": ref.build_url,
            "deployed_at": deployed_at,
            "announced_at": now,
            "source": source,
            "actor": actor,
            "consumed_at": None,
            "migrations": manifest_to_json(ref.migrations),
        }
        if has_secrets():  # a Core insert passes no ORM flush, so the scrubbing is done here
            values = {k: redact(v) if isinstance(v, str | dict | list) else v for k, v in values.items()}
        run_key = sa.func.coalesce(DeployEvent.run_id, sa.literal_column("-1"))
        with self.session() as s:
            insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
            s.execute(
                insert(DeployEvent)
                .values(**values)
                .on_conflict_do_nothing(
                    index_elements=[DeployEvent.env, DeployEvent.service, DeployEvent.tag, run_key]
                )
            )
            key = {name: values[name] for name in ("env", "service", "tag")}
            q = sa.select(DeployEvent).filter_by(**key)
            row = s.scalar(q.where(run_key == (-1 if ref.run_id is None else ref.run_id)))
            assert row is not None
            return row

    def pending_deploy_events(self) -> list[DeployEvent]:
        with self.session() as s:
            q = sa.select(DeployEvent).filter_by(consumed_at=None).order_by(DeployEvent.id)
            return list(s.scalars(q))

    def consume_deploy_event(self, event_id: int, now: float) -> bool:
        """Mark consumed; False if another replica or tick already did (exactly-once pickup)."""
        with self.session() as s:
            res = s.execute(
                sa.update(DeployEvent)
                .where(DeployEvent.id == event_id, DeployEvent.consumed_at.is_(None))
                .values(consumed_at=now)
            )
            return bool(getattr(res, "rowcount", 0) == 1)

    # ------------------------------------------------------------------ watches and verdicts

    def create_watch(
        self,
        env: str,
        service: str,
        kind: str,
        release_id: int,
        previous_release_id: int | None,
        started_at: float,
        ends_at: float,
        incident_id: int | None = None,
    ) -> Watch:
        with self.session() as s:
            row = Watch(
                env=env,
                service=service,
                kind=kind,
                release_id=release_id,
                previous_release_id=previous_release_id,
                incident_id=incident_id,
                phase=WatchPhase.RUNNING,
                started_at=started_at,
                ends_at=ends_at,
            )
            s.add(row)
            s.flush()
            return row

    def watch(self, watch_id: int) -> Watch:
        with self.session() as s:
            row = _get(s, Watch, watch_id)
            return row

    def incident_watch(self, incident_id: int, kind: str) -> Watch | None:
        with self.session() as s:
            q = (
                sa.select(Watch)
                .filter_by(incident_id=incident_id, kind=kind)
                .order_by(Watch.id.desc())
                .limit(1)
            )
            return s.scalar(q)

    def running_watches(self, env: str | None = None, service: str | None = None) -> list[Watch]:
        with self.session() as s:
            q = sa.select(Watch).filter_by(phase=WatchPhase.RUNNING)
            if env is not None:
                q = q.filter_by(env=env)
            if service is not None:
                q = q.filter_by(service=service)
            return list(s.scalars(q.order_by(Watch.id)))

    def end_watch(self, watch_id: int, phase: WatchPhase, now: float, summary: str) -> bool:
        """End a running watch; False (and nothing written) when it is not running any more: another
        replica or an earlier tick ended it first (a compare-and-set on its phase)."""
        with self.session() as s:
            res = s.execute(
                sa.update(Watch)
                .where(Watch.id == watch_id, Watch.phase == WatchPhase.RUNNING)
                .values(phase=phase, ended_at=now, summary=summary)
            )
            return bool(getattr(res, "rowcount", 0) == 1)

    def extend_watch(self, watch_id: int, ends_at: float) -> None:
        """Let a running watch go on until ``ends_at`` (an inconclusive watch, extended once)."""
        with self.session() as s:
            row = _get(s, Watch, watch_id)
            if row.phase == WatchPhase.RUNNING:
                row.ends_at = max(row.ends_at, ends_at)

    def add_verdict(self, watch_id: int, at: float, signal: str, *rest: Any) -> None:
        """One verdict row on its own (a tick writes its rows together: ``write_tick``); the
        remaining fields as ``TickWrites.verdict`` takes them."""
        writes = TickWrites()
        writes.verdict(watch_id, at, signal, *rest)
        self.write_tick(writes)

    def add_points(self, rows: Sequence[dict[str, Any]]) -> None:
        """Signal points on their own (a tick writes its rows together: ``write_tick``)."""
        self.write_tick(TickWrites(points=list(rows)))

    def write_tick(self, writes: TickWrites) -> None:
        """A tick's signal points and verdicts in one transaction, each table in one bulk insert.
        The commit is fenced like every other: a deposed leader's is refused (``LeaseLost``)."""
        if not writes:
            return
        verdicts = writes.verdicts
        if has_secrets():  # a Core insert passes no ORM flush: scrub here
            verdicts = [
                {k: redact(v) if isinstance(v, str | dict | list) else v for k, v in row.items()}
                for row in verdicts
            ]
        # the tables', not the ORM's bulk insert: that splits the rows wherever one's None columns
        # differ from the next one's; this is one executemany per table
        with self.session() as s:
            if writes.points:
                s.execute(sa.insert(_POINTS), writes.points)
            if verdicts:
                s.execute(sa.insert(_VERDICTS), verdicts)

    def points(self, watch_id: int, signal: str | None = None) -> list[SignalPoint]:
        """A watch's signal points, oldest first (one signal's, or all)."""
        with self.session() as s:
            q = sa.select(SignalPoint).where(SignalPoint.watch_id == watch_id)
            if signal is not None:
                q = q.where(SignalPoint.signal == signal)
            return list(s.scalars(q.order_by(SignalPoint.at, SignalPoint.id)))

    def verdicts(self, watch_id: int) -> list[VerdictRow]:
        with self.session() as s:
            q = sa.select(VerdictRow).filter_by(watch_id=watch_id).order_by(VerdictRow.id)
            return list(s.scalars(q))

    # ------------------------------------------------------------------ retention

    def prune(
        self,
        now: float,
        *,
        points_s: float | None,
        verdicts_s: float | None,
        batch: int = 5000,
        watches: int = 200,
        keep_going: Callable[[], bool] = lambda: True,
    ) -> Pruned:
        """The retention: delete the signal points of watches that ended more than ``points_s``
        before ``now``, and the verdicts of those that ended more than ``verdicts_s`` before it
        (None or 0: kept for ever). Never a running watch's rows, never those an open incident
        needs (the watch that decided it, its watch after the rollback), never the decision log.

        It deletes in transactions of at most ``batch`` rows of at most ``watches`` watches, each
        fenced like every write, oldest watches first; a watch whose rows are all gone is marked
        (``points_pruned_at``, ``verdicts_pruned_at``) and never read again. ``keep_going`` is
        asked between two transactions: False ends the run early (the next run goes on)."""
        rows, emptied = {"points": 0, "verdicts": 0}, {"points": 0, "verdicts": 0}
        interrupted = False
        work = (("points", SignalPoint, points_s), ("verdicts", VerdictRow, verdicts_s))
        for name, model, keep_s in work:
            while keep_s and not interrupted:
                if not keep_going():
                    interrupted = True
                    break
                deleted, marked = self._prune_batch(model, name, now - keep_s, now, batch, watches)
                rows[name] += deleted
                emptied[name] += marked
                if deleted == 0 and marked == 0:
                    break
        return Pruned(
            points=rows["points"],
            verdicts=rows["verdicts"],
            points_watches=emptied["points"],
            verdicts_watches=emptied["verdicts"],
            interrupted=interrupted,
        )

    def _prune_batch(
        self,
        model: type[SignalPoint] | type[VerdictRow],
        name: str,
        cutoff: float,
        now: float,
        batch: int,
        watches: int,
    ) -> tuple[int, int]:
        """One transaction of the retention: (rows deleted, watches marked as pruned)."""
        mark = getattr(Watch, f"{name}_pruned_at")
        with self.session() as s:
            open_ids = list(s.scalars(sa.select(Incident.id).where(sa.text(OPEN_INCIDENT))))
            q = sa.select(Watch.id).where(
                mark.is_(None), Watch.ended_at < cutoff, Watch.phase != WatchPhase.RUNNING
            )
            if open_ids:  # what an open incident shows: its deciding watch, its post-rollback watch
                deciding = sa.select(DecisionEntry.watch_id).where(
                    DecisionEntry.incident_id.in_(open_ids), DecisionEntry.watch_id.is_not(None)
                )
                needed = [w for w in s.scalars(deciding.distinct()) if w is not None]
                if needed:
                    q = q.where(Watch.id.not_in(needed))
                q = q.where(sa.or_(Watch.incident_id.is_(None), Watch.incident_id.not_in(open_ids)))
            ids = list(s.scalars(q.order_by(Watch.ended_at, Watch.id).limit(watches)))
            if not ids:
                return 0, 0
            # the ids first, then the rows by primary key: PostgreSQL would hash-join a subquery's
            # ids against the whole table
            rows = sa.select(model.id).where(model.watch_id.in_(ids)).order_by(model.watch_id)
            doomed = list(s.scalars(rows.limit(batch)))
            if doomed:
                s.execute(
                    sa.delete(model).where(model.id.in_(doomed)).execution_options(synchronize_session=False)
                )
            if len(doomed) >= batch:
                return len(doomed), 0  # more of these watches' rows are left: the next batch goes on
            s.execute(
                sa.update(Watch)
                .where(Watch.id.in_(ids))
                .values({mark.key: now})
                .execution_options(synchronize_session=False)
            )
            return len(doomed), len(ids)

    # ------------------------------------------------------------------ incidents and steps

    def create_incident(
        self,
        env: str,
        service: str,
        from_release_id: int,
        to_release_id: int | None,
        trigger: str,
        reason: str,
        actor: str,
        now: float,
        evidence: dict[str, Any],
        phase: IncidentPhase = IncidentPhase.RUNNING,
    ) -> Incident:
        """Open an incident (running, or proposed): a compare-and-set, since the database holds at
        most one open incident per environment and service (a partial unique index). Raises
        ``RollbackInProgress`` when one is open, also when another caller opened it an instant before."""
        try:
            with self.session() as s:
                row = Incident(
                    env=env,
                    service=service,
                    from_release_id=from_release_id,
                    to_release_id=to_release_id,
                    trigger=trigger,
                    reason=reason,
                    actor=actor,
                    correlation_id=f"{CORRELATION_PREFIX}{secrets.token_hex(6)}",
                    phase=phase,
                    created_at=now,
                    evidence=evidence,
                )
                s.add(row)
                s.flush()
                return row
        except IntegrityError as exc:
            cause = str(exc.orig)
            if OPEN_INCIDENT_INDEX not in cause and "incidents.env, incidents.service" not in cause:
                raise
            raise RollbackInProgress(f"a rollback of {service} in {env} is already in progress") from exc

    def set_incident_evidence(self, incident_id: int, **values: Any) -> None:
        """Add to the incident's evidence (who approved it, …)."""
        with self.session() as s:
            row = _get(s, Incident, incident_id)
            row.evidence = {**row.evidence, **values}

    def incident(self, incident_id: int) -> Incident:
        with self.session() as s:
            row = _get(s, Incident, incident_id)
            return row

    def open_incidents(self) -> list[Incident]:
        # the partial index's own condition, as text: the planner then reads the index of open
        # incidents (``uq_open_incident``) instead of every incident ever opened
        with self.session() as s:
            q = sa.select(Incident).where(sa.text(OPEN_INCIDENT)).order_by(Incident.id)
            return list(s.scalars(q))

    def incidents_since(self, env: str, since: float, actor: str | None = None) -> list[Incident]:
        """The environment's incidents opened at or after ``since``, oldest first (in the order of
        their index, ``ix_incidents_env_created``: each tick asks for every watch after promotion)."""
        with self.session() as s:
            q = sa.select(Incident).where(Incident.env == env, Incident.created_at >= since)
            if actor is not None:
                q = q.where(Incident.actor == actor)
            return list(s.scalars(q.order_by(Incident.created_at, Incident.id)))

    def last_deploy_watch(self, env: str, service: str) -> Watch | None:
        with self.session() as s:
            q = (
                sa.select(Watch)
                .filter_by(env=env, service=service, kind=WatchKind.DEPLOY)
                .order_by(Watch.id.desc())
                .limit(1)
            )
            return s.scalar(q)

    def set_incident_phase(
        self,
        incident_id: int,
        phase: IncidentPhase,
        now: float | None = None,
        *,
        expect: tuple[IncidentPhase, ...] | None = None,
    ) -> Incident:
        """Change the incident's phase (a closed phase ends it at ``now``). ``expect`` makes it a
        compare-and-set: the incident must be in one of those phases, else ``StepConflict`` names
        the phase it is in and nothing is written (two humans, or a human and the pipeline, race)."""
        with self.session() as s:
            q = (
                sa.select(Incident)
                .where(Incident.id == incident_id)
                .execution_options(populate_existing=True)
            )
            row = _locked(s, Incident, incident_id, q) if expect is not None else s.scalar(q)
            if row is None:
                raise StoreError(f"no incidents row with id {incident_id}")
            if expect is not None and row.phase not in expect:
                raise StepConflict(f"incident {incident_id} is {row.phase.value}")
            row.phase = phase
            if phase in IncidentPhase.closed():
                row.ended_at = now
            return row

    def step(self, incident_id: int, name: str) -> Step:
        """The step row, created as pending on first sight; its key is (incident, step name)."""
        key = f"incident-{incident_id}/{name}"
        with self.session() as s:
            row = s.scalar(sa.select(Step).filter_by(idempotency_key=key))
            if row is not None:
                return row
        try:
            with self.session() as s:
                row = Step(
                    incident_id=incident_id,
                    name=name,
                    idempotency_key=key,
                    phase=StepPhase.PENDING,
                    attempts=0,
                    evidence={},
                )
                s.add(row)
                s.flush()
                return row
        except IntegrityError:  # another replica created it first
            with self.session() as s:
                existing = s.scalar(sa.select(Step).filter_by(idempotency_key=key))
                assert existing is not None
                return existing

    def steps(self, incident_id: int) -> list[Step]:
        with self.session() as s:
            return list(s.scalars(sa.select(Step).filter_by(incident_id=incident_id).order_by(Step.id)))

    def update_step(
        self,
        step_id: int,
        *,
        phase: StepPhase,
        now: float,
        outcome: str | None = None,
        evidence: dict[str, Any] | None = None,
        attempts: int | None = None,
        next_attempt_at: float | Keep | None = KEEP,
        expect: tuple[StepPhase, int] | None = None,
    ) -> Step:
        """Record a step's new phase (and outcome, evidence merged into what it has, attempt count,
        next-attempt time). ``expect`` makes it a compare-and-set: the row must still be at that
        (phase, attempts), else ``StepConflict`` and nothing is written — another process moved the
        step on since this one read it."""
        with self.session() as s:
            q = sa.select(Step).where(Step.id == step_id).execution_options(populate_existing=True)
            row = _locked(s, Step, step_id, q) if expect is not None else s.scalar(q)
            if row is None:
                raise StoreError(f"no steps row with id {step_id}")
            if expect is not None and (row.phase, row.attempts) != (expect[0], expect[1]):
                raise StepConflict(
                    f"step {row.name} of incident {row.incident_id} is {row.phase.value} at attempt "
                    f"{row.attempts}, not {expect[0].value} at {expect[1]}: another process moved it on"
                )
            row.phase = phase
            if phase is StepPhase.RUNNING and row.started_at is None:
                row.started_at = now
            if phase in (StepPhase.SUCCESSFUL, StepPhase.FAILED, StepPhase.ERROR):
                row.ended_at = now
            if attempts is not None:
                row.attempts = attempts
            if not isinstance(next_attempt_at, Keep):
                row.next_attempt_at = next_attempt_at
            if outcome is not None:
                row.outcome = outcome
            if evidence is not None:
                row.evidence = {**row.evidence, **evidence}
            s.flush()
            return row

    # ------------------------------------------------------------------ decision log

    def log_decision(self, **fields: Any) -> DecisionEntry:
        """Append one entry to the decision log (the fields of ``_decision``)."""
        with self.session() as s:
            return _decision(s, **fields)

    # ------------------------------------------------------------------ reads for the API

    def add_pause(
        self, env: str, service: str | None, actor: str, reason: str, now: float, until: float
    ) -> Pause:
        """Pause automation for the scope; the newest pause of a scope replaces the one before."""
        with self.session() as s:
            old: Pause
            for old in s.scalars(self._pauses(env, service, now)):
                old.ended_at, old.ended_by = now, actor
            row = Pause(env=env, service=service, actor=actor, reason=reason, created_at=now, until=until)
            s.add(row)
            s.flush()
            return row

    @staticmethod
    def _pauses(env: str, service: str | None, now: float) -> sa.Select[Any]:
        """The scope's pauses in force at ``now`` (not resumed, not expired)."""
        q = sa.select(Pause).where(Pause.env == env, Pause.ended_at.is_(None), Pause.until > now)
        return q.where(Pause.service.is_(None) if service is None else Pause.service == service)

    def pauses_in_force(self, env: str, service: str, now: float) -> list[Pause]:
        """Pauses that hold automation for this service now: its own and its environment's."""
        with self.session() as s:
            q = sa.select(Pause).where(
                Pause.env == env,
                Pause.ended_at.is_(None),
                Pause.until > now,
                sa.or_(Pause.service.is_(None), Pause.service == service),
            )
            return list(s.scalars(q.order_by(Pause.id)))

    def end_pauses(self, env: str, service: str | None, now: float, actor: str) -> list[Pause]:
        """Resume: end the scope's pauses in force (an environment's resume leaves its services' own)."""
        with self.session() as s:
            rows: list[Pause] = list(s.scalars(self._pauses(env, service, now)))
            for row in rows:
                row.ended_at, row.ended_by = now, actor
            return rows

    def expired_pauses(self, now: float) -> list[Pause]:
        """Pauses whose time ran out and that nobody ended: the tick records that they did."""
        with self.session() as s:
            q = sa.select(Pause).where(Pause.ended_at.is_(None), Pause.until <= now)
            return list(s.scalars(q.order_by(Pause.id)))

    def end_pause(self, pause_id: int, now: float, by: str) -> bool:
        with self.session() as s:
            done = s.execute(
                sa.update(Pause)
                .where(Pause.id == pause_id, Pause.ended_at.is_(None))
                .values(ended_at=now, ended_by=by)
            )
            return bool(getattr(done, "rowcount", 0) == 1)

    def list_pauses(self, env: str | None = None, *, in_force_at: float | None = None) -> list[Pause]:
        with self.session() as s:
            q = sa.select(Pause)
            if env is not None:
                q = q.where(Pause.env == env)
            if in_force_at is not None:
                q = q.where(Pause.ended_at.is_(None), Pause.until > in_force_at)
            return list(s.scalars(q.order_by(Pause.id.desc()).limit(200)))

    def ping(self) -> None:
        """One round trip to the database (``StoreUnavailable`` when it does not answer)."""
        with self.map_errors(), self.session() as s:
            s.execute(sa.text("SELECT 1"))

    def page(
        self,
        model: type[_Listed],
        *,
        limit: int,
        before: int | None = None,
        since: float | None = None,
        **equal: Any,
    ) -> list[_Listed]:
        """Rows of ``model`` newest first: at most ``limit``, with ids below ``before`` (the cursor of
        the page before), columns equal to ``equal``'s values where those are not None, and begun
        at or after ``since`` (an entry's ``at``, a watch's start, an incident's or release's
        creation)."""
        with self.session() as s:
            q = sa.select(model)
            for name, value in equal.items():
                if value is not None:
                    q = q.where(getattr(model, name) == value)
            if before is not None:
                q = q.where(model.id < before)
            if since is not None:
                q = q.where(getattr(model, _WHEN[model]) >= since)
            return list(s.scalars(q.order_by(model.id.desc()).limit(limit)))

    def pins(
        self, env: str | None = None, service: str | None = None, limit: int = 100
    ) -> list[tuple[Pin, Release]]:
        """The pin history, newest first, each with its release."""
        with self.session() as s:
            q = sa.select(Pin, Release).join(Release, Pin.release_id == Release.id)
            if env is not None:
                q = q.where(Pin.env == env)
            if service is not None:
                q = q.where(Pin.service == service)
            return [(p, r) for p, r in s.execute(q.order_by(Pin.id.desc()).limit(limit)).all()]

    def decisions(
        self,
        env: str | None = None,
        limit: int | None = None,
        incident_id: int | None = None,
        *,
        service: str | None = None,
        watch_id: int | None = None,
        kind: str | Collection[str] | None = None,
    ) -> Sequence[DecisionEntry]:
        """Entries oldest first (the newest ``limit``): of an environment (and a service in it),
        an incident, a watch, of one kind or several — each an indexed read, never the whole log."""
        with self.session() as s:
            q = sa.select(DecisionEntry)
            if env is not None:
                q = q.filter_by(env=env)
            if service is not None:
                q = q.filter_by(service=service)
            if incident_id is not None:
                q = q.filter_by(incident_id=incident_id)
            if watch_id is not None:
                q = q.filter_by(watch_id=watch_id)
            if isinstance(kind, str):
                q = q.filter_by(kind=kind)
            elif kind is not None:
                q = q.where(DecisionEntry.kind.in_([DecisionKind(k) for k in kind]))
            q = q.order_by(DecisionEntry.id.desc())
            if limit is not None:
                q = q.limit(limit)
            return list(reversed(list(s.scalars(q))))

    # ------------------------------------------------------------------ notices (the outbox)

    def add_notice(self, **values: Any) -> bool:
        """Queue one notice for one notifier, once: a second with the same (notifier, key) is not
        added (``INSERT … ON CONFLICT DO NOTHING``). True when it was added."""
        if has_secrets():  # a Core insert passes no ORM flush: scrub here
            values = {k: redact(v) if isinstance(v, str | dict | list) else v for k, v in values.items()}
        with self.session() as s:
            insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
            done = s.execute(
                insert(NoticeRow)
                .values(phase=NOTICE_PENDING, attempts=0, **values)
                .on_conflict_do_nothing(index_elements=["notifier", "key"])
            )
            return bool(getattr(done, "rowcount", 0) == 1)

    def notifiers_of_subject(self, subject: str) -> set[str]:
        """The notifiers that were told about ``subject``: they hear the rest of its thread."""
        with self.session() as s:
            q = sa.select(NoticeRow.notifier).where(NoticeRow.subject == subject).distinct()
            return set(s.scalars(q))

    def due_notices(self, now: float, limit: int = 100) -> list[NoticeRow]:
        """The notices to deliver now: of each (notifier, subject), only its oldest undelivered
        one — a thread is told in order — and only if its attempt is due."""
        with self.session() as s:
            # the partial index's own condition, as text: only the undelivered notices are read
            q = (
                sa.select(NoticeRow)
                .where(sa.text(UNDELIVERED_NOTICE))
                .order_by(NoticeRow.id)
                .limit(limit * 10)
            )
            first: dict[tuple[str, str], NoticeRow] = {}
            for row in s.scalars(q):
                first.setdefault((row.notifier, row.subject), row)
            due = [r for r in first.values() if r.next_attempt_at <= now]
            return sorted(due, key=lambda r: r.id)[:limit]

    def claim_notice(self, notice_id: int, expect: tuple[str, int], now: float) -> NoticeRow | None:
        """Mark an attempt as begun (``sending``, ``attempted_at``), a compare-and-set on the
        (phase, attempts) read; None when another process moved it first."""
        with self.session() as s:
            q = (
                sa.select(NoticeRow)
                .where(NoticeRow.id == notice_id)
                .execution_options(populate_existing=True)
            )
            row = _locked(s, NoticeRow, notice_id, q)
            if row is None or (row.phase, row.attempts) != expect:
                return None
            row.phase, row.attempted_at = NOTICE_SENDING, now
            s.flush()
            return row

    def finish_notice(
        self,
        notice_id: int,
        phase: str,
        now: float,
        *,
        attempts: int | None = None,
        next_attempt_at: float | None = None,
        error: str | None = None,
    ) -> None:
        """Record an attempt's end: ``sent``, ``failed``, or ``pending`` again (with a backoff)."""
        with self.session() as s:
            row = s.get(NoticeRow, notice_id)
            if row is None:
                raise StoreError(f"no notices row with id {notice_id}")
            row.phase = phase
            if phase == NOTICE_SENT:
                row.sent_at = now
            if attempts is not None:
                row.attempts = attempts
            if next_attempt_at is not None:
                row.next_attempt_at = next_attempt_at
            if error is not None:
                row.last_error = redact(error)[:2000]

    def thread_memo(self, notifier: str, subject: str) -> dict[str, Any]:
        with self.session() as s:
            row = s.get(NoticeThread, (notifier, subject))
            return dict(row.memo) if row is not None else {}

    def set_thread_memo(self, notifier: str, subject: str, memo: dict[str, Any], now: float) -> None:
        with self.session() as s:
            row = s.get(NoticeThread, (notifier, subject))
            if row is None:
                s.add(NoticeThread(notifier=notifier, subject=subject, memo=memo, updated_at=now))
            else:
                row.memo, row.updated_at = memo, now

    def notices(
        self, *, incident_id: int | None = None, subject: str | None = None, notifier: str | None = None
    ) -> list[NoticeRow]:
        with self.session() as s:
            q = sa.select(NoticeRow)
            if incident_id is not None:
                q = q.where(NoticeRow.incident_id == incident_id)
            if subject is not None:
                q = q.where(NoticeRow.subject == subject)
            if notifier is not None:
                q = q.where(NoticeRow.notifier == notifier)
            return list(s.scalars(q.order_by(NoticeRow.id).limit(1000)))

    # ------------------------------------------------------------------ signed requests seen

    def remember_request(self, digest: str, source: str, now: float, ttl_s: float) -> bool:
        """Take a signed request once: False when the same one was taken inside its window (a
        replay), on this replica or another. Expired entries are dropped on the way."""
        with self.session() as s:
            s.info["unfenced"] = True  # a standby's API takes button presses too
            s.execute(sa.delete(SeenRequest).where(SeenRequest.expires_at < now))
            insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
            done = s.execute(
                insert(SeenRequest)
                .values(digest=digest, source=source, seen_at=now, expires_at=now + ttl_s)
                .on_conflict_do_nothing(index_elements=["digest"])
            )
            return bool(getattr(done, "rowcount", 0) == 1)

    def forget_request(self, digest: str) -> None:
        """A request taken but not acted on (its handling failed): its retry is taken again."""
        with self.session() as s:
            s.info["unfenced"] = True
            s.execute(sa.delete(SeenRequest).where(SeenRequest.digest == digest))

    # ------------------------------------------------------------------ quarantine

    def quarantine(
        self,
        env: str,
        service: str,
        tag: str,
        sha: str | None,
        incident_id: int | None,
        reason: str,
        now: float,
    ) -> Quarantine:
        """Quarantine a release in an environment (once: the one in force is returned)."""
        with self.session() as s:
            found = self._in_quarantine(s, env, service, tag)
            if found is not None:
                return found
            row = Quarantine(
                env=env,
                service=service,
                tag=tag,
                sha=sha,
                incident_id=incident_id,
                reason=reason,
                created_at=now,
            )
            s.add(row)
            s.flush()
            return row

    @staticmethod
    def _in_quarantine(s: Session, env: str, service: str, tag: str) -> Quarantine | None:
        q = sa.select(Quarantine).where(
            Quarantine.env == env,
            Quarantine.service == service,
            Quarantine.tag == tag,
            Quarantine.lifted_at.is_(None),
        )
        found: Quarantine | None = s.scalar(q.order_by(Quarantine.id.desc()).limit(1))
        return found

    def quarantined(self, env: str, service: str, tag: str) -> Quarantine | None:
        """The quarantine in force for this release in this environment, if any."""
        with self.session() as s:
            return self._in_quarantine(s, env, service, tag)

    def lift_quarantine(self, quarantine_id: int, actor: str, reason: str, now: float) -> bool:
        """End a quarantine (False when it was already lifted)."""
        with self.session() as s:
            done = s.execute(
                sa.update(Quarantine)
                .where(Quarantine.id == quarantine_id, Quarantine.lifted_at.is_(None))
                .values(lifted_at=now, lifted_by=actor, lift_reason=redact(reason))
            )
            return bool(getattr(done, "rowcount", 0) == 1)

    def quarantines(self, env: str | None = None, *, in_force: bool = False) -> list[Quarantine]:
        with self.session() as s:
            q = sa.select(Quarantine)
            if env is not None:
                q = q.where(Quarantine.env == env)
            if in_force:
                q = q.where(Quarantine.lifted_at.is_(None))
            return list(s.scalars(q.order_by(Quarantine.id.desc()).limit(500)))
