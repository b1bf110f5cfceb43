"""Wiring: build the store, source, GitHub client, pipeline and engine from a configuration.

The daemon (``run``), the demo and the tests all assemble the watchdog here, so there is one way
the parts fit together. Outside clients (HTTP, GitHub) can be handed in, as httpx's transports are.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from actions.github import DeployWorkflow, github_auth
from actions.pagerduty import PagerDuty
from actions.postmortem import PostmortemNotifier
from actions.tickets import IncidentTickets
from watchdog import __version__
from watchdog.clock import Clock
from watchdog.config import WatchdogConfig, secret_values
from watchdog.decisions import DecisionLog
from watchdog.engine import Engine, Reporter
from watchdog.errors import WatchdogError
from watchdog.heap import HeapKeeper
from watchdog.leader import LEASE, Leadership
from watchdog.metrics import Reporters, SelfMetrics
from watchdog.notify import POSTMORTEM, Outbox, build_notifiers
from watchdog.observability import cron_checkin, init_sentry, register_secrets, report_exception
from watchdog.phases import Actor
from watchdog.pipeline import RollbackPipeline
from watchdog.retention import Retention
from watchdog.sources import PrometheusSource, ReplaySource, ScrapeSource, ScrapeTarget
from watchdog.sources.base import MetricSource
from watchdog.sources.batch import BatchedSource
from watchdog.sources.scrape import ProbeTarget
from watchdog.store import ReleaseRef, Store

if TYPE_CHECKING:
    from watchdog.api import ApiServer

log = structlog.get_logger("watchdog.app")


def build_source(cfg: WatchdogConfig, clock: Clock, http: httpx.Client | None = None) -> MetricSource:
    src = cfg.source
    if src.kind == "prometheus":
        assert src.prometheus is not None
        p = src.prometheus
        headers = {"Authorization": f"Bearer {p.bearer_token.get_secret_value()}"} if p.bearer_token else None
        auth = (
            (p.basic_auth_user, p.basic_auth_password.get_secret_value())
            if p.basic_auth_user and p.basic_auth_password
            else None
        )
        prometheus = PrometheusSource(p.url, timeout_s=p.timeout_s, headers=headers, auth=auth)
        return BatchedSource(prometheus, settle_s=p.settle_s) if p.batch else prometheus
    if src.kind == "scrape":
        assert src.scrape is not None
        s = src.scrape
        return ScrapeSource(
            [ScrapeTarget(t.url, t.labels) for t in s.targets],
            clock,
            probes=[ProbeTarget(p.name, p.url, p.labels, p.expect_status) for p in s.probes],
            client=http,
            timeout_s=s.timeout_s,
        )
    assert src.replay is not None
    return ReplaySource(src.replay.path)


def register_config_secrets(cfg: WatchdogConfig) -> None:
    register_secrets(secret_values(cfg))


def build_outbox(
    cfg: WatchdogConfig,
    store: Store,
    clock: Clock,
    http: httpx.Client,
    decisions: DecisionLog,
    tickets: IncidentTickets | None,
) -> Outbox:
    """The notifiers of the config (and the postmortem, with the tickets), their outbox, hooked
    into the decision log so that every entry's notices commit with it."""
    notifiers = build_notifiers(cfg, http, clock)
    pm = cfg.incidents.postmortem
    if tickets is not None and pm.enabled:
        notifiers[POSTMORTEM] = PostmortemNotifier(
            POSTMORTEM, IncidentTickets(tickets.github, tickets.repo_name, pm.labels, clock)
        )
    outbox = Outbox(cfg, store, clock, notifiers, decisions)
    decisions.outbox = outbox
    return outbox


#: Seconds between two runs of the notice delivery (at most the tick).
NOTICE_INTERVAL_S = 5.0
#: Seconds after the start before the retention's first run (then every ``interval_s``): a daemon
#: restarted more often than the interval still prunes.
RETENTION_FIRST_S = 60.0


