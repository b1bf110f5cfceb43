"""The rollback runbook as a persisted state machine of steps.

Every step is recorded in the store before its external effect and after it, under an idempotency
key (incident, step). ``advance`` runs steps until one has to wait (a workflow run in progress, a
post-rollback watch) and returns; the next tick — possibly in a restarted process — resumes there.
A dispatch is never repeated blindly: a dispatch attempt whose answer was lost is first looked up
by its correlation id.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import structlog

from actions.dampen import run_action
from actions.github import DeployWorkflow, RunInfo
from actions.smoke import run_checks
from watchdog.clock import Clock
from watchdog.config import ApprovalMode, WatchdogConfig
from watchdog.errors import ActionFailed, ActionRetryable
from watchdog.phases import Actor, DecisionKind, IncidentPhase, StepPhase, WatchKind, WatchPhase
from watchdog.store import DecisionEntry, Incident, Release, Step, Store

log = structlog.get_logger("watchdog.pipeline")

#: The runbook's steps in order (runbook-rollback.de.md, "Schritte").
STEPS = (
    "pin",
    "dampen",
    "migration_gate",
    "dispatch",
    "follow_run",
    "smoke",
    "undo_dampening",
    "post_rollback_watch",
    "resolve",
)

#: Retryable failures of one step before it escalates.
MAX_ATTEMPTS = 6

ESCALATION_RUNBOOKS = ("docs/runbooks/incident.md (Incident Response)", "restore-db.md")


class StepFailed(Exception):
    def __init__(self, message: str, evidence: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.evidence = evidence or {}


class RollbackPipeline:
    def __init__(
        self,
        cfg: WatchdogConfig,
        store: Store,
        clock: Clock,
        *,
        deployer: DeployWorkflow | None,
        http: httpx.Client,
        record: Callable[..., DecisionEntry],
        notify: Callable[[DecisionEntry], None] | None = None,
        smoke_retry_delay_s: float = 1.0,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.deployer = deployer
        self.http = http
        self.record = record
        self.notify = notify or (lambda entry: None)
        self.smoke_retry_delay_s = smoke_retry_delay_s
        self._not_before: dict[int, float] = {}

    # ------------------------------------------------------------------ driver

    def advance(self, incident_id: int) -> None:
        incident = self.store.incident(incident_id)
        if incident.phase == IncidentPhase.ESCALATED.value:
            return
        if incident.phase == IncidentPhase.RESOLVED.value:
            return
        for name in STEPS:
            step = self.store.step(incident.id, name)
            if step.phase == StepPhase.SUCCESSFUL.value:
                continue
            if step.phase in (StepPhase.FAILED.value, StepPhase.ERROR.value):
                # failed, but the process may have died before escalating
                self._escalate(incident, f"step {name} {step.phase}: {step.outcome}", step.evidence)
                return
            if self.clock.now() < self._not_before.get(step.id, 0.0):
                return
            handler: Callable[[Incident, Step], dict[str, Any] | None] = getattr(self, f"_{name}")
            first_run = step.phase == StepPhase.PENDING.value
            try:
                if first_run:
                    step = self._transition(incident, step, StepPhase.RUNNING, "started", {})
                result = handler(incident, step)
            except ActionRetryable as exc:
                self._retry(incident, step, exc)
                return
            except (StepFailed, ActionFailed) as exc:
                evidence = exc.evidence if isinstance(exc, StepFailed) else {}
                phase = StepPhase.FAILED if isinstance(exc, StepFailed) else StepPhase.ERROR
                self.store.update_step(
                    step.id, phase=phase, now=self.clock.now(), outcome=str(exc), evidence=evidence
                )
                self._escalate(incident, f"step {name} {phase.value}: {exc}", evidence)
                return
            if result is None:
                return  # waiting on the outside world; resume at the next tick
            if self.store.incident(incident.id).phase == IncidentPhase.RESOLVED.value:
                return  # the resolve step completed itself with the resolution
            self._transition(incident, step, StepPhase.SUCCESSFUL, "successful", result, outcome="ok")

    def _retry(self, incident: Incident, step: Step, exc: ActionRetryable) -> None:
        errors = int(self.store.step(incident.id, step.name).evidence.get("retryable_errors", 0)) + 1
        self.store.update_step(
            step.id,
            phase=StepPhase.RUNNING,
            now=self.clock.now(),
            outcome=f"retrying: {exc}",
            evidence={"retryable_errors": errors},
        )
        if errors >= MAX_ATTEMPTS:
            self.store.update_step(step.id, phase=StepPhase.ERROR, now=self.clock.now(), outcome=str(exc))
            self._escalate(incident, f"step {step.name} kept failing: {exc}", {"errors": errors})
            return
        delay = exc.retry_after if exc.retry_after is not None else min(60.0, 2.0**errors)
        self._not_before[step.id] = self.clock.now() + delay
        log.warning("step retry", step=step.name, incident=incident.id, error=str(exc), delay_s=delay)

    # ------------------------------------------------------------------ steps

    def _releases(self, incident: Incident) -> tuple[Release, Release | None]:
        bad = self.store.release(incident.from_release_id)
        good = self.store.release(incident.to_release_id) if incident.to_release_id else None
        return bad, good

    def _pin(self, incident: Incident, step: Step) -> dict[str, Any]:
        """Runbook step 1: the stable version to return to (tag, SHA, run id, build URL)."""
        bad, good = self._releases(incident)
        if good is None:
            raise StepFailed("no stable release is pinned for this environment: nothing to roll back to")
        if good.id == bad.id:
            raise StepFailed(f"the pinned release {good.tag} is the failing release itself")
        return {"tag": good.tag, "sha": good.sha, "run_id": good.run_id, "build_url": good.build_url}

    def _dampen(self, incident: Incident, step: Step) -> dict[str, Any]:
        """Runbook step 2: flags off, workers paused. Each completed action is recorded, so a restart
        skips it; only an action cut off mid-call by a crash runs again (make them idempotent)."""
        actions = self.cfg.service(incident.service).dampening.get(incident.env, [])
        done = list(step.evidence.get("done", []))
        for action in actions:
            if action.name in done:
                continue
            run_action(self.http, action)
            done.append(action.name)
            self.store.update_step(
                step.id, phase=StepPhase.RUNNING, now=self.clock.now(), evidence={"done": done}
            )
        return {"done": done}

    def _undo_dampening(self, incident: Incident, step: Step) -> dict[str, Any]:
        """Undo what was dampened, newest first (kept as it is when the rollback escalates)."""
        actions = {a.name: a for a in self.cfg.service(incident.service).dampening.get(incident.env, [])}
        dampened = self.store.step(incident.id, "dampen").evidence.get("done", [])
        undone = list(step.evidence.get("undone", []))
        for name in reversed(dampened):
            action = actions.get(name)
            if action is None or action.undo is None or name in undone:
                continue
            run_action(self.http, action.undo)
            undone.append(name)
            self.store.update_step(
                step.id, phase=StepPhase.RUNNING, now=self.clock.now(), evidence={"undone": undone}
            )
        return {"undone": undone}

    def _manifest(self, ref: str) -> dict[str, bool] | None:
        """Migration id → reversible, from the release's manifest; None when it has none."""
        assert self.deployer is not None
        path = self.cfg.github.migrations.manifest_path
        text = self.deployer.read_file(path, ref)
        if text is None:
            return None
        try:
            items = json.loads(text)["migrations"]
            return {str(m["id"]): bool(m["reversible"]) for m in items}
        except (ValueError, KeyError, TypeError) as exc:
            raise StepFailed(
                f"{path} at {ref} is not a valid migration manifest ({exc}): the migration status is unclear"
            ) from exc

    def _migration_gate(self, incident: Incident, step: Step) -> dict[str, Any]:
        """Runbook precondition and "DB-Migrationen": what the bad release migrated, and can it go back?"""
        if not self.cfg.github.migrations.enabled:
            return {"note": "migration gate disabled"}
        if self.deployer is None:
            raise StepFailed("GitHub is not configured: the migration status cannot be read")
        bad, good = self._releases(incident)
        assert good is not None
        at_bad, at_good = self._manifest(bad.tag), self._manifest(good.tag)
        if at_bad is None and at_good is None:
            return {"note": "no migration manifest at either release", "down": []}
        if at_bad is None:
            raise StepFailed(
                f"{bad.tag} has no migration manifest but {good.tag} has: the migration status is "
                "unclear; check it by hand (restore-db.md)"
            )
        new = [mid for mid in at_bad if mid not in (at_good or {})]
        irreversible = [mid for mid in new if not at_bad[mid]]
        evidence = {"migrations_since_target": new, "irreversible": irreversible}
        if irreversible:
            raise StepFailed(
                f"{bad.tag} ran irreversible migrations {', '.join(irreversible)}: no automatic code "
                "rollback; a rollback needs the DB restore (restore-db.md)",
                evidence,
            )
        return {**evidence, "down": list(reversed(new))}

    def _inputs(self, incident: Incident, good: Release) -> tuple[str, dict[str, str]]:
        gh = self.cfg.github
        values = {
            "env": incident.env,
            "tag": good.tag,
            "sha": good.sha or "",
            "service": incident.service,
            "correlation_id": incident.correlation_id,
            "reason": incident.reason[:200],
        }
        inputs = {k: v.format(**values) for k, v in gh.inputs.items()}
        inputs.setdefault(gh.correlation_input, incident.correlation_id)
        down = self.store.step(incident.id, "migration_gate").evidence.get("down") or []
        if down and gh.migrations.down_input:
            inputs[gh.migrations.down_input] = ",".join(down)
        return gh.ref.format(**values), inputs

    def _dispatch(self, incident: Incident, step: Step) -> dict[str, Any] | None:
        """Runbook step 3: start the ``deploy`` workflow at the stable tag, exactly once."""
        if self.deployer is None:
            raise StepFailed("GitHub is not configured: cannot dispatch the deploy workflow")
        _, good = self._releases(incident)
        assert good is not None
        ref, inputs = self._inputs(incident, good)
        ev = step.evidence
        if ev.get("attempted_at") is not None:
            # An earlier attempt may have reached GitHub: find its run before dispatching again.
            found = self.deployer.find_run(incident.correlation_id)
            if found is not None:
                return self._dispatched(found, ref, inputs, recovered=True)
            if self.clock.now() - float(ev["attempted_at"]) < self.cfg.github.dispatch_lookup_grace_s:
                return None
        self.store.update_step(
            step.id,
            phase=StepPhase.RUNNING,
            now=self.clock.now(),
            attempt=True,
            evidence={"attempted_at": self.clock.now(), "ref": ref, "inputs": inputs},
        )
        try:
            run = self.deployer.dispatch(ref, inputs, details=True)
        except ActionFailed as exc:
            if isinstance(exc, ActionRetryable) or "422" not in str(exc):
                raise
            run = self.deployer.dispatch(ref, inputs, details=False)  # server rejects return_run_details
        if run is None:
            run = self.deployer.find_run(incident.correlation_id)
            if run is None:
                return None  # dispatched; the run shows up in the list shortly
        return self._dispatched(run, ref, inputs, recovered=False)

    @staticmethod
    def _dispatched(run: RunInfo, ref: str, inputs: dict[str, str], recovered: bool) -> dict[str, Any]:
        return {
            "run_id": run.id,
            "run_url": run.html_url,
            "ref": ref,
            "inputs": inputs,
            "found_by_correlation_id": recovered,
        }

    def _follow_run(self, incident: Incident, step: Step) -> dict[str, Any] | None:
        """Follow the dispatched run to its conclusion (approval for stage/prod happens in GitHub)."""
        assert self.deployer is not None
        dispatch = self.store.step(incident.id, "dispatch")
        run_id = int(dispatch.evidence["run_id"])
        run = self.deployer.run(run_id)
        evidence = {
            "run_id": run.id,
            "status": run.status,
            "conclusion": run.conclusion,
            "run_url": run.html_url,
        }
        if run.status == "waiting":
            self._approval(incident, step, run.id)
        if not run.completed:
            started = step.started_at or self.clock.now()
            if self.clock.now() - started > self.cfg.github.run_timeout_s:
                raise StepFailed(
                    f"run {run_id} did not finish within {self.cfg.github.run_timeout_s:.0f}s "
                    f"(status {run.status})",
                    evidence,
                )
            return None
        if run.conclusion != "success":
            raise StepFailed(f"the rollback run {run_id} ended {run.conclusion}", evidence)
        return evidence

    def _approval(self, incident: Incident, step: Step, run_id: int) -> None:
        """The run waits for the environment's approval: approve it ourselves only with ``approval: auto``."""
        assert self.deployer is not None
        mode = self.cfg.env(incident.env).approval
        if mode is not ApprovalMode.AUTO:
            if not step.evidence.get("awaiting_reviewers"):  # the flag and its log entry commit together
                now = self.clock.now()
                _, entry = self.store.step_transition(
                    step.id,
                    phase=StepPhase.RUNNING,
                    now=now,
                    evidence={"awaiting_reviewers": True},
                    log={
                        "at": now,
                        "env": incident.env,
                        "service": incident.service,
                        "kind": DecisionKind.STEP.value,
                        "reason": f"rollback run {run_id} waits for the {incident.env} environment's "
                        f"reviewers (approval: {mode.value})",
                        "actor": Actor.AUTOMATIC.value,
                        "result": "awaiting_approval",
                        "incident_id": incident.id,
                    },
                )
                if entry is not None:
                    self.notify(entry)
            return
        pending = self.deployer.pending_deployments(run_id)
        ids = [
            int(p["environment"]["id"])
            for p in pending
            if p.get("environment", {}).get("name") == incident.env and p.get("current_user_can_approve")
        ]
        if not ids:
            return  # not (yet) ours to approve; the run timeout escalates if nobody does
        comment = (
            f"approved by rollback-watchdog (approval: auto) for incident {incident.id}: {incident.reason}"
        )
        self.deployer.approve(run_id, ids, comment[:1000])
        self.record(
            env=incident.env,
            service=incident.service,
            kind=DecisionKind.STEP.value,
            reason=f"approved the pending deployment of run {run_id} to {incident.env} with the "
            "watchdog's own token (approval: auto, an explicit opt-in)",
            actor=Actor.AUTOMATIC.value,
            result="approved",
            incident_id=incident.id,
            evidence={"environment_ids": ids},
        )

    def _smoke(self, incident: Incident, step: Step) -> dict[str, Any]:
        """Runbook step 4: health, dry-run claim and redeem, the PWA flow."""
        svc = self.cfg.service(incident.service)
        if not svc.smoke_checks:
            return {"checks": [], "note": "no smoke checks configured"}
        base = svc.base_urls.get(incident.env)
        if base is None:
            raise StepFailed(f"services.{svc.name}.base_urls has no URL for {incident.env}")
        results = run_checks(self.http, base, svc.smoke_checks, self.clock, self.smoke_retry_delay_s)
        evidence = {"base_url": base, "checks": [r.as_dict() for r in results]}
        bad = [r for r in results if not r.ok]
        if bad:
            raise StepFailed(
                "smoke checks failed: " + "; ".join(f"{r.name}: {', '.join(r.problems)}" for r in bad),
                evidence,
            )
        return evidence

    def _post_rollback_watch(self, incident: Incident, step: Step) -> dict[str, Any] | None:
        """Runbook step 5: watch the stable release against the SLOs (≥ 30 min in prod)."""
        watch_id = step.evidence.get("watch_id")
        if watch_id is None:  # a crash right after creating the watch must not create a second one
            existing = self.store.incident_watch(incident.id, WatchKind.POST_ROLLBACK.value)
            watch_id = existing.id if existing is not None else None
        if watch_id is None:
            _, good = self._releases(incident)
            assert good is not None
            now = self.clock.now()
            length = self.cfg.env(incident.env).post_rollback_watch_s
            watch = self.store.create_watch(
                incident.env,
                incident.service,
                WatchKind.POST_ROLLBACK.value,
                good.id,
                incident.from_release_id,
                now,
                now + length,
                incident.id,
            )
            self.store.update_step(step.id, phase=StepPhase.RUNNING, now=now, evidence={"watch_id": watch.id})
            self.store.set_incident_phase(incident.id, IncidentPhase.WATCHING)
            self.record(
                env=incident.env,
                service=incident.service,
                kind=DecisionKind.WATCH_STARTED.value,
                reason=f"post-rollback watch of {good.tag} for {length:.0f}s",
                actor=Actor.AUTOMATIC.value,
                result=WatchPhase.RUNNING.value,
                watch_id=watch.id,
                incident_id=incident.id,
                to_release=good,
            )
            return None
        watch = self.store.watch(int(watch_id))
        if watch.phase == WatchPhase.RUNNING.value:
            return None
        if watch.phase != WatchPhase.SUCCESSFUL.value:
            raise StepFailed(
                f"the release did not recover: post-rollback watch {watch.phase} ({watch.summary})",
                {"watch_id": watch.id},
            )
        return {"watch_id": watch.id, "summary": watch.summary}

    def _resolve(self, incident: Incident, step: Step) -> dict[str, Any]:
        """Runbook step 6: the decision log's closing entry."""
        bad, good = self._releases(incident)
        now = self.clock.now()
        pinned = self.store.current_pin(incident.env, incident.service)
        if good is not None and (pinned is None or pinned.id != good.id):
            self.store.pin(
                incident.env,
                incident.service,
                good.id,
                now,
                Actor.AUTOMATIC.value,
                f"rolled back to it in incident {incident.id}",
            )
        steps = {s.name: s.evidence for s in self.store.steps(incident.id)}
        entry = self.store.set_incident_phase(
            incident.id,
            IncidentPhase.RESOLVED,
            now,
            complete_step=step.id,  # one transaction: a crash leaves the incident open or fully resolved
            log={
                "at": now,
                "env": incident.env,
                "service": incident.service,
                "kind": DecisionKind.ROLLBACK_RESOLVED.value,
                "reason": f"rolled back from {bad.tag} to {good.tag if good else '?'}; smoke checks "
                "passed and the post-rollback watch stayed within the SLOs",
                "actor": Actor.AUTOMATIC.value,
                "result": "resolved",
                "incident_id": incident.id,
                "from_release": bad,
                "to_release": good,
                "evidence": {
                    "rollback_run": steps.get("dispatch", {}),
                    "duration_s": now - incident.created_at,
                },
            },
        )
        if entry is not None:
            self.notify(entry)
        return {"resolved_at": now}

    # ------------------------------------------------------------------ records

    def _transition(
        self,
        incident: Incident,
        step: Step,
        phase: StepPhase,
        result: str,
        evidence: dict[str, Any],
        outcome: str | None = None,
    ) -> Step:
        """The step's new phase and its decision-log entry, in one transaction."""
        bad, good = self._releases(incident)
        now = self.clock.now()
        step, entry = self.store.step_transition(
            step.id,
            phase=phase,
            now=now,
            outcome=outcome,
            evidence=evidence or None,
            log={
                "at": now,
                "env": incident.env,
                "service": incident.service,
                "kind": DecisionKind.STEP.value,
                "reason": f"step {step.name} {result}",
                "actor": Actor.AUTOMATIC.value,
                "result": result,
                "incident_id": incident.id,
                "from_release": bad,
                "to_release": good,
                "evidence": evidence,
            },
        )
        if entry is not None:
            self.notify(entry)
        return step

    def _escalate(self, incident: Incident, reason: str, evidence: dict[str, Any]) -> None:
        bad, good = self._releases(incident)
        now = self.clock.now()
        entry = self.store.set_incident_phase(
            incident.id,
            IncidentPhase.ESCALATED,
            now,
            log={
                "at": now,
                "env": incident.env,
                "service": incident.service,
                "kind": DecisionKind.ESCALATED.value,
                "reason": f"{reason}. No further automatic rollback; follow "
                + " and ".join(ESCALATION_RUNBOOKS),
                "actor": Actor.AUTOMATIC.value,
                "result": "escalated",
                "incident_id": incident.id,
                "from_release": bad,
                "to_release": good,
                "evidence": evidence,
            },
        )
        if entry is not None:
            self.notify(entry)
