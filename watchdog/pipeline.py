"""The rollback runbook as a persisted state machine of steps.

Every step is recorded in the store before its external effect and after it, under an idempotency
key (incident, step). ``advance`` runs steps until one has to wait (a workflow run in progress, a
post-rollback watch) and returns; the next tick — possibly in a restarted process — resumes there.
A dispatch is never repeated blindly: a dispatch attempt whose answer was lost is first looked up
by its correlation id.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import structlog

from actions.dampen import run_action, undo_action
from actions.github import DeployWorkflow, RunInfo
from actions.pagerduty import PagerDuty
from actions.smoke import run_checks
from actions.tickets import IncidentTickets, Ticket
from actions.workflow_check import run_name_line
from watchdog.clock import Clock
from watchdog.config import ApprovalMode, WatchdogConfig
from watchdog.errors import ActionFailed, ActionRetryable
from watchdog.manifest import manifest_from_json, parse_manifest
from watchdog.phases import Actor, DecisionKind, IncidentPhase, StepPhase, WatchKind, WatchPhase
from watchdog.store import DecisionEntry, Incident, Release, Step, Store

log = structlog.get_logger("watchdog.pipeline")

#: The runbook's steps in order (runbook-rollback.de.md, "Schritte").
STEPS = (
    "pin",
    "ticket_and_page",
    "dampen",
    "migration_gate",
    "dispatch",
    "approval",
    "follow_run",
    "smoke",
    "undo_dampening",
    "post_rollback_watch",
    "resolve",
)

#: Retryable failures of one step before it escalates.
MAX_ATTEMPTS = 6
#: Retryable failures of a notification before the rollback goes on without it.
NOTIFY_ATTEMPTS = 3
#: The step that pages and updates the ticket once an incident escalated (not part of ``STEPS``).
ESCALATION_NOTICE = "escalation_notice"

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
        tickets: IncidentTickets | None = None,
        pager: PagerDuty | None = None,
        smoke_retry_delay_s: float = 1.0,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.deployer = deployer
        self.http = http
        self.record = record
        self.notify = notify or (lambda entry: None)
        self.tickets = tickets
        self.pager = pager
        self.smoke_retry_delay_s = smoke_retry_delay_s
        self._not_before: dict[int, float] = {}
        #: Set to stop between steps (SIGTERM): the running step finishes and is persisted first.
        self.stopping = threading.Event()

    # ------------------------------------------------------------------ driver

    def advance(self, incident_id: int) -> None:
        incident = self.store.incident(incident_id)
        if incident.phase == IncidentPhase.ESCALATING.value:
            self._send_escalation(incident)
            return
        if incident.phase in (IncidentPhase.ESCALATED.value, IncidentPhase.RESOLVED.value):
            return
        for name in STEPS:
            if self.stopping.is_set():
                return  # the next start resumes from the store
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
        errors = self._retry_later(step, exc)
        if errors >= MAX_ATTEMPTS:
            self.store.update_step(step.id, phase=StepPhase.ERROR, now=self.clock.now(), outcome=str(exc))
            self._escalate(incident, f"step {step.name} kept failing: {exc}", {"errors": errors})

    def _retry_later(self, step: Step, exc: ActionRetryable) -> int:
        """Count a retryable failure on the step and hold the step back as long as the server asked,
        else 2ⁿ s (at most 60 s). Returns the count so far."""
        errors = int(self.store.step(step.incident_id, step.name).evidence.get("retryable_errors", 0)) + 1
        now = self.clock.now()
        self.store.update_step(
            step.id,
            phase=StepPhase.RUNNING,
            now=now,
            outcome=f"retrying: {exc}",
            evidence={"retryable_errors": errors},
        )
        delay = exc.retry_after if exc.retry_after is not None else min(60.0, 2.0**errors)
        self._not_before[step.id] = now + delay
        log.warning("step retry", step=step.name, incident=step.incident_id, error=str(exc), delay_s=delay)
        return errors

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

    # ------------------------------------------------------------------ telling people

    def _dedup_key(self, incident: Incident) -> str:
        return f"rollback-watchdog/{incident.correlation_id}"

    def _headline(self, incident: Incident) -> str:
        bad, good = self._releases(incident)
        return f"Rollback of {incident.service} in {incident.env}: {bad.tag} → {good.tag if good else '?'}"

    def _details(self, incident: Incident) -> dict[str, Any]:
        bad, good = self._releases(incident)
        return {
            "incident_id": incident.id,
            "correlation_id": incident.correlation_id,
            "environment": incident.env,
            "service": incident.service,
            "trigger": incident.trigger,
            "reason": incident.reason,
            "requested_by": incident.actor,
            "from_release": {"tag": bad.tag, "sha": bad.sha, "build_url": bad.build_url},
            "to_release": None
            if good is None
            else {"tag": good.tag, "sha": good.sha, "build_url": good.build_url},
        }

    def _page(self, incident: Incident, severity: str, summary: str, extra: dict[str, Any]) -> dict[str, Any]:
        """Trigger (or update: same dedup key) the incident's PagerDuty alert."""
        assert self.pager is not None
        ticket = self.store.step(incident.id, "ticket_and_page").evidence.get("ticket") or {}
        links = [{"href": ticket["url"], "text": f"Ticket #{ticket['number']}"}] if ticket else []
        key = self.pager.trigger(
            self._dedup_key(incident),
            summary,
            severity=severity,
            source="rollback-watchdog",
            component=incident.service,
            group=incident.env,
            class_="deploy-rollback",
            custom_details={**self._details(incident), **extra},
            links=links or None,
            timestamp=self.clock.now(),
        )
        return {"dedup_key": key, "severity": severity}

    def _ticket_body(self, incident: Incident) -> str:
        d = self._details(incident)
        to = d["to_release"] or {}
        return "\n".join(
            [
                f"The rollback watchdog is rolling back **{incident.service}** in **{incident.env}**.",
                "",
                f"- from: `{d['from_release']['tag']}` ({d['from_release']['sha'] or 'sha unknown'})",
                f"- to: `{to.get('tag', '?')}` ({to.get('sha') or 'sha unknown'}) "
                f"{to.get('build_url') or ''}",
                f"- trigger: {incident.trigger}, requested by {incident.actor}",
                f"- reason: {incident.reason}",
                f"- correlation id: `{incident.correlation_id}`",
                "",
                "Every step and decision is in the decision log "
                f"(`rollback-watchdog log --incident {incident.id}`). This ticket is updated when the "
                "rollback resolves or escalates.",
            ]
        )

    def _ticket(self, incident: Incident) -> Ticket:
        assert self.tickets is not None
        return self.tickets.open(
            incident.correlation_id, self._headline(incident), self._ticket_body(incident)
        )

    def _ticket_number(self, incident: Incident) -> int | None:
        """The incident's ticket, opened now if the first step could not."""
        if self.tickets is None:
            return None
        ticket = self.store.step(incident.id, "ticket_and_page").evidence.get("ticket")
        return int(ticket["number"]) if ticket else self._ticket(incident).number

    def _ticket_and_page(self, incident: Incident, step: Step) -> dict[str, Any]:
        """The runbook's precondition "oncall informed, ticket open", at the first step of every rollback."""
        calls: dict[str, Callable[[], dict[str, Any]]] = {}
        if self.tickets is not None:
            calls["ticket"] = lambda: self._ticket_evidence(incident)
        pd = self.cfg.incidents.pagerduty
        if self.pager is not None and pd is not None:
            calls["page"] = lambda: self._page(incident, pd.rollback_severity, self._headline(incident), {})
        if not calls:
            return {"note": "neither a ticket nor PagerDuty is configured"}
        return self._notices(incident, step, calls)

    def _notices(
        self, incident: Incident, step: Step, calls: dict[str, Callable[[], dict[str, Any]]]
    ) -> dict[str, Any]:
        """Run each notification once (a finished one is in the step's evidence and skipped on resume).

        A notification never holds the rollback back: after ``NOTIFY_ATTEMPTS`` retryable failures,
        or one final failure, the pipeline goes on and the failure is in the decision log (later
        notices try again: the escalation opens a ticket the first step could not)."""
        done = {k: v for k, v in step.evidence.items() if k in calls}
        problems: dict[str, str] = {}
        for name, call in calls.items():
            if name in done:
                continue
            try:
                done[name] = call()
            except ActionRetryable as exc:
                if int(step.evidence.get("retryable_errors", 0)) + 1 < NOTIFY_ATTEMPTS:
                    raise
                problems[name] = str(exc)
            except ActionFailed as exc:
                problems[name] = str(exc)
            else:
                self.store.update_step(
                    step.id, phase=StepPhase.RUNNING, now=self.clock.now(), evidence={name: done[name]}
                )
        if problems:
            reason = f"{step.name}: {', '.join(problems)} failed ({'; '.join(problems.values())})"
            self.record(
                **self._entry(
                    incident,
                    DecisionKind.STEP,
                    f"{reason}; the watchdog goes on without it",
                    "notify_failed",
                    {"problems": problems},
                )
            )
        return {**done, "problems": problems}

    def _ticket_evidence(self, incident: Incident) -> dict[str, Any]:
        ticket = self._ticket(incident)
        return {"number": ticket.number, "url": ticket.url}

    def _ticket_update(
        self, incident: Incident, key: str, text: str, *, close: bool = False
    ) -> dict[str, Any]:
        """Comment on the incident's ticket once per ``key`` (and close it)."""
        assert self.tickets is not None
        number = self._ticket_number(incident)
        assert number is not None
        self.tickets.comment(number, incident.correlation_id, key, text)
        if close:
            self.tickets.close(number)
        return {"number": number, "closed": close}

    def _dampen(self, incident: Incident, step: Step) -> dict[str, Any]:
        """Runbook step 2: flags off, workers paused, read-only mode. Each completed action and its
        evidence (for Unleash: the flags' states before) is recorded, so a restart skips it and the
        undo restores what was there; only an action cut off mid-call runs again (make them idempotent)."""
        actions = self.cfg.service(incident.service).dampening.get(incident.env, [])
        done = list(step.evidence.get("done", []))
        results = dict(step.evidence.get("results", {}))
        priors = dict(step.evidence.get("priors", {}))
        for action in actions:
            if action.name in done:
                continue

            def keep_prior(prior: dict[str, bool], name: str = action.name) -> None:
                priors[name] = prior  # persisted before any flag is switched
                self.store.update_step(
                    step.id, phase=StepPhase.RUNNING, now=self.clock.now(), evidence={"priors": priors}
                )

            results[action.name] = run_action(
                self.http, action, prior=priors.get(action.name), on_prior=keep_prior
            )
            done.append(action.name)
            self.store.update_step(
                step.id,
                phase=StepPhase.RUNNING,
                now=self.clock.now(),
                evidence={"done": done, "results": results},
            )
        return {"done": done, "results": results}

    def _undo_dampening(self, incident: Incident, step: Step) -> dict[str, Any]:
        """Undo what was dampened, newest first (kept as it is when the rollback escalates, unless
        ``undo_dampening_on_escalation``). Runs in this step, or in the escalation notice."""
        actions = {a.name: a for a in self.cfg.service(incident.service).dampening.get(incident.env, [])}
        dampen = self.store.step(incident.id, "dampen").evidence
        results = dampen.get("results", {})
        priors = dampen.get("priors", {})
        undone = list(step.evidence.get("undone", []))
        before: set[str] = set()  # the escalation's undo skips what the undo step did before it failed
        if step.name != "undo_dampening":
            before = set(self.store.step(incident.id, "undo_dampening").evidence.get("undone", []))
        done = list(dampen.get("done", []))
        cut_off = [n for n in priors if n not in done]  # flags may be switched: restore them too
        for name in reversed(done + cut_off):
            action = actions.get(name)
            if action is None or name in undone or name in before:
                continue
            evidence = results.get(name) or ({"prior": priors[name]} if name in priors else None)
            if undo_action(self.http, action, evidence) is not None:
                undone.append(name)
                self.store.update_step(
                    step.id, phase=StepPhase.RUNNING, now=self.clock.now(), evidence={"undone": undone}
                )
        return {"undone": undone}

    def _manifest(self, release: Release) -> tuple[dict[str, bool] | None, str]:
        """Migration id → reversible for a release, and where it came from; None when it has none.

        The deploy event's manifest wins; otherwise the manifest file at the release's tag."""
        if release.migrations is not None:
            items = manifest_from_json({"migrations": release.migrations}, f"deploy event of {release.tag}")
            return {m.id: m.reversible for m in items}, "deploy event"
        assert self.deployer is not None
        path = self.cfg.github.migrations.manifest_path
        text = self.deployer.read_file(path, release.tag)
        if text is None:
            return None, f"no {path} at {release.tag}"
        try:
            items = parse_manifest(text, f"{path} at {release.tag}")
        except ValueError as exc:
            raise StepFailed(f"{exc}: the migration status is unclear") from exc
        return {m.id: m.reversible for m in items}, f"{path} at {release.tag}"

    def _migration_gate(self, incident: Incident, step: Step) -> dict[str, Any]:
        """Runbook precondition and "DB-Migrationen": what the bad release migrated, and can it go back?"""
        if not self.cfg.github.migrations.enabled:
            return {"note": "migration gate disabled"}
        if self.deployer is None:
            raise StepFailed("GitHub is not configured: the migration status cannot be read")
        bad, good = self._releases(incident)
        assert good is not None
        (at_bad, bad_source), (at_good, good_source) = self._manifest(bad), self._manifest(good)
        sources = {bad.tag: bad_source, good.tag: good_source}
        if at_bad is None and at_good is None:
            return {"note": "no migration manifest at either release", "down": [], "sources": sources}
        if at_bad is None:
            raise StepFailed(
                f"{bad.tag} has no migration manifest but {good.tag} has: the migration status is "
                "unclear; check it by hand (restore-db.md)"
            )
        new = [mid for mid in at_bad if mid not in (at_good or {})]
        irreversible = [mid for mid in new if not at_bad[mid]]
        evidence = {"migrations_since_target": new, "irreversible": irreversible, "sources": sources}
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
        gh = self.cfg.github
        ev = step.evidence
        dispatches = int(ev.get("dispatches", 0))
        if ev.get("attempted_at") is not None:
            # An earlier attempt may have reached GitHub: find its run before dispatching again.
            found = self._look_up_run(incident, step)
            if found is not None:
                return self._dispatched(found, ref, inputs, recovered=True)
            if ev.get("accepted_at") is not None:
                return None  # GitHub took the dispatch: its run shows up, it is never dispatched again
            if self.clock.now() - float(ev["attempted_at"]) < gh.dispatch_lookup_grace_s:
                return None
            if dispatches >= gh.max_dispatch_attempts:
                raise StepFailed(
                    f"dispatched {dispatches} times without an answer from GitHub and no run carries "
                    f"the correlation id {incident.correlation_id}: not dispatching again; check the "
                    f"runs of {gh.workflow} by hand",
                    {"dispatches": dispatches, "lookups": int(ev.get("lookups", 0))},
                )
        self.store.update_step(
            step.id,
            phase=StepPhase.RUNNING,
            now=self.clock.now(),
            attempt=True,
            evidence={
                "attempted_at": self.clock.now(),
                "ref": ref,
                "inputs": inputs,
                "dispatches": dispatches + 1,
                "accepted_at": None,
            },
        )
        try:
            run = self.deployer.dispatch(ref, inputs, details=True)
        except ActionFailed as exc:
            if isinstance(exc, ActionRetryable) or "422" not in str(exc):
                raise
            run = self.deployer.dispatch(ref, inputs, details=False)  # server rejects return_run_details
        if run is None:
            # 204: GitHub accepted it but did not say which run; from here on it is only looked up
            self.store.update_step(
                step.id,
                phase=StepPhase.RUNNING,
                now=self.clock.now(),
                evidence={"accepted_at": self.clock.now()},
            )
            run = self._look_up_run(incident, self.store.step(incident.id, step.name))
            if run is None:
                return None  # dispatched; the run shows up in the list shortly
        return self._dispatched(run, ref, inputs, recovered=False)

    def _look_up_run(self, incident: Incident, step: Step) -> RunInfo | None:
        """The dispatched run, found by the correlation id in its title; for a bounded time."""
        assert self.deployer is not None
        gh = self.cfg.github
        lookups = int(step.evidence.get("lookups", 0))
        accepted_at = step.evidence.get("accepted_at")
        if accepted_at is not None and self.clock.now() - float(accepted_at) > gh.dispatch_lookup_timeout_s:
            raise StepFailed(
                f"GitHub accepted the dispatch of {gh.workflow} but no run carries its correlation id "
                f"{incident.correlation_id} after {lookups} lookups in "
                f"{self.clock.now() - float(accepted_at):.0f}s; not dispatching again. Check the runs "
                f"by hand, and give the workflow a run-name that carries the input: "
                f"{run_name_line(gh.correlation_input)}",
                {"lookups": lookups, "dispatches": int(step.evidence.get("dispatches", 0))},
            )
        self.store.update_step(
            step.id, phase=StepPhase.RUNNING, now=self.clock.now(), evidence={"lookups": lookups + 1}
        )
        return self.deployer.find_run(incident.correlation_id)

    @staticmethod
    def _dispatched(run: RunInfo, ref: str, inputs: dict[str, str], recovered: bool) -> dict[str, Any]:
        return {
            "run_id": run.id,
            "run_url": run.html_url,
            "ref": ref,
            "inputs": inputs,
            "found_by_correlation_id": recovered,
        }

    def _run_id(self, incident: Incident) -> int:
        return int(self.store.step(incident.id, "dispatch").evidence["run_id"])

    def _approval(self, incident: Incident, step: Step) -> dict[str, Any] | None:
        """Stage/prod: the environment's approval of the rollback run.

        ``none``: nothing to wait for. ``auto``: the watchdog approves the pending deployment with its
        own token (an explicit opt-in, logged). ``reviewers``: wait for GitHub's required reviewers,
        remind them on the ticket every ``approval_reminder_s``; after ``approval_timeout_s`` the run
        is cancelled (it must not deploy later, unwatched) and the incident escalates."""
        mode = self.cfg.env(incident.env).approval
        if mode is ApprovalMode.NONE:
            return {"mode": mode.value}
        assert self.deployer is not None
        ev = step.evidence
        if "reviewers" not in ev:
            reviewers = self.deployer.required_reviewers(incident.env)
            self.store.update_step(
                step.id, phase=StepPhase.RUNNING, now=self.clock.now(), evidence={"reviewers": reviewers}
            )
            ev = {**ev, "reviewers": reviewers}
        if ev["reviewers"] is None:
            return {"mode": mode.value, "note": f"GitHub requires no reviewers for {incident.env}"}
        run_id = self._run_id(incident)
        run = self.deployer.run(run_id)
        now = self.clock.now()
        if run.status == "waiting":
            if ev.get("waiting_since") is None:
                self.store.update_step(
                    step.id, phase=StepPhase.RUNNING, now=now, evidence={"waiting_since": now}
                )
            started = float(ev.get("waiting_since") or now)
            policy = self.cfg.env(incident.env)
            if now - started > policy.approval_timeout_s:
                self.deployer.cancel(run_id)
                raise StepFailed(
                    f"nobody approved rollback run {run_id} within {policy.approval_timeout_s:g}s; "
                    "the run was cancelled",
                    {"run_id": run_id, "run_url": run.html_url, "reviewers": ev["reviewers"]},
                )
            if mode is ApprovalMode.AUTO:
                self._auto_approve(incident, run_id)
            else:
                self._remind_reviewers(incident, step, run, list(ev["reviewers"]))
            return None
        if run.completed and run.conclusion != "success" and ev.get("waiting_since") is not None:
            raise StepFailed(
                f"rollback run {run_id} ended {run.conclusion} while it waited for approval "
                "(a reviewer rejected it, or it was cancelled)",
                {"run_id": run_id, "run_url": run.html_url},
            )
        if ev.get("waiting_since") is not None or run.completed:
            waited = now - float(ev["waiting_since"]) if ev.get("waiting_since") else None
            return {"mode": mode.value, "run_id": run_id, "approved": True, "waited_s": waited}
        limit = self.cfg.env(incident.env).approval_timeout_s
        if now - (step.started_at or now) > limit:  # e.g. queued for ever: no runner picks it up
            self.deployer.cancel(run_id)
            raise StepFailed(
                f"rollback run {run_id} did not reach its approval within {limit:g}s "
                f"(status {run.status}); the run was cancelled",
                {"run_id": run_id, "run_url": run.html_url},
            )
        return None  # queued, or in progress before the job that needs the environment

    def _remind_reviewers(self, incident: Incident, step: Step, run: RunInfo, reviewers: list[str]) -> None:
        """Tell the reviewers the run waits for them: at once, then every ``approval_reminder_s``."""
        policy = self.cfg.env(incident.env)
        sent = int(step.evidence.get("reminders", 0))
        last = step.evidence.get("last_reminder_at")
        now = self.clock.now()
        if sent and last is not None and now - float(last) < policy.approval_reminder_s:
            return
        mentions = " ".join(f"@{r}" for r in reviewers) or "reviewers"
        text = (
            f"{mentions}: rollback run {run.id} to **{incident.env}** waits for your approval: "
            f"{run.html_url} (reminder {sent + 1}; the run is cancelled and the incident escalated if "
            f"nobody approves within {policy.approval_timeout_s:g}s of the first request)"
        )
        ticket = None
        try:
            ticket = self._ticket_number(incident)
            if ticket is not None:
                assert self.tickets is not None
                self.tickets.comment(ticket, incident.correlation_id, f"approval-reminder-{sent + 1}", text)
        except ActionFailed as exc:  # a reminder that cannot be posted is logged; the wait goes on
            log.warning("approval reminder not posted", incident=incident.id, error=str(exc))
        _, entry = self.store.step_transition(
            step.id,
            phase=StepPhase.RUNNING,
            now=now,
            evidence={"reminders": sent + 1, "last_reminder_at": now},
            log=self._entry(
                incident,
                DecisionKind.STEP,
                f"rollback run {run.id} waits for the {incident.env} environment's reviewers "
                f"({', '.join(reviewers) or 'none named'}); reminder {sent + 1}"
                + (f" posted on ticket #{ticket}" if ticket is not None else ""),
                "awaiting_approval" if sent == 0 else "reminded",
                {"run_url": run.html_url, "reviewers": reviewers},
                at=now,
            ),
        )
        if entry is not None:
            self.notify(entry)

    def _auto_approve(self, incident: Incident, run_id: int) -> None:
        """``approval: auto``: approve the pending deployment with the watchdog's own token."""
        assert self.deployer is not None
        pending = self.deployer.pending_deployments(run_id)
        ids = [
            int(p["environment"]["id"])
            for p in pending
            if p.get("environment", {}).get("name") == incident.env and p.get("current_user_can_approve")
        ]
        if not ids:
            return  # not (yet) ours to approve; the approval timeout escalates if nobody does
        comment = (
            f"approved by rollback-watchdog (approval: auto) for incident {incident.id}: {incident.reason}"
        )
        self.deployer.approve(run_id, ids, comment[:1000])
        self.record(
            **self._entry(
                incident,
                DecisionKind.STEP,
                f"approved the pending deployment of run {run_id} to {incident.env} with the "
                "watchdog's own token (approval: auto, an explicit opt-in)",
                "approved",
                {"environment_ids": ids},
            )
        )

    def _follow_run(self, incident: Incident, step: Step) -> dict[str, Any] | None:
        """Follow the dispatched (and approved) run to its conclusion."""
        assert self.deployer is not None
        run_id = self._run_id(incident)
        run = self.deployer.run(run_id)
        evidence = {
            "run_id": run.id,
            "status": run.status,
            "conclusion": run.conclusion,
            "run_url": run.html_url,
        }
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
                **self._entry(
                    incident,
                    DecisionKind.WATCH_STARTED,
                    f"post-rollback watch of {good.tag} for {length:.0f}s",
                    WatchPhase.RUNNING.value,
                    watch_id=watch.id,
                    from_release=None,
                )
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
        """Runbook step 6: resolve the page, update (and close) the ticket, write the closing entry."""
        bad, good = self._releases(incident)
        calls: dict[str, Callable[[], dict[str, Any]]] = {}
        pd = self.cfg.incidents.pagerduty
        if self.pager is not None and pd is not None and pd.resolve_on_recovery:
            calls["page_resolved"] = lambda: self._resolve_page(incident)
        if self.tickets is not None:
            text = (
                f"Resolved: {incident.service} in {incident.env} is back on `{good.tag if good else '?'}`. "
                "The smoke checks passed and the post-rollback watch stayed within the SLOs. "
                f"Next: the postmortem, and a fix rolled forward. `{bad.tag}` is marked failed and is "
                "never a rollback target."
            )
            close = self.cfg.incidents.ticket.close_on_resolve
            calls["ticket_resolved"] = lambda: self._ticket_update(incident, "resolved", text, close=close)
        notices = self._notices(incident, step, calls) if calls else {}
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
            log=self._entry(
                incident,
                DecisionKind.ROLLBACK_RESOLVED,
                f"rolled back from {bad.tag} to {good.tag if good else '?'}; smoke checks "
                "passed and the post-rollback watch stayed within the SLOs",
                "resolved",
                {
                    "rollback_run": steps.get("dispatch", {}),
                    "duration_s": now - incident.created_at,
                    "notices": notices,
                },
                at=now,
            ),
        )
        if entry is not None:
            self.notify(entry)
        return {"resolved_at": now}

    def _resolve_page(self, incident: Incident) -> dict[str, Any]:
        assert self.pager is not None
        self.pager.resolve(self._dedup_key(incident))
        return {"dedup_key": self._dedup_key(incident)}

    # ------------------------------------------------------------------ records

    def _entry(
        self,
        incident: Incident,
        kind: DecisionKind,
        reason: str,
        result: str,
        evidence: dict[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """The fields of an automatic decision-log entry about ``incident``, from its bad release to its
        target (``extra`` overrides any), for ``record`` or for a transaction that writes it."""
        bad, good = self._releases(incident)
        return {
            "at": self.clock.now(),
            "env": incident.env,
            "service": incident.service,
            "kind": kind.value,
            "reason": reason,
            "actor": Actor.AUTOMATIC.value,
            "result": result,
            "incident_id": incident.id,
            "from_release": bad,
            "to_release": good,
            "evidence": evidence or {},
            **extra,
        }

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
        now = self.clock.now()
        step, entry = self.store.step_transition(
            step.id,
            phase=phase,
            now=now,
            outcome=outcome,
            evidence=evidence or None,
            log=self._entry(
                incident, DecisionKind.STEP, f"step {step.name} {result}", result, evidence, at=now
            ),
        )
        if entry is not None:
            self.notify(entry)
        return step

    def _escalate(self, incident: Incident, reason: str, evidence: dict[str, Any]) -> None:
        """Stop automation and call humans: the decision first, then the page and the ticket update.

        The incident is ``escalating`` until the notices went out, so a crash in between sends them
        on the next tick rather than never."""
        now = self.clock.now()
        text = f"{reason}. No further automatic rollback; follow " + " and ".join(ESCALATION_RUNBOOKS)
        notice = self.store.step(incident.id, ESCALATION_NOTICE)
        self.store.update_step(notice.id, phase=StepPhase.RUNNING, now=now, evidence={"reason": text})
        entry = self.store.set_incident_phase(
            incident.id,
            IncidentPhase.ESCALATING,
            now,
            log=self._entry(incident, DecisionKind.ESCALATED, text, "escalated", evidence, at=now),
        )
        if entry is not None:
            self.notify(entry)
        self._send_escalation(self.store.incident(incident.id))

    def _send_escalation(self, incident: Incident) -> None:
        """The high-urgency page, the ticket update and (if configured) undoing the dampening."""
        step = self.store.step(incident.id, ESCALATION_NOTICE)
        now = self.clock.now()
        if now < self._not_before.get(step.id, 0.0):
            return
        reason = str(step.evidence.get("reason", "escalated"))
        calls: dict[str, Callable[[], dict[str, Any]]] = {}
        pd = self.cfg.incidents.pagerduty
        if self.pager is not None and pd is not None:
            summary = f"ESCALATED: {self._headline(incident)}: {reason}"
            extra = {"escalation": reason, "runbooks": list(ESCALATION_RUNBOOKS)}
            calls["page"] = lambda: self._page(incident, pd.escalation_severity, summary, extra)
        if self.tickets is not None:
            text = f"**Escalated — a human must take over.** {reason}"
            calls["ticket"] = lambda: self._ticket_update(incident, "escalated", text)
        if self.cfg.env(incident.env).undo_dampening_on_escalation:
            calls["undo_dampening"] = lambda: self._undo_dampening(incident, step)
        try:
            notices = self._notices(incident, step, calls)
        except ActionRetryable as exc:  # _notices gives up on its own after NOTIFY_ATTEMPTS
            self._retry_later(step, exc)
            return
        entry = self.store.set_incident_phase(
            incident.id,
            IncidentPhase.ESCALATED,
            now,
            complete_step=step.id,
            log=self._entry(
                incident,
                DecisionKind.STEP,
                "escalation sent: "
                + (", ".join(k for k in calls if k in notices) or "nothing configured to send"),
                "escalation_sent",
                notices,
                at=now,
            ),
        )
        if entry is not None:
            self.notify(entry)