@dataclass
class App:
    cfg: WatchdogConfig
    clock: Clock
    store: Store
    source: MetricSource
    engine: Engine
    pipeline: RollbackPipeline
    http: httpx.Client
    outbox: Outbox

    @classmethod
    def build(
        cls,
        cfg: WatchdogConfig,
        clock: Clock,
        *,
        store: Store | None = None,
        source: MetricSource | None = None,
        http: httpx.Client | None = None,
        deployer: DeployWorkflow | None = None,
        reporter: Reporter | None = None,
        metrics: SelfMetrics | None = None,
        smoke_retry_delay_s: float = 1.0,
    ) -> App:
        register_config_secrets(cfg)
        http = http or httpx.Client(timeout=10.0)
        store = store or Store.open(cfg.store.url)
        source = source or build_source(cfg, clock, http)
        gh = cfg.github
        deployer = deployer or DeployWorkflow(
            gh.api_url,
            gh.repo,
            gh.workflow,
            github_auth(gh, clock),  # the tickets and the deployments poller use it too
            clock,
            timeout_s=gh.request_timeout_s,
            request_interval_s=gh.request_interval_s,
            write_interval_s=gh.write_interval_s,
        )
        ticket_cfg = cfg.incidents.ticket
        tickets = (
            IncidentTickets(deployer.github, ticket_cfg.repo or gh.repo, ticket_cfg.labels, clock)
            if ticket_cfg.enabled
            else None
        )
        pd = cfg.incidents.pagerduty
        pager = (
            PagerDuty(pd.events_url, pd.routing_key.get_secret_value(), http, timeout_s=pd.timeout_s)
            if pd is not None
            else None
        )
        heard = Reporters(reporter, metrics)  # the terminal view and the metrics hear the same
        decisions = DecisionLog(store, clock, heard)  # one log, shared by engine and pipeline
        outbox = build_outbox(cfg, store, clock, http, decisions, tickets)
        pipeline = RollbackPipeline(
            cfg,
            store,
            clock,
            decisions,
            deployer=deployer,
            http=http,
            tickets=tickets,
            pager=pager,
            smoke_retry_delay_s=smoke_retry_delay_s,
        )
        engine = Engine(
            cfg, store, source, clock, pipeline=pipeline, reporter=heard, pager=pager, decisions=decisions
        )
        return cls(cfg, clock, store, source, engine, pipeline, http, outbox)

    def seed_pins(self) -> list[str]:
        """On first start, pin each environment's last successful GitHub deployment where no pin exists.

        Returns what was seeded; GitHub being unavailable is logged, not fatal (the daemon can still
        watch; a rollback then has no target until a release passes its watch or is pinned by hand).
        """
        seeded = []
        for svc in self.cfg.services:
            for env in self.cfg.environments:
                if self.store.current_pin(env, svc.name) is not None:
                    continue
                try:
                    found = (
                        self.pipeline.deployer.last_successful_deployment(env)
                        if self.pipeline.deployer
                        else None
                    )
                except WatchdogError as exc:
                    log.warning(
                        "cannot seed the stable pin from GitHub", env=env, service=svc.name, error=str(exc)
                    )
                    continue
                if found is None:
                    continue
                ref = ReleaseRef(found["tag"], found.get("sha"), None, found.get("build_url"))
                self.engine.pin(
                    env,
                    svc.name,
                    ref,
                    actor=Actor.AUTOMATIC.value,
                    reason="seeded from GitHub's last successful deployment (no pin in the store)",
                )
                seeded.append(f"{svc.name}/{env}={found['tag']}")
        return seeded

    def check_workflow(self) -> list[str]:
        """At start: can a dispatched run be found again? Each problem is logged as an error with
        what to add to the workflow; GitHub being unavailable is a warning (checked at no later
        moment: a rollback's dispatch then relies on GitHub naming its run)."""
        deployer = self.pipeline.deployer
        if deployer is None:
            return []
        gh = self.cfg.github
        try:
            problems = deployer.workflow_problems(gh.correlation_input, gh.dispatch_inputs())
        except WatchdogError as exc:
            log.warning("cannot check the deploy workflow", workflow=gh.workflow, error=str(exc))
            return []
        for problem in problems:
            log.error("deploy workflow check", workflow=gh.workflow, problem=problem)
        return problems

    def stop(self) -> None:
        """Stop between units of work: a running tick ends after its current watch or step, which
        is persisted; nothing new starts."""
        self.engine.stopping.set()
        self.pipeline.stopping.set()

    def close(self) -> None:
        self.http.close()
        self.store.close()


