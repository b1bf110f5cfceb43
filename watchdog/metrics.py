"""The watchdog's own metrics, in Prometheus's naming conventions, served on the API's ``/metrics``.

One registry per process (not prometheus_client's global one), so tests and the demo can build
several apps side by side. ``SelfMetrics`` is also a reporter: it hears the engine's ticks and
every committed decision-log entry and derives the rest from them, so the engine knows nothing of
Prometheus. What each metric means is listed in ``docs/monitoring/README.md``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from watchdog import __version__
from watchdog.config import Severity
from watchdog.observability import report_exception
from watchdog.phases import Actor, DecisionKind, DecisionResult, SignalState

if TYPE_CHECKING:
    from watchdog.engine import Reporter
    from watchdog.evaluate import SignalResult
    from watchdog.store import DecisionEntry, Watch

log = structlog.get_logger("watchdog.metrics")

PREFIX = "rollback_watchdog"

#: A deciding signal in one of these states cannot see the release (the engine's blindness also
#: counts stale series; these two are what a single tick's results show).
BLIND_STATES = frozenset({SignalState.ERROR, SignalState.NO_DATA})

#: A step's ``started`` entry to its ``successful`` one, retries and approval waits included.
STEP_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)

#: Decisions the shipped alerts count (docs/monitoring/prometheus-rules.yaml).
_ALERTED = ((DecisionKind.ESCALATED, DecisionResult.ESCALATED),)

#: What a deploy's announcement writes: its actor is whoever deployed, steering nothing.
_ANNOUNCED = frozenset(
    {DecisionKind.DEPLOY_ANNOUNCED, DecisionKind.WATCH_STARTED, DecisionKind.WATCH_SUPERSEDED}
)

#: Incident-bound entries after which none of that incident's steps are still running.
_INCIDENT_DONE = frozenset(
    {DecisionResult.RESOLVED, DecisionResult.ESCALATION_SENT, DecisionResult.VETO_SENT}
)


@dataclass
class _LastTick:
    watch_id: int
    at: float
    signals: frozenset[str]


class SelfMetrics:
    """The process's registry and the ``Reporter`` that keeps its watch and decision metrics.

    ``source`` is the configured metric source's kind (``prometheus``, ``scrape``, ``replay``):
    the ``source`` label of the error and blindness counters.
    """

    def __init__(self, *, source: str = "unknown") -> None:
        self.source = source
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.build = Info(f"{PREFIX}_build", "The running version.", registry=r)
        self.build.info({"version": __version__})
        self.ticks = Counter(f"{PREFIX}_ticks", "Evaluation ticks run, by outcome.", ["outcome"], registry=r)
        self.tick_seconds = Histogram(
            f"{PREFIX}_tick_duration_seconds",
            "Wall time of one evaluation tick.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.last_tick = Gauge(
            f"{PREFIX}_last_successful_tick_timestamp_seconds",
            "When the last tick that did not fail ended (Unix seconds).",
            registry=r,
        )
        self.leader = Gauge(
            f"{PREFIX}_leader",
            "1 while this replica holds the lease and acts, 0 while it stands by.",
            registry=r,
        )
        self.api_requests = Counter(
            f"{PREFIX}_api_requests",
            "API requests answered, by route and status.",
            ["route", "status"],
            registry=r,
        )
        self.signal_state = Gauge(
            f"{PREFIX}_signal_state",
            "1 for each signal's state at the last tick of its service's newest watch, 0 for its "
            "other states.",
            ["env", "service", "signal", "state"],
            registry=r,
        )
        self.source_errors = Counter(
            f"{PREFIX}_source_errors",
            "Signal evaluations the metric source did not answer (one per signal per tick).",
            ["source"],
            registry=r,
        )
        self.blind_seconds = Counter(
            f"{PREFIX}_blind_seconds",
            "Watch time during which a deciding signal had no answer or no data, summed over watches.",
            ["source"],
            registry=r,
        )
        self.decisions = Counter(
            f"{PREFIX}_decisions",
            "Decision-log entries committed, by kind and result.",
            ["kind", "result"],
            registry=r,
        )
        self.steps = Counter(
            f"{PREFIX}_pipeline_steps",
            "Rollback pipeline step entries committed, by step and result.",
            ["step", "result"],
            registry=r,
        )
        self.step_seconds = Histogram(
            f"{PREFIX}_step_duration_seconds",
            "Time from a rollback step's start to its success, retries and waits included.",
            ["step"],
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.overrides = Counter(
            f"{PREFIX}_overrides",
            "Decision-log entries made by a person (any actor but the watchdog; deploys aside), by kind.",
            ["kind"],
            registry=r,
        )
        # series that alerts and rates read exist from the start: an increase is seen from zero
        for outcome in ("ok", "failed"):
            self.ticks.labels(outcome)
        self.source_errors.labels(source)
        self.blind_seconds.labels(source)
        for kind, result in _ALERTED:
            self.decisions.labels(kind.value, result.value)
        self._lock = threading.Lock()  # the tick's thread and the API's threads both report
        self._last: dict[tuple[str, str], _LastTick] = {}
        self._started: dict[tuple[int, str], float] = {}  # (incident, step) -> its started entry's time
        self._current_step: dict[int, str] = {}  # incident -> the step its last step entry named

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    # ------------------------------------------------------------------ Reporter

    def tick(self, now: float, watch: Watch, results: list[SignalResult]) -> None:
        """One watch evaluated at one tick: its signals' states, errors and blind time."""
        key = (watch.env, watch.service)
        signals = frozenset(r.signal for r in results)
        with self._lock:
            last = self._last.get(key)
            if last is not None:  # a newer watch (or a changed config) drops the signals it lacks
                for gone in last.signals - signals:
                    self._forget_signal(watch.env, watch.service, gone)
            self._last[key] = _LastTick(watch.id, now, signals)
        for res in results:
            for state in SignalState:
                self.signal_state.labels(watch.env, watch.service, res.signal, state.value).set(
                    1 if res.state is state else 0
                )
        errors = sum(1 for res in results if res.state is SignalState.ERROR)
        if errors:
            self.source_errors.labels(self.source).inc(errors)
        # the engine's rule for which signals decide: the rollback-severity ones, else all of them
        deciding = [res for res in results if res.severity is Severity.ROLLBACK] or results
        blind = any(res.state in BLIND_STATES for res in deciding)
        if blind and last is not None and last.watch_id == watch.id and now > last.at:
            # the time since the watch's previous tick counts as blind when this tick found it so
            self.blind_seconds.labels(self.source).inc(now - last.at)

    def decision(self, entry: DecisionEntry) -> None:
        """One committed decision-log entry: counted by kind and result, by step, and as an override."""
        kind, result = DecisionKind(entry.kind), DecisionResult(entry.result)
        self.decisions.labels(kind.value, result.value).inc()
        if entry.actor != Actor.AUTOMATIC.value and kind not in _ANNOUNCED:
            self.overrides.labels(kind.value).inc()
        if entry.incident_id is None:
            return  # a step entry without an incident is the engine's page, not a pipeline step
        with self._lock:
            if kind is DecisionKind.STEP:
                self._step(entry.incident_id, entry, result)
            if result in _INCIDENT_DONE:
                self._current_step.pop(entry.incident_id, None)
                for started in [k for k in self._started if k[0] == entry.incident_id]:
                    del self._started[started]

    def _step(self, incident_id: int, entry: DecisionEntry, result: DecisionResult) -> None:
        # entries made inside a step (a notice that failed, an approval) name no step: they belong
        # to the one whose entry came last for this incident
        named = entry.evidence.get("step")
        step = named if isinstance(named, str) else self._current_step.get(incident_id)
        if step is None:
            log.debug("step entry names no step", incident=incident_id, result=result.value)
            return
        self._current_step[incident_id] = step
        self.steps.labels(step, result.value).inc()
        if result is DecisionResult.STARTED:
            self._started[(incident_id, step)] = entry.at
        elif result is DecisionResult.SUCCESSFUL:
            began = self._started.pop((incident_id, step), None)
            if began is not None:  # unknown when the step started before this process did
                self.step_seconds.labels(step).observe(max(0.0, entry.at - began))

    def _forget_signal(self, env: str, service: str, signal: str) -> None:
        for state in SignalState:
            self.signal_state.remove(env, service, signal, state.value)


class Reporters:
    """Several reporters heard as one: the demo's terminal view and the metrics both hear each tick
    and each decision. A reporter that raises is reported; the others and the engine go on (the
    decision it was told about is committed already)."""

    def __init__(self, *reporters: Reporter | None) -> None:
        self.reporters: list[Reporter] = [r for r in reporters if r is not None]

    def tick(self, now: float, watch: Watch, results: list[SignalResult]) -> None:
        for r in self.reporters:
            try:
                r.tick(now, watch, results)
            except Exception as exc:
                report_exception(log, "reporter failed", exc, reporter=type(r).__name__, watch_id=watch.id)

    def decision(self, entry: DecisionEntry) -> None:
        for r in self.reporters:
            try:
                r.decision(entry)
            except Exception as exc:
                report_exception(log, "reporter failed", exc, reporter=type(r).__name__, entry_id=entry.id)
