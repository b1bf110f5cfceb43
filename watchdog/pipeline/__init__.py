"""The rollback runbook as a persisted state machine of steps: the driver.

The steps are a table (``steps.RUNBOOK``); each is recorded in the store before its external
effect and after it, under an idempotency key (incident, step). ``advance`` runs steps until one
has to wait (a workflow run in progress, a post-rollback watch) and returns; the next tick —
possibly in a restarted process, or on the replica that took over — resumes there. Every write of
a step is a compare-and-set on its phase and attempt count, so two processes never both move it.
Retry state (attempts, the next attempt's time) is in the step's row: a backoff survives restarts.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
import structlog

from actions.github import DeployWorkflow
from actions.pagerduty import PagerDuty
from actions.tickets import IncidentTickets
from watchdog.clock import Clock
from watchdog.config import WatchdogConfig
from watchdog.decisions import DecisionLog
from watchdog.errors import ActionFailed, StepConflict, StepFailed
from watchdog.phases import DecisionKind, DecisionResult, IncidentPhase, StepPhase
from watchdog.pipeline import notices
from watchdog.pipeline.core import Done, Fail, Outcome, Retry, StepContext, StepSpec, Wait
from watchdog.pipeline.steps import ESCALATION, RUNBOOK, VETO_NOTICE
from watchdog.store import KEEP, DecisionEntry, Incident, Keep, Release, Step, Store

__all__ = ["ESCALATION_NOTICE", "MAX_ATTEMPTS", "STEPS", "RollbackPipeline"]

log = structlog.get_logger("watchdog.pipeline")

#: The runbook's step names in order.
STEPS = tuple(spec.name for spec in RUNBOOK)
#: The name of the step that sends the escalation's page and ticket update.
ESCALATION_NOTICE = ESCALATION.name
#: Failed attempts of one step before it escalates.
MAX_ATTEMPTS = 6
#: The longest backoff between two attempts when the server did not say how long to wait.
MAX_BACKOFF_S = 60.0


class RollbackPipeline:
    def __init__(
        self,
        cfg: WatchdogConfig,
        store: Store,
        clock: Clock,
        decisions: DecisionLog,
        *,
        deployer: DeployWorkflow | None,
        http: httpx.Client,
        tickets: IncidentTickets | None = None,
        pager: PagerDuty | None = None,
        smoke_retry_delay_s: float = 1.0,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.decisions = decisions
        self.deployer = deployer
        self.http = http
        self.tickets = tickets
        self.pager = pager
        self.smoke_retry_delay_s = smoke_retry_delay_s
        #: Set to stop between steps (SIGTERM): the running step finishes and is persisted first.
        self.stopping = threading.Event()

    # ------------------------------------------------------------------ driver

    def advance(self, incident_id: int) -> None:
        incident = self.store.incident(incident_id)
        if incident.phase == IncidentPhase.ESCALATING:
            self._run(incident, ESCALATION, self.store.step(incident.id, ESCALATION.name))
            return
        if incident.phase == IncidentPhase.VETOING:
            self._run(incident, VETO_NOTICE, self.store.step(incident.id, VETO_NOTICE.name))
            return
        if incident.phase in IncidentPhase.closed():
            return
        for spec in RUNBOOK:
            if self.stopping.is_set():
                return  # the next start resumes from the store
            row = self.store.step(incident.id, spec.name)
            if row.phase == StepPhase.SUCCESSFUL:
                continue
            if row.phase in (StepPhase.FAILED, StepPhase.ERROR):
                # failed, but the process may have died before escalating
                self._escalate(incident, f"step {spec.name} {row.phase}: {row.outcome}", row.evidence)
                return
            if not self._run(incident, spec, row):
                return
            if self.store.incident(incident.id).phase == IncidentPhase.RESOLVED:
                return

    def _run(self, incident: Incident, spec: StepSpec[Any], row: Step) -> bool:
        """One attempt of one step, unless its next attempt is not due; True when it completed."""
        now = self.clock.now()
        if row.next_attempt_at is not None and now < row.next_attempt_at:
            return False
        if row.phase == StepPhase.PENDING:
            with self.decisions.transition():
                row = self._write(row, phase=StepPhase.RUNNING)
                self._log_step(incident, row, DecisionResult.STARTED, {})
        ctx = StepContext(self, incident, spec, row)
        try:
            outcome: Outcome = spec.handler(ctx)
        except StepFailed as exc:
            outcome = Fail(str(exc), exc.evidence)
        except ActionFailed as exc:
            outcome = (
                Retry(exc.retry_after, exc)
                if exc.retryable
                else Fail(str(exc), {"error": exc.as_dict()}, error=True)
            )
        try:
            return self._persist(incident, spec, ctx.row, outcome)
        except StepConflict as exc:  # a human's override (a veto) or another process moved it first
            log.info("step moved on elsewhere", step=spec.name, incident=incident.id, detail=str(exc))
            return False

    def _persist(self, incident: Incident, spec: StepSpec[Any], row: Step, outcome: Outcome) -> bool:
        now = self.clock.now()
        match outcome:
            case Done(evidence=evidence, incident_phase=phase, entry=entry):
                with self.decisions.transition():
                    row = self._write(
                        row, phase=StepPhase.SUCCESSFUL, outcome="ok", evidence=evidence, next_attempt_at=None
                    )
                    self._log_step(incident, row, DecisionResult.SUCCESSFUL, evidence)
                    if phase is not None:
                        self.store.set_incident_phase(incident.id, phase, now)
                    if entry is not None:
                        self.log(
                            incident,
                            entry.kind,
                            entry.reason,
                            entry.result,
                            {"step": spec.name, **entry.evidence},
                        )
                return True
            case Wait(until=until):
                if until != row.next_attempt_at:
                    self._write(row, next_attempt_at=until)
                return False
            case Retry(after=after, error=error):
                attempts = row.attempts + 1
                if attempts >= MAX_ATTEMPTS:
                    self._write(row, phase=StepPhase.ERROR, outcome=str(error), attempts=attempts)
                    if spec not in (ESCALATION, VETO_NOTICE):
                        self._escalate(
                            incident, f"step {spec.name} kept failing: {error}", {"attempts": attempts}
                        )
                    return False
                delay = after if after is not None else min(MAX_BACKOFF_S, 2.0**attempts)
                self._write(row, outcome=f"retrying: {error}", attempts=attempts, next_attempt_at=now + delay)
                log.warning(
                    "step retry",
                    step=spec.name,
                    incident=incident.id,
                    error=str(error),
                    attempt=attempts,
                    delay_s=delay,
                )
                return False
            case Fail(reason=reason, evidence=evidence, error=error):
                ended = StepPhase.ERROR if error else StepPhase.FAILED
                self._write(row, phase=ended, outcome=reason, evidence=evidence)
                if spec not in (ESCALATION, VETO_NOTICE):
                    self._escalate(incident, f"step {spec.name} {ended}: {reason}", evidence)
                return False
        raise AssertionError(f"step {spec.name} returned {outcome!r}, not an outcome")

    def _escalate(self, incident: Incident, reason: str, evidence: dict[str, Any]) -> None:
        """Stop automation and call humans: the decision first, then the page and the ticket update.

        The incident is ``escalating`` until the notices went out, so a crash in between sends them
        on the next tick rather than never."""
        text = notices.escalation(reason)
        notice = self.store.step(incident.id, ESCALATION.name)
        with self.decisions.transition():
            notice = self._write(notice, phase=StepPhase.RUNNING, evidence={"reason": text})
            self.store.set_incident_phase(incident.id, IncidentPhase.ESCALATING, self.clock.now())
            self.log(incident, DecisionKind.ESCALATED, text, DecisionResult.ESCALATED, evidence)
        self._run(self.store.incident(incident.id), ESCALATION, notice)

    # ------------------------------------------------------------------ writes and records

    def _write(
        self,
        row: Step,
        *,
        phase: StepPhase | None = None,
        outcome: str | None = None,
        evidence: dict[str, Any] | None = None,
        attempts: int | None = None,
        next_attempt_at: float | Keep | None = KEEP,
    ) -> Step:
        """A compare-and-set of the step on the (phase, attempts) this process last saw of it."""
        return self.store.update_step(
            row.id,
            phase=phase or row.phase,
            now=self.clock.now(),
            outcome=outcome,
            evidence=evidence,
            attempts=attempts,
            next_attempt_at=next_attempt_at,
            expect=(row.phase, row.attempts),
        )

    def write_step(self, row: Step, *, evidence: dict[str, Any]) -> Step:
        """A step's progress inside an attempt (its state saved), compare-and-set like every write."""
        return self._write(row, evidence=evidence)

    def releases(self, incident: Incident) -> tuple[Release, Release | None]:
        """The rollback's two releases: from the bad one, to its target (None when none is pinned)."""
        from_release = self.store.release(incident.from_release_id)
        to_release = self.store.release(incident.to_release_id) if incident.to_release_id else None
        return from_release, to_release

    def log(
        self,
        incident: Incident,
        kind: DecisionKind,
        reason: str,
        result: DecisionResult,
        evidence: dict[str, Any] | None = None,
        **extra: Any,
    ) -> DecisionEntry:
        """An automatic decision-log entry about ``incident``, from its bad release to its target
        (``extra`` overrides any field)."""
        from_release, to_release = self.releases(incident)
        fields: dict[str, Any] = {
            "env": incident.env,
            "service": incident.service,
            "incident_id": incident.id,
            "from_release": from_release,
            "to_release": to_release,
            "evidence": evidence or {},
            **extra,
        }
        return self.decisions.record(kind, reason, result, **fields)

    def _log_step(
        self, incident: Incident, row: Step, result: DecisionResult, evidence: dict[str, Any]
    ) -> None:
        self.log(
            incident,
            DecisionKind.STEP,
            f"step {row.name} {result}",
            result,
            {"step": row.name, "attempts": row.attempts, **evidence},
        )

    @staticmethod
    def warn(event: str, **context: Any) -> None:
        log.warning(event, **context)