def run_daemon(cfg: WatchdogConfig, clock: Clock, stop: threading.Event) -> None:
    """The long-running process: APScheduler runs the scrapes and the ticks until ``stop`` is set."""
    if cfg.sentry.dsn is not None:
        init_sentry(cfg.sentry.dsn.get_secret_value(), cfg.sentry.environment, __version__)
    metrics = SelfMetrics(source=cfg.source.kind)
    app = App.build(cfg, clock, metrics=metrics)
    leadership = Leadership(app.store, clock, cfg.store.lease_ttl_s)
    try:
        if app.store.engine.dialect.name == "sqlite":
            leadership.claim_sole()  # one daemon per SQLite file: a second refuses to start
        else:
            leadership.hold()
    except BaseException:
        app.close()
        raise
    app.check_workflow()
    beats = Heartbeats(clock, stale_after_s=max(60.0, 5 * max(cfg.tick_s, cfg.store.lease_ttl_s / 3)))
    try:
        api = _start_api(cfg, app, leadership, metrics, beats) if cfg.api.enabled else None
    except BaseException:
        leadership.release()
        app.close()
        raise
    if leadership.leading:
        seeded = app.seed_pins()
        if seeded:
            log.info("stable pins seeded from GitHub", pins=seeded)
    scheduler = BackgroundScheduler(timezone="UTC")
    beats.scheduler = scheduler
    heap = HeapKeeper()
    scheduler.add_job(
        _safe_renew(leadership, metrics, beats),
        "interval",
        seconds=cfg.store.lease_ttl_s / 3,
        id="lease",
        max_instances=1,
        coalesce=True,
    )
    if isinstance(app.source, ScrapeSource):
        assert cfg.source.scrape is not None
        scheduler.add_job(
            app.source.scrape_once,
            "interval",
            seconds=cfg.source.scrape.interval_s,
            id="scrape",
            max_instances=1,
            coalesce=True,
        )
    scheduler.add_job(
        _safe_tick(app.engine, leadership, metrics, beats, heap),
        "interval",
        seconds=cfg.tick_s,
        id="tick",
        max_instances=1,
        coalesce=True,
    )
    if app.outbox.notifiers:
        scheduler.add_job(  # a job of its own: a slow notifier never holds the tick (ADR 0006)
            _safe_deliver(app.outbox, leadership),
            "interval",
            seconds=min(cfg.tick_s, NOTICE_INTERVAL_S),
            id="notices",
            max_instances=1,
            coalesce=True,
        )
    retention = Retention(
        app.store,
        clock,
        cfg.store.retention,
        leading=lambda: leadership.leading,
        stopping=app.engine.stopping,
    )
    if retention.enabled:
        scheduler.add_job(  # only the leader prunes; each transaction a bounded batch
            retention.run,
            "interval",
            seconds=cfg.store.retention.interval_s,
            next_run_time=datetime.fromtimestamp(clock.now() + RETENTION_FIRST_S, tz=UTC),
            id="retention",
            max_instances=1,
            coalesce=True,
        )
    polling = cfg.github.deployments
    if polling.poll and app.pipeline.deployer is not None:
        from watchdog.deploys import DeploymentPoller

        # built once, now: deployments that succeeded before this start are history, not deploys
        poller = DeploymentPoller(cfg, app.pipeline.deployer, app.store, clock, app.engine.announce)
        scheduler.add_job(
            poller.job(lambda: leadership.leading),  # only the leader polls
            "interval",
            seconds=polling.interval_s,
            id="deployments",
            max_instances=1,
            coalesce=True,
        )
    scheduler.start()
    log.info(
        "daemon started",
        services=[s.name for s in cfg.services],
        source=cfg.source.kind,
        tick_s=cfg.tick_s,
        store=app.store.engine.url.render_as_string(hide_password=True),
        holder=leadership.holder,
        leading=leadership.leading,
        api=api.url if api is not None else None,
    )
    try:
        stop.wait()
    finally:
        log.info("daemon stopping: the work in hand finishes, the rest resumes at the next start")
        app.stop()
        scheduler.shutdown(wait=True)  # the tick running ends after its current step
        if api is not None:
            api.stop()
        leadership.release()
        app.close()
        heap.release()
        log.info("daemon stopped")


