"""The watch loop: deploy events → watches → verdicts → policy → rollback incidents.

``Engine.tick()`` does one round of work and returns; the daemon calls it on a schedule, replay
and tests call it in simulated time. All state lives in the store, so a restarted process picks
up where the last one stopped.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import structlog

from watchdog.clock import Clock
from watchdog.config import ServiceConfig, Severity, WatchdogConfig
from watchdog.decisions import DecisionLog
from watchdog.errors import InputError, RollbackInProgress, RollbackRefused, WatchdogError
from watchdog.evaluate import SignalResult, WatchEvaluator, warm_windows
from watchdog.manifest import manifest_from_json, tag_problem
from watchdog.observability import report_exception
from watchdog.phases import (
    Actor,
    DecisionKind,
    DecisionResult,
    IncidentPhase,
    ReleaseStatus,
    SignalState,
    WatchKind,
    WatchPhase,
)
from watchdog.pipeline.notices import utc
from watchdog.sources.base import MetricSource
from watchdog.store import (
    DecisionEntry,
    DeployEvent,
    Quarantine,
    Release,
    ReleaseRef,
    Store,
    TickWrites,
    Watch,
)

log = structlog.get_logger("watchdog.engine")
#: Watches whose counting is done together (``Engine._stage``).
STAGE_WATCHES = 100


def _figure(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def point(watch_id: int, now: float, r: SignalResult) -> dict[str, Any]:
    """A signal's point of this tick: its state, statistic and threshold, and the two cohorts'
    figures where its detector compares them (bad fractions; a gauge's worst value and limit)."""
    v = r.verdict
    ev: dict[str, Any] = v.evidence if v is not None else {}
    found = ev.get("worst")
    worst: dict[str, Any] = found if isinstance(found, dict) else ev
    canary = worst.get("canary_rate", ev.get("canary_rate", ev.get("worst_last_value")))
    baseline = worst.get("baseline_rate", ev.get("baseline_rate", ev.get("limit")))
    return {
        "watch_id": watch_id,
        "at": now,
        "signal": r.signal,
        "state": r.state.value,
        "statistic": _figure(v.statistic) if v is not None else None,
        "threshold": _figure(v.threshold) if v is not None else None,
        "canary": _figure(canary),
        "baseline": _figure(baseline),
    }


def _check_tag(ref: ReleaseRef) -> None:
    problem = tag_problem(ref.tag)
    if problem is not None:
        raise InputError(problem, argument="tag", value=ref.tag)


class Reporter(Protocol):
    """Live progress for people: the demo's terminal view, later the dashboard."""

    def tick(self, now: float, watch: Watch, results: list[SignalResult]) -> None: ...

    def decision(self, entry: DecisionEntry) -> None: ...


class Tickets(Protocol):
    def open(self, correlation_id: str, title: str, body: str) -> object: ...


class PipelineRunner(Protocol):
    @property
    def tickets(self) -> Tickets | None:
        """Where the incident tickets go (None: none are opened)."""
        ...

    def advance(self, incident_id: int) -> None: ...


class Pager(Protocol):
    """Where the engine's own alarms go (PagerDuty's Events API v2: ``actions.pagerduty``)."""

    def trigger(
        self,
        dedup_key: str,
        summary: str,
        *,
        severity: str,
        source: str,
        component: str | None = None,
        group: str | None = None,
        custom_details: dict[str, Any] | None = None,
    ) -> str: ...

    def acknowledge(self, dedup_key: str) -> None: ...

    def resolve(self, dedup_key: str) -> None: ...


@dataclass
class _WatchMemory:
    """What the engine remembers between ticks to log changes, not every tick (rebuilt on restart)."""

    evaluator: WatchEvaluator | None = None
    states: dict[str, SignalState] = field(default_factory=dict)
    blind: dict[str, str] = field(default_factory=dict)  # deciding signals that are blind, and why
    blind_since: float | None = None
    blind_paged: bool = False  # the blind page went out (and is resolved when the data returns)
    blind_alarmed: bool = False  # the page was due (sent, or logged where no pager is configured)
    paged: set[str] = field(default_factory=set)


class Engine:
    def __init__(
        self,
        cfg: WatchdogConfig,
        store: Store,
        source: MetricSource | None,
        clock: Clock,
        *,
        pipeline: PipelineRunner | None = None,
        reporter: Reporter | None = None,
        decisions: DecisionLog | None = None,
        pager: Pager | None = None,
        step_s: float | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.source = source
        self.clock = clock
        self.pipeline = pipeline
        self.reporter = reporter
        #: The decision log, shared with the pipeline (built here only when none is given).
        self.decisions = decisions or DecisionLog(store, clock, reporter)
        self.pager = pager
        self._memory: dict[int, _WatchMemory] = {}
        self.faults = 0  # exceptions caught and reported since start (each one logged and sent to Sentry)
        self.step_s = step_s if step_s is not None else cfg.tick_s
        #: Set to stop between units of work (SIGTERM): the one running finishes and is persisted.
        self.stopping = threading.Event()
        #: The running tick's signal points and verdicts, written together at its end.
        self._writes = TickWrites()

    # ------------------------------------------------------------------ deploys

    def announce(
        self,
        env: str,
        service: str,
        ref: ReleaseRef,
        *,
        deployed_at: float | None = None,
        source: str = "cli",
        actor: str = Actor.AUTOMATIC.value,
    ) -> int:
        """Queue a deploy for the next tick (the store carries it, so any replica can pick it up)."""
        self.cfg.env(env)
        self.cfg.service(service)
        _check_tag(ref)
        if deployed_at is not None and not (math.isfinite(deployed_at) and deployed_at > 0):
            raise InputError(
                "a deploy time is a finite, positive number of Unix seconds",
                argument="deployed_at",
                value=deployed_at,
            )
        now = self.clock.now()
        ev = self.store.add_deploy_event(
            env, service, ref, deployed_at if deployed_at is not None else now, now, source, actor
        )
        return ev.id

    def _expire_pauses(self, now: float) -> None:
        """End the pauses whose time ran out, each logged once: a pause is never forgotten."""
        for pause in self.store.expired_pauses(now):
            with self.decisions.transition():
                if not self.store.end_pause(pause.id, now, Actor.AUTOMATIC.value):
                    continue  # resumed by a human meanwhile
                scope = pause.env if pause.service is None else f"{pause.service} in {pause.env}"
                self.decisions.record(
                    DecisionKind.RESUME,
                    f"the pause of automation for {scope} by {pause.actor} expired: automation resumes",
                    DecisionResult.EXPIRED,
                    env=pause.env,
                    service=pause.service or "*",
                    evidence={"pause": pause.id},
                )

    def _consume_deploys(self, now: float) -> None:
        for ev in self.store.pending_deploy_events():
            self._guarded(
                "deploy event failed",
                partial(self._consume_deploy, ev, now),
                env=ev.env,
                service=ev.service,
                deploy_event=ev.id,
            )

    def _consume_deploy(self, ev: DeployEvent, now: float) -> None:
        with self.decisions.transition():  # the event is consumed only together with the watch it starts
            if not self.store.consume_deploy_event(ev.id, now):
                return
            migrations = (
                None
                if ev.migrations is None
                else manifest_from_json({"migrations": ev.migrations}, f"deploy event {ev.id}")
            )
            ref = ReleaseRef(ev.tag, ev.sha, ev.run_id, ev.build_url, migrations)
            _, then = self._start_watch(
                ev.env, ev.service, ref, ev.deployed_at, actor=ev.actor, source=ev.source
            )
        if then is not None:
            then()  # a page: after the commit, never inside the transaction (it holds the lock)

    def start_watch(
        self,
        env: str,
        service: str,
        ref: ReleaseRef,
        deployed_at: float,
        *,
        actor: str = Actor.AUTOMATIC.value,
        source: str = "cli",
    ) -> Watch:
        """Watch a new release (a quarantined one is rolled back at once, where the policy allows)."""
        with self.decisions.transition():
            watch, then = self._start_watch(env, service, ref, deployed_at, actor=actor, source=source)
        if then is not None:
            then()
        return watch

    def _start_watch(
        self,
        env: str,
        service: str,
        ref: ReleaseRef,
        deployed_at: float,
        *,
        actor: str,
        source: str,
    ) -> tuple[Watch, Callable[[], object] | None]:
        with self.decisions.transition():
            policy = self.cfg.env(env)
            release = self.store.upsert_release(env, service, ref, deployed_at)
            stable = self.store.current_pin(env, service)
            for old in self.store.running_watches(env, service):
                if old.kind in (WatchKind.DEPLOY, WatchKind.POST_PROMOTION) and self.store.end_watch(
                    old.id, WatchPhase.SUPERSEDED, self.clock.now(), f"superseded by the deploy of {ref.tag}"
                ):
                    self.decisions.record(
                        env=env,
                        service=service,
                        kind=DecisionKind.WATCH_SUPERSEDED,
                        reason=f"a newer deploy ({ref.tag}) replaced this watch",
                        actor=actor,
                        result=DecisionResult.SUPERSEDED,
                        watch_id=old.id,
                        from_release=self.store.release(old.release_id),
                        to_release=release,
                    )
            watch = self.store.create_watch(
                env,
                service,
                WatchKind.DEPLOY.value,
                release.id,
                stable.id if stable else None,
                deployed_at,
                deployed_at + policy.watch_s,
            )
            note = "" if stable else " (no stable release is pinned: a rollback would have no target)"
            self.decisions.record(
                env=env,
                service=service,
                kind=DecisionKind.WATCH_STARTED,
                reason=f"deploy of {ref.tag} announced by {source}; watching for {policy.watch_s:.0f}s{note}",
                actor=actor,
                result=DecisionResult.RUNNING,
                watch_id=watch.id,
                from_release=stable,
                to_release=release,
                evidence={"ends_at": watch.ends_at, "auto_rollback": policy.auto_rollback},
            )
            quarantine = self.store.quarantined(env, service, ref.tag)
            then = self._quarantined_again(watch, release, quarantine) if quarantine is not None else None
            return watch, then

    def _quarantined_again(
        self, watch: Watch, release: Release, quarantine: Quarantine
    ) -> Callable[[], object] | None:
        """A release rolled back in this environment was deployed again: reported at once, and rolled
        back without waiting for new evidence where the policy allows (the guard, pauses and
        ``rollback_policy`` decide as for any automatic rollback)."""
        now = self.clock.now()
        why = (
            f"quarantined release {release.tag} deployed again to {watch.env}: it was rolled back"
            + (f" in incident {quarantine.incident_id}" if quarantine.incident_id else "")
            + f" ({quarantine.reason})"
        )
        evidence = {"quarantine": quarantine.id, "quarantined_at": quarantine.created_at}
        self._record(
            watch,
            DecisionKind.QUARANTINE,
            why,
            DecisionResult.REDEPLOYED,
            from_release=release,
            evidence=evidence,
        )
        self.store.end_watch(watch.id, WatchPhase.FAILED, now, "quarantined release deployed again")
        return self._decide_rollback(
            watch, why, evidence, "quarantine", now, refused_page=f"{watch.service}: {why}"
        )

    # ------------------------------------------------------------------ the tick

    def tick(self) -> None:
        """One round: new deploys, every running watch, every open rollback.

        The watches' signal points and verdicts are collected while it runs and written in one
        transaction once the watches are done (``_write_tick``) — also when the tick stops early
        or raised: what the watches evaluated is never lost to a later unit of work's failure.
        """
        try:
            self._round()
        finally:
            self._write_tick()

    def _write_tick(self) -> None:
        """Write the tick's points and verdicts (one fenced transaction; nothing when none). If the
        write fails (the store is down, the lease lost), the watches whose rows were lost are
        forgotten: each is rebuilt from the store at its next evaluation and records again what
        changed."""
        writes, self._writes = self._writes, TickWrites()
        if writes and not self._guarded("tick writes failed", partial(self.store.write_tick, writes)):
            for watch_id in writes.watch_ids():
                self._memory.pop(watch_id, None)

    def _round(self) -> None:
        """The tick's work (``tick`` writes what it collected).

        Each watch and each rollback is its own unit of work: an exception in one is reported
        (log and Sentry) and the others still advance in the same tick. A watch that raised is
        rebuilt from the store at the next tick.
        """
        if self.source is None:
            raise RuntimeError("an engine without a metric source cannot tick")
        now = self.clock.now()
        self._guarded("pause expiry failed", partial(self._expire_pauses, now))
        self._consume_deploys(now)
        watches = self.store.running_watches()
        self._guarded("prefetch failed", partial(self._prefetch, watches, now))
        for i, watch in enumerate(watches):
            if self.stopping.is_set():
                return
            if i % STAGE_WATCHES == 0:
                self._guarded("staging failed", partial(self._stage, watches[i : i + STAGE_WATCHES], now))
            if not self._guarded(
                "watch evaluation failed",
                partial(self._evaluate, watch, now),
                env=watch.env,
                service=watch.service,
                watch_id=watch.id,
            ):
                self._memory.pop(watch.id, None)
        self._write_tick()  # before the rollbacks' steps (which may take long): readers see the tick
        if self.pipeline is not None:
            pipeline = self.pipeline
            for incident in self.store.open_incidents():
                if self.stopping.is_set():
                    return
                self._guarded(
                    "rollback step failed",
                    partial(pipeline.advance, incident.id),
                    env=incident.env,
                    service=incident.service,
                    incident_id=incident.id,
                )

    def _guarded(self, event: str, work: Callable[[], None], **context: Any) -> bool:
        """Run one unit of work; report an exception instead of letting it end the tick."""
        try:
            work()
        except Exception as exc:
            self.faults += 1
            report_exception(log, event, exc, **context)
            return False
        return True

    def _prefetch(self, watches: list[Watch], now: float) -> None:
        """Tell a batching source (``watchdog.sources.batch``) everything this tick's watches will
        read, so that it asks once for all of them instead of once per watch and selector."""
        prepare = getattr(self.source, "prepare", None)
        if prepare is None:
            return
        needs = []
        for watch in watches:
            try:
                mem = self._memory.get(watch.id) or self._recall(watch)
                needs.extend(self._evaluator(watch, mem).needs(min(now, watch.ends_at)))
            except Exception:  # the watch's own evaluation reports it
                self._memory.pop(watch.id, None)
        prepare(needs, now)

    def _stage(self, watches: list[Watch], now: float) -> None:
        """Count what the next ``STAGE_WATCHES`` watches will count this tick in one go
        (``warm_windows``): a few array operations over all their series instead of a few per
        watch and signal. (In groups, not all at once: their windows are held until each watch has
        advanced, and a thousand watches' windows are ~35 MB.)"""
        jobs = []
        for watch in watches:
            mem = self._memory.get(watch.id)
            if mem is None or mem.evaluator is None:
                continue
            try:
                jobs.extend(mem.evaluator.stage(min(now, watch.ends_at)))
            except Exception:  # the watch's own evaluation meets it again and reports it
                continue
        warm_windows(jobs)

    def _evaluator(self, watch: Watch, mem: _WatchMemory) -> WatchEvaluator:
        if mem.evaluator is None:
            assert self.source is not None
            policy = self.cfg.env(watch.env)
            svc, reference_end = self.cfg.service(watch.service), None
            if watch.kind == WatchKind.POST_PROMOTION:
                svc, reference_end = self._after_promotion(watch, svc)
            mem.evaluator = WatchEvaluator(
                svc,
                self.source,
                policy,
                watch_start=watch.started_at,
                alpha=policy.alpha,
                lookback_s=self.cfg.source.lookback_s,
                step_s=self.step_s,
                reference_end=reference_end,
            )
        return mem.evaluator

    def _after_promotion(self, watch: Watch, svc: ServiceConfig) -> tuple[ServiceConfig, float]:
        """What a watch after promotion evaluates: the rollback-severity signals, before/after (the
        canary cohort is gone), against the window before the release's deploy."""
        deployed = self.store.page(
            Watch,
            limit=1,
            env=watch.env,
            service=watch.service,
            kind=WatchKind.DEPLOY,
            release_id=watch.release_id,
        )
        signals = [
            s
            for s in svc.signals
            if s.severity is Severity.ROLLBACK and not getattr(s, "omnibus", False)  # omnibus needs a canary
        ]
        light = svc.model_copy(update={"canary": False, "signals": signals})
        return light, deployed[0].started_at if deployed else watch.started_at

    def _evaluate(self, watch: Watch, now: float) -> None:
        svc = self.cfg.service(watch.service)
        if watch.kind == WatchKind.POST_PROMOTION and self._rolled_back_since(watch):
            self.store.end_watch(watch.id, WatchPhase.ABORTED, now, "a rollback of the service began")
            self._notify_end(watch, WatchPhase.ABORTED)
            return
        mem = self._memory.get(watch.id) or self._recall(watch)
        results = self._evaluator(watch, mem).advance(min(now, watch.ends_at))
        self._remember(watch, mem, results, now)
        if self.reporter is not None:
            self.reporter.tick(now, watch, results)

        if watch.kind == WatchKind.POST_ROLLBACK.value:
            # After a rollback the question is "did the service recover?": any runbook signal still
            # outside its SLO, or failing whatever its severity, means it did not.
            failed = [r for r in results if r.state is SignalState.FAIL or r.slo_breach]
        else:
            failed = [r for r in results if r.state is SignalState.FAIL and r.severity is Severity.ROLLBACK]
        if failed:
            self._fail(watch, svc, failed, results, now)
            return
        for r in results:
            page_failed = r.state is SignalState.FAIL and r.severity is Severity.PAGE
            if (page_failed or r.slo_breach) and r.signal not in mem.paged:
                mem.paged.add(r.signal)
                why = (
                    f"{r.signal} failed (severity page): {r.summary}"
                    if page_failed
                    else f"{r.signal} is outside its SLO ({r.slo_breach}), but the release is not "
                    "worse than its reference: paging, not rolling back"
                )
                self._record(
                    watch,
                    DecisionKind.STEP,
                    why,
                    DecisionResult.PAGED,
                    evidence=r.evidence(),
                )
        if now >= watch.ends_at:
            self._finish(watch, svc, results, mem, now)

    def _rolled_back_since(self, watch: Watch) -> bool:
        """A rollback of the service began after ``watch`` did (a human's, an incident's): the
        promoted release is no longer what runs, so its watch after promotion has nothing to watch."""
        return any(
            i.service == watch.service and i.phase not in (IncidentPhase.VETOING, IncidentPhase.VETOED)
            for i in self.store.incidents_since(watch.env, watch.started_at)
        )

    def _recall(self, watch: Watch) -> _WatchMemory:
        """Rebuild what the engine knew of a watch from its stored verdicts (after a restart)."""
        mem = self._memory[watch.id] = _WatchMemory()
        severities = {s.name: s.severity for s in self.cfg.service(watch.service).signals}
        for v in self.store.verdicts(watch.id):
            state = SignalState(v.state)
            mem.states[v.signal] = state
            if state is SignalState.FAIL and severities.get(v.signal) is Severity.PAGE:
                mem.paged.add(v.signal)
        blind = self.store.decisions(watch_id=watch.id, kind=DecisionKind.BLIND)
        if blind and blind[-1].result in ("blind", "paged"):
            # still blind when the last process stopped: the alarm goes on from its first entry
            mem.blind = dict(blind[-1].evidence.get("blind", {}))
            since = [e.at for e in blind if e.result == "blind"]
            mem.blind_since = since[-1] if since else blind[-1].at
            mem.blind_paged = mem.blind_alarmed = blind[-1].result == "paged"
        return mem

    def _remember(self, watch: Watch, mem: _WatchMemory, results: list[SignalResult], now: float) -> None:
        """Each signal's point of this tick and a verdict where its state changed, collected for
        the tick's one write at its end (``_write_tick``)."""
        self._writes.points.extend(point(watch.id, now, r) for r in results)
        for r in results:
            if mem.states.get(r.signal) is not r.state:
                mem.states[r.signal] = r.state
                v = r.verdict
                self._writes.verdict(
                    watch.id,
                    now,
                    r.signal,
                    r.state.value,
                    v.detector if v else "source",
                    v.statistic if v else None,
                    v.threshold if v else None,
                    r.summary,
                    r.evidence(),
                )
        self._watch_blindness(watch, mem, results, now)

    def _blind(self, watch: Watch, results: list[SignalResult], now: float) -> dict[str, str]:
        """The deciding signals that cannot see the release now, and why.

        Blind is: the source did not answer or answered garbage, or (once the watch is older than
        ``fresh_s``) the release's own series have had no sample for ``fresh_s`` — the canary's
        exporter died, or its series were never there.
        """
        policy = self.cfg.env(watch.env)
        deciding = [r for r in results if r.severity is Severity.ROLLBACK] or results
        out = {}
        for r in deciding:
            if r.state is SignalState.ERROR:
                out[r.signal] = r.error or "no answer"
            elif r.coverage is not None and now - watch.started_at >= policy.fresh_s:
                stale = r.coverage.stale_for(now)
                if stale > policy.fresh_s:
                    out[r.signal] = (
                        "no sample of the release since the watch began"
                        if r.coverage.last_seen is None
                        else f"no sample of the release for {stale:.0f}s"
                    )
        return out

    def _watch_blindness(
        self, watch: Watch, mem: _WatchMemory, results: list[SignalResult], now: float
    ) -> None:
        """Say loudly when a watch goes blind, page when it stays blind, and say when it sees again."""
        blind = self._blind(watch, results, now)
        if bool(blind) != bool(mem.blind):
            if blind:
                mem.blind_since = now
                why = "; ".join(f"{k}: {v}" for k, v in blind.items())
                self._record(
                    watch,
                    DecisionKind.BLIND,
                    f"blind: nothing about {', '.join(blind)} can be decided until data returns ({why})",
                    DecisionResult.BLIND,
                    evidence={"blind": blind, "errors": [r.error for r in results if r.error]},
                )
            else:
                self._record(
                    watch,
                    DecisionKind.BLIND,
                    "the release's data is back: the watch sees again",
                    DecisionResult.SEEING,
                    evidence={"was_blind": mem.blind, "for_s": now - (mem.blind_since or now)},
                )
                if mem.blind_paged:
                    self._page_resolve(self._blind_key(watch))
                mem.blind_since, mem.blind_paged, mem.blind_alarmed = None, False, False
        mem.blind = blind
        policy = self.cfg.env(watch.env)
        if blind and not mem.blind_alarmed and now - (mem.blind_since or now) >= policy.blind_page_after_s:
            release = self.store.release(watch.release_id)
            summary = (
                f"rollback-watchdog is blind on {watch.service} {release.tag} in {watch.env} for "
                f"{now - (mem.blind_since or now):.0f}s: {'; '.join(f'{k}: {v}' for k, v in blind.items())}"
            )
            sent = self._page(self._blind_key(watch), summary, "warning", watch, {"blind": blind})
            mem.blind_alarmed = sent is not False  # a failed page is tried again at the next tick
            if sent:
                mem.blind_paged = True
                self._record(
                    watch,
                    DecisionKind.BLIND,
                    f"still blind after {policy.blind_page_after_s:.0f}s: oncall paged",
                    DecisionResult.PAGED,
                    evidence={"blind": blind, "dedup_key": self._blind_key(watch)},
                )

    @staticmethod
    def _blind_key(watch: Watch) -> str:
        return f"rollback-watchdog/blind/{watch.env}/{watch.service}/watch-{watch.id}"

    def _page(
        self, key: str, summary: str, severity: str, watch: Watch, details: dict[str, Any]
    ) -> bool | None:
        """Page oncall about the watch itself (its own dedup key).

        True when the page went out, False when it failed (try again), None with no pager (or in
        shadow mode: a watchdog on trial wakes nobody).
        """
        if self.cfg.env(watch.env).mode == "shadow":
            log.info("shadow mode: would page oncall", summary=summary, dedup_key=key)
            return None
        if self.pager is None:
            log.warning("would page oncall, but no pager is configured", summary=summary, dedup_key=key)
            return None
        try:
            self.pager.trigger(
                key,
                summary,
                severity=severity,
                source="rollback-watchdog",
                component=watch.service,
                group=watch.env,
                custom_details=details,
            )
        except WatchdogError as exc:
            report_exception(log, "page failed", exc, dedup_key=key, watch_id=watch.id)
            return False
        return True

    def _page_resolve(self, key: str) -> None:
        if self.pager is None:
            return
        try:
            self.pager.resolve(key)
        except WatchdogError as exc:
            report_exception(log, "page resolve failed", exc, dedup_key=key)

    def _fail(
        self,
        watch: Watch,
        svc: ServiceConfig,
        failed: list[SignalResult],
        results: list[SignalResult],
        now: float,
    ) -> None:
        names = ", ".join(r.signal for r in failed)
        reason = "; ".join(f"{r.signal}: {r.summary}" for r in failed)
        evidence = {"failed": [r.evidence() for r in failed], "all": [r.evidence() for r in results]}
        then: Callable[[], object] | None = None
        with self.decisions.transition():  # the failed watch, the failed release and the incident, or nothing
            if watch.kind == WatchKind.POST_ROLLBACK.value:
                still = "; ".join(f"{r.signal}: {r.slo_breach or r.summary}" for r in failed)
                # the pipeline's post-rollback step sees the failed watch and escalates
                ended = self.store.end_watch(watch.id, WatchPhase.FAILED, now, f"not recovered: {still}")
            elif watch.kind == WatchKind.POST_PROMOTION:
                ended = self.store.end_watch(
                    watch.id, WatchPhase.FAILED, now, f"regressed after promotion: {names}"
                )
                if ended:
                    before = watch.previous_release_id
                    then = self._decide_rollback(
                        watch,
                        f"regressed after promotion: {reason}",
                        evidence,
                        f"post_promotion:{failed[0].signal}",
                        now,
                        target=self.store.release(before) if before is not None else None,
                    )
            else:
                ended = self.store.end_watch(watch.id, WatchPhase.FAILED, now, f"failed: {names}")
                if ended:
                    then = self._decide_rollback(watch, reason, evidence, f"signal:{failed[0].signal}", now)
        if ended:
            if then is not None:
                then()  # a page: after the commit, never inside the transaction (it holds the lock)
            self._notify_end(watch, WatchPhase.FAILED)

    def _decide_rollback(
        self,
        watch: Watch,
        reason: str,
        evidence: dict[str, Any],
        trigger: str,
        now: float,
        *,
        target: Release | None = None,
        refused_page: str | None = None,
    ) -> Callable[[], object] | None:
        """The release failed its watch (or an incident, a quarantine says it is bad): mark it, and
        open its rollback unless the guard says no or automation is paused. ``target`` is where to
        roll back to (default: the stable pin); ``refused_page`` pages oncall when no rollback may
        start. Returns what to do once the transition committed (a page), if anything."""
        release = self.store.release(watch.release_id)
        stable = target or self.store.current_pin(watch.env, watch.service)
        if self.cfg.env(watch.env).mode == "shadow":
            to = (
                stable.tag if stable is not None and stable.id != release.id else "(nothing pinned before it)"
            )
            self._record(
                watch,
                DecisionKind.ROLLBACK_DECIDED,
                f"shadow mode: would have rolled back {release.tag} to {to}: {reason}; nothing was changed",
                DecisionResult.SHADOW_ROLLBACK,
                from_release=release,
                to_release=stable,
                evidence={**evidence, "trigger": trigger},
            )
            return None
        vetoed = release.status == ReleaseStatus.VETOED
        if not vetoed:
            self.store.set_release_status(release.id, ReleaseStatus.FAILED)
        why = self._guard(watch.env, watch.service, now)
        if vetoed:
            why = f"a human vetoed the automatic rollback of {release.tag} in {watch.env}; a human decides"
        paused = self.store.pauses_in_force(watch.env, watch.service, now)
        if why is None and paused:
            pause = paused[-1]
            scope = watch.env if pause.service is None else f"{watch.service} in {watch.env}"
            self._record(
                watch,
                DecisionKind.ROLLBACK_DECIDED,
                f"{release.tag} failed its watch ({reason}); would roll back, but automation for {scope} "
                f"is paused by {pause.actor} until {utc(pause.until)} ({pause.reason})",
                DecisionResult.WOULD_ROLL_BACK,
                from_release=release,
                to_release=stable,
                evidence={**evidence, "pause": pause.id},
            )
            return partial(
                self._page,
                f"rollback-watchdog/paused/{watch.env}/{watch.service}/watch-{watch.id}",
                f"{watch.service} {release.tag} in {watch.env} failed its watch; automation is paused "
                f"by {pause.actor}: would roll back, nothing done",
                "error",
                watch,
                {"reason": reason, "pause": pause.reason, "paused_by": pause.actor},
            )
        if why is not None:
            self._record(
                watch,
                DecisionKind.ROLLBACK_DECIDED,
                f"{release.tag} failed its watch ({reason}); no automatic rollback: {why}",
                DecisionResult.NOT_STARTED,
                from_release=release,
                to_release=stable,
                evidence=evidence,
            )
            if refused_page is None:
                return None
            return partial(
                self._report_refused, watch, f"{refused_page}; no automatic rollback: {why}", reason, why
            )
        policy = self.cfg.env(watch.env).rollback_policy
        incident = self.store.create_incident(
            watch.env,
            watch.service,
            release.id,
            stable.id if stable else None,
            trigger=trigger,
            reason=reason,
            actor=Actor.AUTOMATIC.value,
            now=now,
            evidence={**evidence, "rollback_policy": policy},
            phase=IncidentPhase.PROPOSED if policy == "propose" else IncidentPhase.RUNNING,
        )
        self._record(
            watch,
            DecisionKind.ROLLBACK_DECIDED,
            f"{release.tag} failed its watch: {reason}"
            + ("; proposed: an operator approves or vetoes the rollback" if policy == "propose" else ""),
            DecisionResult.PROPOSED if policy == "propose" else DecisionResult.ROLLBACK_STARTED,
            incident_id=incident.id,
            from_release=release,
            to_release=stable,
            evidence=evidence,
        )
        return None

    def _report_refused(self, watch: Watch, summary: str, reason: str, why: str) -> None:
        """A release known to be bad (an incident, a quarantine) that may not be rolled back
        automatically: oncall is paged and a ticket opened (both idempotent: a second report of
        the same watch updates the same alert and finds the same ticket)."""
        key = f"rollback-watchdog/refused/{watch.env}/{watch.service}/watch-{watch.id}"
        self._page(key, summary, "error", watch, {"reason": reason, "why_not": why})
        tickets = self.pipeline.tickets if self.pipeline is not None else None
        if tickets is None:
            return
        body = (
            f"{summary}.\n\nThe watchdog did not roll it back. A human decides: "
            f"`rollback-watchdog rollback --env {watch.env} --service {watch.service} --reason …`, "
            "or lift the release's quarantine if it is fine (`rollback-watchdog quarantine lift`)."
        )
        try:
            tickets.open(f"wd-watch-{watch.id}", summary[:200], body)
        except WatchdogError as exc:  # the page went out; the decision log has it either way
            report_exception(log, "ticket not opened", exc, watch_id=watch.id)

    def _guard(self, env: str, service: str, now: float) -> str | None:
        """Why no automatic rollback may start now, or None. Humans are not bound by the loop guard."""
        policy = self.cfg.env(env)
        if not policy.auto_rollback:
            return "automatic rollback is off in this environment"
        if any(i.env == env and i.service == service for i in self.store.open_incidents()):
            return "a rollback is already in progress for this service"
        recent = [  # a vetoed rollback changed nothing: it does not count
            i
            for i in self.store.incidents_since(
                env, now - policy.rollback_cooldown_s, actor=Actor.AUTOMATIC.value
            )
            if i.phase not in (IncidentPhase.VETOING, IncidentPhase.VETOED)
        ]
        if recent:
            return (
                f"loop guard: an automatic rollback already ran in {env} within "
                f"{policy.rollback_cooldown_s:.0f}s (incident {recent[-1].id}); a human decides"
            )
        return None

    def request_rollback(
        self,
        env: str,
        service: str,
        *,
        reason: str,
        actor: str,
        to_tag: str | None = None,
        trigger: str = "manual",
        reference: str | None = None,
    ) -> int:
        """A human's rollback (P1/P2 incident, security finding): the same pipeline, logged with its actor.

        Rolls back the release of the newest deploy to the pinned stable release (or ``to_tag``, which
        must not be a release that failed its watch). Raises ``RollbackRefused`` naming what is wrong.
        """
        self.cfg.env(env)
        self.cfg.service(service)
        now = self.clock.now()
        if any(i.env == env and i.service == service for i in self.store.open_incidents()):
            raise RollbackInProgress(f"a rollback of {service} in {env} is already in progress")
        last = self.store.last_deploy_watch(env, service)
        if last is None:
            raise RollbackRefused(f"no deploy of {service} to {env} is known: nothing to roll back")
        bad = self.store.release(last.release_id)
        if to_tag is not None:
            target = self.store.find_release(env, service, to_tag)
            if target is None:
                raise RollbackRefused(f"release {to_tag} of {service} was never deployed to {env}")
            if target.status == ReleaseStatus.FAILED.value:
                raise RollbackRefused(
                    f"release {to_tag} failed its own watch in {env}: never a rollback target"
                )
        else:
            target = self.store.current_pin(env, service)
            if target is None:
                raise RollbackRefused(
                    f"no stable release of {service} is pinned in {env}; name one with --to"
                )
        if target.id == bad.id:
            raise RollbackRefused(f"{bad.tag} is already the target release")
        with (
            self.decisions.transition()
        ):  # a second caller's incident is refused by the store and this writes nothing
            if last.phase == WatchPhase.RUNNING.value:
                self.store.end_watch(last.id, WatchPhase.ABORTED, now, f"manual rollback by {actor}")
            self.store.set_release_status(bad.id, ReleaseStatus.FAILED)
            incident = self.store.create_incident(
                env,
                service,
                bad.id,
                target.id,
                trigger=trigger,
                reason=reason,
                actor=actor,
                now=now,
                evidence={"requested_by": actor, "reference": reference},
            )
            what = {"manual": "manual", "incident": "incident", "security": "security-finding"}.get(
                trigger, trigger
            )
            self.decisions.record(
                env=env,
                service=service,
                kind=DecisionKind.ROLLBACK_DECIDED,
                reason=f"{what} rollback of {bad.tag} to {target.tag}: {reason}"
                + (f" ({reference})" if reference else ""),
                evidence={"reference": reference} if reference else {},
                actor=actor,
                result=DecisionResult.ROLLBACK_STARTED,
                incident_id=incident.id,
                from_release=bad,
                to_release=target,
            )
        return incident.id

    def incident_reported(
        self,
        env: str,
        service: str,
        *,
        source: str,
        title: str,
        url: str | None,
        occurred_at: float,
        reference: str,
        window_s: float,
    ) -> int | None:
        """An oncall incident (a PagerDuty P1/P2, a security finding) names this service. If it began
        within ``window_s`` after the newest deploy, that release is rolled back as the environment's
        ``rollback_policy`` says (an automatic rollback: proposed, or after the veto window), with
        the incident's link in the decision log. Otherwise it is logged as ignored, with why.
        Returns the rollback incident's id, or None."""
        self.cfg.env(env)
        self.cfg.service(service)
        now = self.clock.now()
        report = {
            "source": source,
            "reference": reference,
            "title": title,
            "url": url,
            "occurred_at": occurred_at,
        }
        last = self.store.last_deploy_watch(env, service)
        why_not: str | None = None
        if last is None:
            why_not = f"no deploy of {service} to {env} is known"
        elif not last.started_at - 60.0 <= occurred_at <= last.started_at + window_s:
            why_not = (
                f"it began {occurred_at - last.started_at:+.0f}s from the newest deploy, outside the "
                f"incident window of {window_s:.0f}s"
            )
        elif any(i.env == env and i.service == service for i in self.store.open_incidents()):
            why_not = "a rollback of this service is already in progress"
        else:
            release = self.store.release(last.release_id)
            if release.status in (ReleaseStatus.FAILED, ReleaseStatus.ROLLED_BACK):
                why_not = f"{release.tag} was already judged bad ({release.status})"
        if why_not is not None or last is None:
            self.decisions.record(
                DecisionKind.INCIDENT_REPORTED,
                f"{source} incident {reference} ({title}) on {service} in {env}: no rollback, {why_not}",
                DecisionResult.IGNORED,
                env=env,
                service=service,
                evidence=report,
            )
            return None
        release = self.store.release(last.release_id)
        target = None
        pinned = self.store.current_pin(env, service)
        if pinned is not None and pinned.id == release.id and last.previous_release_id is not None:
            target = self.store.release(
                last.previous_release_id
            )  # promoted meanwhile: back to the one before
        reason = f"{source} incident {reference}: {title}"
        with self.decisions.transition():
            self._record(
                last,
                DecisionKind.INCIDENT_REPORTED,
                f"{reason}, {occurred_at - last.started_at:.0f}s after the deploy of {release.tag}",
                DecisionResult.FAILED,
                from_release=release,
                evidence=report,
            )
            if last.phase == WatchPhase.RUNNING:
                self.store.end_watch(last.id, WatchPhase.FAILED, now, f"incident: {reference}")
            then = self._decide_rollback(
                last,
                reason,
                {"incident_report": report},
                f"incident:{source}",
                now,
                target=target,
                refused_page=f"{service} {release.tag} in {env}: {reason}",
            )
        if then is not None:
            then()
        opened = [i for i in self.store.open_incidents() if i.env == env and i.service == service]
        return opened[0].id if opened else None

    def _unseen(self, watch: Watch, results: list[SignalResult], now: float) -> dict[str, str]:
        """The deciding signals that did not see enough of the release to vouch for it, and why."""
        policy = self.cfg.env(watch.env)
        deciding = [r for r in results if r.severity is Severity.ROLLBACK] or results
        out = {}
        for r in deciding:
            cov = r.coverage
            if cov is None:
                out[r.signal] = "no coverage figures"
            elif cov.fraction < policy.min_coverage:
                out[r.signal] = (
                    f"data in {cov.fraction:.0%} of {cov.steps} steps (needs {policy.min_coverage:.0%})"
                )
            elif cov.stale_for(now) > policy.fresh_s:
                out[r.signal] = (
                    "no sample at all"
                    if cov.last_seen is None
                    else f"no sample in the last {cov.stale_for(now):.0f}s "
                    f"(needs one within {policy.fresh_s:.0f}s)"
                )
        return out

    def _finish(
        self, watch: Watch, svc: ServiceConfig, results: list[SignalResult], mem: _WatchMemory, now: float
    ) -> None:
        """The watch ran its length without a failure: promote what was seen, never what was not."""
        policy = self.cfg.env(watch.env)
        release = self.store.release(watch.release_id)
        unseen = self._unseen(watch, results, now)
        evidence = {"final": [r.evidence() for r in results], "unseen": unseen}
        if watch.kind in (WatchKind.POST_ROLLBACK, WatchKind.POST_PROMOTION):
            phase = WatchPhase.INCONCLUSIVE if unseen else WatchPhase.SUCCESSFUL
            healthy = "recovered" if watch.kind == WatchKind.POST_ROLLBACK else "healthy after promotion"
            summary = healthy if not unseen else f"not seen: {unseen}"
            if self.store.end_watch(watch.id, phase, now, summary):
                self._notify_end(watch, phase)
            return
        if not unseen:
            with self.decisions.transition():  # the watch ends with its release pinned, or not at all
                ended = self.store.end_watch(
                    watch.id, WatchPhase.SUCCESSFUL, now, "healthy for the whole watch"
                )
                if ended:
                    self._promote(watch, release, evidence, now)
            if ended:
                self._notify_end(watch, WatchPhase.SUCCESSFUL)
            return
        # A release nobody could observe is never promoted: missing data is not evidence.
        why = "; ".join(f"{k}: {v}" for k, v in unseen.items())
        extended = watch.ends_at - watch.started_at > policy.watch_s + 1e-6
        if policy.on_inconclusive == "extend" and not extended:
            with self.decisions.transition():
                self.store.extend_watch(watch.id, now + policy.watch_s)
                self._record(
                    watch,
                    DecisionKind.INCONCLUSIVE,
                    f"watch of {release.tag} saw too little ({why}); "
                    f"watching {policy.watch_s:.0f}s more, once",
                    DecisionResult.EXTENDED,
                    to_release=release,
                    evidence=evidence,
                )
            return
        paging = policy.on_inconclusive in ("page", "extend") and policy.mode == "act"
        then = "held for a human; oncall paged" if paging else "held for a human"
        if paging:
            self._page(
                f"rollback-watchdog/inconclusive/{watch.env}/{watch.service}/watch-{watch.id}",
                f"{watch.service} {release.tag} in {watch.env}: watch ended inconclusive, "
                f"not promoted ({why})",
                "warning",
                watch,
                {"unseen": unseen},
            )
        with self.decisions.transition():
            ended = self.store.end_watch(watch.id, WatchPhase.INCONCLUSIVE, now, f"not seen: {why}")
            if ended:
                self._record(
                    watch,
                    DecisionKind.INCONCLUSIVE,
                    f"watch of {release.tag} ended inconclusive: {why}; the release is {then}",
                    DecisionResult.INCONCLUSIVE,
                    to_release=release,
                    evidence=evidence,
                )
        if ended:
            self._notify_end(watch, WatchPhase.INCONCLUSIVE)

    def _promote(self, watch: Watch, release: Release, evidence: dict[str, Any], now: float) -> None:
        policy = self.cfg.env(watch.env)
        previous = self.store.current_pin(watch.env, watch.service)
        more = policy.post_promotion_watch_s
        then = f"; watched {more:.0f}s more after promotion" if more > 0 else ""
        if policy.mode == "shadow":  # the team's own process decides what is stable meanwhile
            self._record(
                watch,
                DecisionKind.PROMOTED,
                f"shadow mode: {release.tag} passed its {policy.watch_s:.0f}s watch and would be "
                f"pinned as stable; the pin was not moved{then}",
                DecisionResult.SHADOW,
                from_release=previous,
                to_release=release,
                evidence=evidence,
            )
        else:
            self.store.set_release_status(release.id, ReleaseStatus.STABLE)
            self.store.pin(
                watch.env, watch.service, release.id, now, Actor.AUTOMATIC.value, "passed its watch"
            )
            self._record(
                watch,
                DecisionKind.PROMOTED,
                f"{release.tag} passed its {policy.watch_s:.0f}s watch and is pinned as stable{then}",
                DecisionResult.SUCCESSFUL,
                from_release=previous,
                to_release=release,
                evidence=evidence,
            )
        self.watch_after_promotion(watch.env, watch.service, release, previous, now)

    def watch_after_promotion(
        self, env: str, service: str, release: Release, previous: Release | None, now: float
    ) -> Watch | None:
        """Watch a just-promoted release ``post_promotion_watch_s`` longer (none when 0): a
        regression rolls it back to ``previous``, the release pinned before it."""
        length = self.cfg.env(env).post_promotion_watch_s
        if length <= 0:
            return None
        before = previous.id if previous is not None and previous.id != release.id else None
        return self.store.create_watch(
            env, service, WatchKind.POST_PROMOTION.value, release.id, before, now, now + length
        )

    def _record(
        self, watch: Watch, kind: DecisionKind, reason: str, result: DecisionResult, **kw: Any
    ) -> DecisionEntry:
        """A decision of the engine's own about one watch."""
        return self.decisions.record(
            kind, reason, result, env=watch.env, service=watch.service, watch_id=watch.id, **kw
        )

    def _notify_end(self, watch: Watch, phase: WatchPhase) -> None:
        mem = self._memory.pop(watch.id, None)
        if mem is not None and mem.blind_paged:
            self._page_resolve(self._blind_key(watch))

    # ------------------------------------------------------------------ helpers for the CLI

    def pin(self, env: str, service: str, ref: ReleaseRef, actor: str, reason: str) -> Release:
        """Pin ``ref`` as the stable release (logged). A release that failed its watch is refused
        before anything is written."""
        self.cfg.env(env)
        self.cfg.service(service)
        _check_tag(ref)
        known = self.store.find_release(env, service, ref.tag)
        if known is not None and known.status == ReleaseStatus.FAILED.value:
            raise InputError(
                f"release {ref.tag} failed its watch in {env}: it is never pinned",
                argument="tag",
                value=ref.tag,
            )
        with self.decisions.transition():
            now = self.clock.now()
            release = self.store.upsert_release(env, service, ref, now, status=ReleaseStatus.STABLE)
            previous = self.store.current_pin(env, service)
            self.store.pin(env, service, release.id, now, actor, reason)
            self.decisions.record(
                env=env,
                service=service,
                kind=DecisionKind.PIN,
                reason=reason,
                actor=actor,
                result=DecisionResult.PINNED,
                from_release=previous,
                to_release=release,
            )
            return release