class Heartbeats:
    """When the daemon's scheduled jobs last ran: ``/healthz`` answers 503 once none has for
    ``stale_after_s`` (a wedged scheduler, a tick stuck for ever), or the scheduler stopped."""

    def __init__(self, clock: Clock, stale_after_s: float) -> None:
        self.clock, self.stale_after_s = clock, stale_after_s
        self.started = clock.now()
        self.last: float | None = None
        self.scheduler: BackgroundScheduler | None = None

    def beat(self) -> None:
        self.last = self.clock.now()

    def problem(self) -> str | None:
        if self.scheduler is not None and not self.scheduler.running:
            return "the scheduler is not running"
        since = self.last if self.last is not None else self.started
        quiet = self.clock.now() - since
        if quiet > self.stale_after_s:
            return f"no scheduled job ran for {quiet:.0f}s (expected within {self.stale_after_s:.0f}s)"
        return None


def _start_api(
    cfg: WatchdogConfig, app: App, leadership: Leadership, metrics: SelfMetrics, beats: Heartbeats
) -> ApiServer:
    from watchdog.api import ApiContext, ApiServer  # the web stack only where it serves
    from watchdog.overrides import Overrides

    def role() -> tuple[str, str | None]:
        if leadership.leading:
            return "leader", leadership.holder
        current = app.store.lease(LEASE)
        return "standby", current.holder if current is not None else None

    ctx = ApiContext(
        cfg,
        app.store,
        app.clock,
        app.engine,
        metrics,
        overrides=Overrides(app.engine),
        role=role,
        liveness=beats.problem,
        http=app.http,
    )
    server = ApiServer(ctx)
    server.start()
    return server


def _safe_tick(
    engine: Engine,
    leadership: Leadership,
    metrics: SelfMetrics,
    beats: Heartbeats,
    heap: HeapKeeper | None = None,
) -> Callable[[], None]:
    def tick() -> None:
        try:
            lead()
        finally:
            if heap is not None:
                heap.after_tick()  # a standby's heap, or one whose ticks fail, is kept as well

    def lead() -> None:
        beats.beat()
        metrics.leader.set(1 if leadership.leading else 0)
        if not leadership.leading:
            return  # a standby only scrapes
        # a Sentry Crons check-in per tick: Sentry says when the ticks stop, which no error event can
        monitor = cron_checkin("rollback-watchdog-tick", interval_s=engine.cfg.tick_s)
        with monitor as checkin, metrics.tick_seconds.time():
            try:
                engine.tick()
            except Exception as exc:  # a tick must never kill the daemon; the next tick tries again
                checkin.fail()
                metrics.ticks.labels("failed").inc()
                report_exception(log, "tick failed", exc)
                return
        metrics.ticks.labels("ok").inc()
        metrics.last_tick.set(engine.clock.now())
        beats.beat()

    return tick


def _safe_deliver(outbox: Outbox, leadership: Leadership) -> Callable[[], None]:
    def deliver() -> None:
        if not leadership.leading:
            return  # the leader tells; a standby's notices would be told twice
        try:
            outbox.deliver_due()
        except Exception as exc:  # the store is down, the lease lost: the next run tries again
            report_exception(log, "notice delivery failed", exc)

    return deliver


def _safe_renew(leadership: Leadership, metrics: SelfMetrics, beats: Heartbeats) -> Callable[[], None]:
    def renew() -> None:
        beats.beat()
        try:
            leadership.hold()
        except Exception as exc:  # the store is down: the lease runs out, the fence holds
            report_exception(log, "lease renewal failed", exc)
        metrics.leader.set(1 if leadership.leading else 0)

    return renew
