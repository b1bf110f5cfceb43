"""The runbook's steps (runbook-rollback.de.md, "Schritte"), each with its own typed state.

A handler reads the context, may call the outside world, and returns ``Done``, ``Wait``,
``Retry`` or ``Fail``; an ``ActionFailed`` it lets through becomes ``Retry`` when retryable and
``Fail`` (error) otherwise, a ``StepFailed`` becomes ``Fail``. Progress that must never be
repeated (a flag switched, a dispatch attempted) is saved with ``ctx.save`` before the next call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from actions.dampen import run_action, undo_action
from actions.github import RunInfo
from actions.smoke import run_checks
from actions.workflow_check import run_name_line
from watchdog.config import ApprovalMode
from watchdog.errors import ActionFailed, StepFailed
from watchdog.evidence import evidence_url
from watchdog.manifest import manifest_from_json, parse_manifest
from watchdog.phases import (
    Actor,
    DecisionKind,
    DecisionResult,
    IncidentPhase,
    StepPhase,
    WatchKind,
    WatchPhase,
)
from watchdog.pipeline import notices
from watchdog.pipeline.core import (
    Done,
    Entry,
    Fail,
    Outcome,
    Retry,
    StepContext,
    StepSpec,
    StepState,
    Wait,
)
from watchdog.store import Release

#: Retryable failures of a notification before the rollback goes on without it.
NOTIFY_ATTEMPTS = 3


# ---------------------------------------------------------------------------- states


class NoState(StepState):
    """A step that keeps nothing between its attempts (its result is in ``Done``'s evidence)."""


class TicketRef(BaseModel):
    number: int
    url: str


class PageRef(BaseModel):
    dedup_key: str
    severity: str


class NoticeState(StepState):
    """Notices that went out (a finished one is never sent again), and those that failed."""

    problems: dict[str, str] = Field(default_factory=dict)


class TicketAndPageState(NoticeState):
    ticket: TicketRef | None = None
    page: PageRef | None = None


class GoAheadState(StepState):
    """Nothing of its own: the veto window is the incident's creation plus the environment's window."""


class DampenState(StepState):
    #: Actions completed, in order.
    done: list[str] = Field(default_factory=list)
    #: Each completed action's evidence (what its undo needs).
    results: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: Flag states before an Unleash action switched any.
    priors: dict[str, dict[str, bool]] = Field(default_factory=dict)


class MigrationGateState(StepState):
    down: list[str] = Field(default_factory=list)  # migrations the rollback run takes down, newest first


class DispatchState(StepState):
    attempted_at: float | None = None  # the newest dispatch attempt (its answer may be lost)
    accepted_at: float | None = None  # GitHub answered 204: from here on the run is only looked up
    dispatches: int = 0
    lookups: int = 0
    ref: str | None = None
    inputs: dict[str, str] = Field(default_factory=dict)
    run_id: int | None = None
    run_url: str | None = None
    found_by_correlation_id: bool | None = None


class ApprovalState(StepState):
    reviewers_read: bool = False
    reviewers: list[str] | None = None  # None: GitHub requires no reviewers for the environment
    waiting_since: float | None = None
    reminders: int = 0
    last_reminder_at: float | None = None


class UndoState(StepState):
    undone: list[str] = Field(default_factory=list)


class WatchState(StepState):
    watch_id: int | None = None


class ResolveState(NoticeState):
    page_resolved: dict[str, Any] | None = None
    ticket_resolved: dict[str, Any] | None = None


class VetoNoticeState(NoticeState):
    text: str = "vetoed"
    page: dict[str, Any] | None = None
    ticket: dict[str, Any] | None = None


class EscalationState(NoticeState):
    reason: str = "escalated"
    page: PageRef | None = None
    ticket: dict[str, Any] | None = None
    undo_dampening: UndoState | None = None  # what the undo did, once it finished
    undo_progress: list[str] = Field(default_factory=list)  # the undo's progress while it runs


# ---------------------------------------------------------------------------- telling people


def _page(ctx: StepContext[Any], severity: str, summary: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Trigger (or update: same dedup key) the incident's PagerDuty alert."""
    pager = ctx.pipeline.pager
    assert pager is not None
    ticket = ctx.state_of(TICKET_AND_PAGE).ticket
    links = [{"href": ticket.url, "text": f"Ticket #{ticket.number}"}] if ticket else []
    key = pager.trigger(
        notices.dedup_key(ctx.incident),
        summary,
        severity=severity,
        source="rollback-watchdog",
        component=ctx.incident.service,
        group=ctx.incident.env,
        class_="deploy-rollback",
        custom_details={**notices.details(ctx.incident, *ctx.releases()), **extra},
        links=links or None,
        timestamp=ctx.now(),
    )
    return {"dedup_key": key, "severity": severity}


def _open_ticket(ctx: StepContext[Any]) -> TicketRef:
    tickets = ctx.pipeline.tickets
    assert tickets is not None
    incident = ctx.incident
    ticket = tickets.open(
        incident.correlation_id,
        notices.headline(incident, *ctx.releases()),
        notices.ticket_body(
            incident,
            *ctx.releases(),
            notices.hold(ctx.cfg, incident),
            picture_url=evidence_url(ctx.cfg.notifications.public_url, incident),
        ),
    )
    return TicketRef(number=ticket.number, url=ticket.url)


def ticket_number(ctx: StepContext[Any]) -> int | None:
    """The incident's ticket, opened now if the first step could not."""
    if ctx.pipeline.tickets is None:
        return None
    ticket = ctx.state_of(TICKET_AND_PAGE).ticket
    return ticket.number if ticket is not None else _open_ticket(ctx).number


def _ticket_update(ctx: StepContext[Any], key: str, text: str, *, close: bool = False) -> dict[str, Any]:
    """Comment on the incident's ticket once per ``key`` (and close it)."""
    tickets = ctx.pipeline.tickets
    assert tickets is not None
    number = ticket_number(ctx)
    assert number is not None
    tickets.comment(number, ctx.incident.correlation_id, key, text)
    if close:
        tickets.close(number)
    return {"number": number, "closed": close}


def send_notices(ctx: StepContext[Any], calls: dict[str, Callable[[], Any]]) -> Retry | dict[str, Any]:
    """Run each notification once (a finished one is in the step's state and skipped on resume).

    A notification never holds the rollback back: after ``NOTIFY_ATTEMPTS`` retryable failures,
    or one final failure, the pipeline goes on and the failure is in the decision log (later
    notices try again: the escalation opens a ticket the first step could not)."""
    sent: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name, call in calls.items():
        before = getattr(ctx.state, name)
        if before is not None:
            sent[name] = before.model_dump() if isinstance(before, BaseModel) else before
            continue
        try:
            result = call()
        except ActionFailed as exc:
            if exc.retryable and ctx.attempts + 1 < NOTIFY_ATTEMPTS:
                return Retry(exc.retry_after, exc)
            problems[name] = str(exc)
            continue
        ctx.save(**{name: result})
        sent[name] = result.model_dump() if isinstance(result, BaseModel) else result
    if problems:
        reason = f"{ctx.name}: {', '.join(problems)} failed ({'; '.join(problems.values())})"
        ctx.log(
            DecisionKind.STEP,
            f"{reason}; the watchdog goes on without it",
            DecisionResult.NOTIFY_FAILED,
            {"problems": problems},
        )
    return {**sent, "problems": problems}


# ---------------------------------------------------------------------------- the steps


def pin(ctx: StepContext[NoState]) -> Outcome:
    """Runbook step 1: the stable version to return to (tag, SHA, run id, build URL)."""
    from_release, to_release = ctx.releases()
    if to_release is None:
        return Fail("no stable release is pinned for this environment: nothing to roll back to")
    if to_release.id == from_release.id:
        return Fail(f"the pinned release {to_release.tag} is the failing release itself")
    return Done(
        {
            "tag": to_release.tag,
            "sha": to_release.sha,
            "run_id": to_release.run_id,
            "build_url": to_release.build_url,
        }
    )


def ticket_and_page(ctx: StepContext[TicketAndPageState]) -> Outcome:
    """The runbook's precondition "oncall informed, ticket open", at the first step of every rollback."""
    calls: dict[str, Callable[[], Any]] = {}
    if ctx.pipeline.tickets is not None:
        calls["ticket"] = lambda: _open_ticket(ctx)
    pd = ctx.cfg.incidents.pagerduty
    if ctx.pipeline.pager is not None and pd is not None:
        summary = notices.headline(ctx.incident, *ctx.releases())
        extra = notices.hold_details(ctx.cfg, ctx.incident)
        calls["page"] = lambda: PageRef.model_validate(_page(ctx, pd.rollback_severity, summary, extra))
    if not calls:
        return Done({"note": "neither a ticket nor PagerDuty is configured"})
    sent = send_notices(ctx, calls)
    return sent if isinstance(sent, Retry) else Done(sent)


def go_ahead(ctx: StepContext[GoAheadState]) -> Outcome:
    """Before anything changes: a proposed rollback (``rollback_policy: propose``) waits for an
    operator's approval; an automatic one waits out the environment's ``veto_window_s`` (its ticket
    and page announced the deadline), so a veto can still cancel it. A human's rollback goes at once."""
    incident = ctx.incident
    if incident.phase == IncidentPhase.PROPOSED:
        return Wait(reason="proposed: waiting for an operator to approve or veto it")
    deadline = notices.veto_deadline(ctx.cfg, incident)
    if deadline is not None and ctx.now() < deadline:
        return Wait(until=deadline, reason=f"the veto window is open until {notices.utc(deadline)}")
    approved = incident.evidence.get("approved_by")
    return Done({"veto_deadline": deadline, "approved_by": approved})


def dampen(ctx: StepContext[DampenState]) -> Outcome:
    """Runbook step 2: flags off, workers paused, read-only mode. Each completed action and its
    evidence (for Unleash: the flags' states before) is saved, so a restart skips it and the undo
    restores what was there; only an action cut off mid-call runs again (make them idempotent)."""
    actions = ctx.cfg.service(ctx.incident.service).dampening.get(ctx.incident.env, [])
    for action in actions:
        if action.name in ctx.state.done:
            continue

        def keep_prior(prior: dict[str, bool], name: str = action.name) -> None:
            ctx.save(priors={**ctx.state.priors, name: prior})  # before any flag is switched

        result = run_action(
            ctx.pipeline.http, action, prior=ctx.state.priors.get(action.name), on_prior=keep_prior
        )
        ctx.save(done=[*ctx.state.done, action.name], results={**ctx.state.results, action.name: result})
    return Done({"done": ctx.state.done, "results": ctx.state.results})


def _manifest(ctx: StepContext[Any], release: Release) -> tuple[dict[str, bool] | None, str]:
    """Migration id → reversible for a release, and where it came from; None when it has none.

    The deploy event's manifest wins; otherwise the manifest file at the release's tag."""
    if release.migrations is not None:
        items = manifest_from_json({"migrations": release.migrations}, f"deploy event of {release.tag}")
        return {m.id: m.reversible for m in items}, "deploy event"
    deployer = ctx.pipeline.deployer
    assert deployer is not None
    path = ctx.cfg.github.migrations.manifest_path
    text = deployer.read_file(path, release.tag)
    if text is None:
        return None, f"no {path} at {release.tag}"
    try:
        items = parse_manifest(text, f"{path} at {release.tag}")
    except ValueError as exc:
        raise StepFailed(f"{exc}: the migration status is unclear") from exc
    return {m.id: m.reversible for m in items}, f"{path} at {release.tag}"


def migration_gate(ctx: StepContext[MigrationGateState]) -> Outcome:
    """Runbook precondition and "DB-Migrationen": what did the release we leave migrate, can it go back?"""
    if not ctx.cfg.github.migrations.enabled:
        return Done({"note": "migration gate disabled"})
    if ctx.pipeline.deployer is None:
        return Fail("GitHub is not configured: the migration status cannot be read")
    from_release, to_release = ctx.releases()
    assert to_release is not None
    (at_from, from_source), (at_to, to_source) = _manifest(ctx, from_release), _manifest(ctx, to_release)
    sources = {from_release.tag: from_source, to_release.tag: to_source}
    if at_from is None and at_to is None:
        return Done({"note": "no migration manifest at either release", "down": [], "sources": sources})
    if at_from is None:
        return Fail(
            f"{from_release.tag} has no migration manifest but {to_release.tag} has: the migration status is "
            "unclear; check it by hand (restore-db.md)"
        )
    new = [mid for mid in at_from if mid not in (at_to or {})]
    irreversible = [mid for mid in new if not at_from[mid]]
    evidence = {"migrations_since_target": new, "irreversible": irreversible, "sources": sources}
    if irreversible:
        return Fail(
            f"{from_release.tag} ran irreversible migrations {', '.join(irreversible)}: no automatic code "
            "rollback; a rollback needs the DB restore (restore-db.md)",
            evidence,
        )
    return Done({**evidence, "down": list(reversed(new))})


def _inputs(ctx: StepContext[Any], to_release: Release) -> tuple[str, dict[str, str]]:
    gh = ctx.cfg.github
    incident = ctx.incident
    values = {
        "env": incident.env,
        "tag": to_release.tag,
        "sha": to_release.sha or "",
        "service": incident.service,
        "correlation_id": incident.correlation_id,
        "reason": incident.reason[:200],
    }
    inputs = {k: v.format(**values) for k, v in gh.inputs.items()}
    inputs.setdefault(gh.correlation_input, incident.correlation_id)
    down = ctx.state_of(MIGRATION_GATE).down
    if down and gh.migrations.down_input:
        inputs[gh.migrations.down_input] = ",".join(down)
    return gh.ref.format(**values), inputs


def _look_up_run(ctx: StepContext[DispatchState]) -> RunInfo | None:
    """The dispatched run, found by the correlation id in its title; for a bounded time."""
    deployer = ctx.pipeline.deployer
    assert deployer is not None
    gh = ctx.cfg.github
    st = ctx.state
    if st.accepted_at is not None and ctx.now() - st.accepted_at > gh.dispatch_lookup_timeout_s:
        raise StepFailed(
            f"GitHub accepted the dispatch of {gh.workflow} but no run carries its correlation id "
            f"{ctx.incident.correlation_id} after {st.lookups} lookups in "
            f"{ctx.now() - st.accepted_at:.0f}s; not dispatching again. Check the runs by hand, and "
            f"give the workflow a run-name that carries the input: {run_name_line(gh.correlation_input)}",
            {"lookups": st.lookups, "dispatches": st.dispatches},
        )
    ctx.save(lookups=st.lookups + 1)
    return deployer.find_run(ctx.incident.correlation_id)


def _dispatched(ctx: StepContext[DispatchState], run: RunInfo, recovered: bool) -> Done:
    ctx.save(run_id=run.id, run_url=run.html_url, found_by_correlation_id=recovered)
    return Done(
        {
            "run_id": run.id,
            "run_url": run.html_url,
            "ref": ctx.state.ref,
            "inputs": ctx.state.inputs,
            "found_by_correlation_id": recovered,
        }
    )


def dispatch(ctx: StepContext[DispatchState]) -> Outcome:
    """Runbook step 3: start the ``deploy`` workflow at the stable tag, exactly once."""
    deployer = ctx.pipeline.deployer
    if deployer is None:
        return Fail("GitHub is not configured: cannot dispatch the deploy workflow")
    _, to_release = ctx.releases()
    assert to_release is not None
    ref, inputs = _inputs(ctx, to_release)
    gh = ctx.cfg.github
    st = ctx.state
    if st.attempted_at is not None:
        # An earlier attempt may have reached GitHub: find its run before dispatching again.
        found = _look_up_run(ctx)
        if found is not None:
            return _dispatched(ctx, found, recovered=True)
        if ctx.state.accepted_at is not None:
            return Wait(reason="GitHub took the dispatch: its run shows up, it is never dispatched again")
        if ctx.now() - st.attempted_at < gh.dispatch_lookup_grace_s:
            return Wait(reason="looking for the run of a dispatch whose answer was lost")
        if st.dispatches >= gh.max_dispatch_attempts:
            return Fail(
                f"dispatched {st.dispatches} times without an answer from GitHub and no run carries "
                f"the correlation id {ctx.incident.correlation_id}: not dispatching again; check the "
                f"runs of {gh.workflow} by hand",
                {"dispatches": st.dispatches, "lookups": ctx.state.lookups},
            )
    ctx.save(attempted_at=ctx.now(), ref=ref, inputs=inputs, dispatches=st.dispatches + 1, accepted_at=None)
    try:
        run = deployer.dispatch(ref, inputs, details=True)
    except ActionFailed as exc:
        if exc.retryable or exc.status != 422:
            raise
        run = deployer.dispatch(ref, inputs, details=False)  # the server rejects return_run_details
    if run is None:
        # 204: GitHub accepted it but did not say which run; from here on it is only looked up
        ctx.save(accepted_at=ctx.now())
        run = _look_up_run(ctx)
        if run is None:
            return Wait(reason="dispatched; the run shows up in the list shortly")
    return _dispatched(ctx, run, recovered=False)


def _run_id(ctx: StepContext[Any]) -> int:
    run_id = ctx.state_of(DISPATCH).run_id
    assert run_id is not None, "the dispatch step completed without a run id"
    return run_id


def approval(ctx: StepContext[ApprovalState]) -> Outcome:
    """Stage/prod: the environment's approval of the rollback run.

    ``none``: nothing to wait for. ``auto``: the watchdog approves the pending deployment with its
    own token (an explicit opt-in, logged). ``reviewers``: wait for GitHub's required reviewers,
    remind them on the ticket every ``approval_reminder_s``; after ``approval_timeout_s`` the run
    is cancelled (it must not deploy later, unwatched) and the incident escalates."""
    incident = ctx.incident
    policy = ctx.cfg.env(incident.env)
    mode = policy.approval
    if mode is ApprovalMode.NONE:
        return Done({"mode": mode.value})
    deployer = ctx.pipeline.deployer
    assert deployer is not None
    if not ctx.state.reviewers_read:
        ctx.save(reviewers_read=True, reviewers=deployer.required_reviewers(incident.env))
    reviewers = ctx.state.reviewers
    if reviewers is None:
        return Done({"mode": mode.value, "note": f"GitHub requires no reviewers for {incident.env}"})
    run_id = _run_id(ctx)
    run = deployer.run(run_id)
    now = ctx.now()
    if run.status == "waiting":
        if ctx.state.waiting_since is None:
            ctx.save(waiting_since=now)
        started = ctx.state.waiting_since or now
        if now - started > policy.approval_timeout_s:
            deployer.cancel(run_id)
            return Fail(
                f"nobody approved rollback run {run_id} within {policy.approval_timeout_s:g}s; "
                "the run was cancelled",
                {"run_id": run_id, "run_url": run.html_url, "reviewers": reviewers},
            )
        if mode is ApprovalMode.AUTO:
            _auto_approve(ctx, run_id)
        else:
            _remind_reviewers(ctx, run, reviewers)
        return Wait(reason=f"run {run_id} waits for the {incident.env} environment's approval")
    waiting_since = ctx.state.waiting_since
    if run.completed and run.conclusion != "success" and waiting_since is not None:
        return Fail(
            f"rollback run {run_id} ended {run.conclusion} while it waited for approval "
            "(a reviewer rejected it, or it was cancelled)",
            {"run_id": run_id, "run_url": run.html_url},
        )
    if waiting_since is not None or run.completed:
        waited = now - waiting_since if waiting_since is not None else None
        return Done({"mode": mode.value, "run_id": run_id, "approved": True, "waited_s": waited})
    limit = policy.approval_timeout_s
    if now - (ctx.row.started_at or now) > limit:  # e.g. queued for ever: no runner picks it up
        deployer.cancel(run_id)
        return Fail(
            f"rollback run {run_id} did not reach its approval within {limit:g}s "
            f"(status {run.status}); the run was cancelled",
            {"run_id": run_id, "run_url": run.html_url},
        )
    return Wait(reason="queued, or in progress before the job that needs the environment")


def _remind_reviewers(ctx: StepContext[ApprovalState], run: RunInfo, reviewers: list[str]) -> None:
    """Tell the reviewers the run waits for them: at once, then every ``approval_reminder_s``."""
    incident = ctx.incident
    policy = ctx.cfg.env(incident.env)
    sent, last, now = ctx.state.reminders, ctx.state.last_reminder_at, ctx.now()
    if sent and last is not None and now - last < policy.approval_reminder_s:
        return
    text = notices.approval_reminder(
        incident, run.id, run.html_url, reviewers, sent + 1, policy.approval_timeout_s
    )
    ticket = None
    try:
        ticket = ticket_number(ctx)
        if ticket is not None:
            assert ctx.pipeline.tickets is not None
            ctx.pipeline.tickets.comment(
                ticket, incident.correlation_id, f"approval-reminder-{sent + 1}", text
            )
    except ActionFailed as exc:  # a reminder that cannot be posted is logged; the wait goes on
        ctx.pipeline.warn("approval reminder not posted", incident=incident.id, error=str(exc))
    with ctx.transition():
        ctx.save(reminders=sent + 1, last_reminder_at=now)
        ctx.log(
            DecisionKind.STEP,
            f"rollback run {run.id} waits for the {incident.env} environment's reviewers "
            f"({', '.join(reviewers) or 'none named'}); reminder {sent + 1}"
            + (f" posted on ticket #{ticket}" if ticket is not None else ""),
            DecisionResult.AWAITING_APPROVAL if sent == 0 else DecisionResult.REMINDED,
            {"run_url": run.html_url, "reviewers": reviewers, "step": ctx.name},
            at=now,
        )


def _auto_approve(ctx: StepContext[ApprovalState], run_id: int) -> None:
    """``approval: auto``: approve the pending deployment with the watchdog's own token."""
    deployer = ctx.pipeline.deployer
    assert deployer is not None
    env = ctx.incident.env
    ids = [
        int(p["environment"]["id"])
        for p in deployer.pending_deployments(run_id)
        if p.get("environment", {}).get("name") == env and p.get("current_user_can_approve")
    ]
    if not ids:
        return  # not (yet) ours to approve; the approval timeout escalates if nobody does
    deployer.approve(run_id, ids, notices.auto_approval_comment(ctx.incident))
    ctx.log(
        DecisionKind.STEP,
        f"approved the pending deployment of run {run_id} to {env} with the watchdog's own token "
        "(approval: auto, an explicit opt-in)",
        DecisionResult.APPROVED,
        {"environment_ids": ids},
    )


def follow_run(ctx: StepContext[NoState]) -> Outcome:
    """Follow the dispatched (and approved) run to its conclusion."""
    deployer = ctx.pipeline.deployer
    assert deployer is not None
    run_id = _run_id(ctx)
    run = deployer.run(run_id)
    evidence = {"run_id": run.id, "status": run.status, "conclusion": run.conclusion, "run_url": run.html_url}
    if not run.completed:
        started = ctx.row.started_at or ctx.now()
        limit = ctx.cfg.github.run_timeout_s
        if ctx.now() - started > limit:
            return Fail(f"run {run_id} did not finish within {limit:.0f}s (status {run.status})", evidence)
        return Wait(reason=f"run {run_id} is {run.status}")
    if run.conclusion != "success":
        return Fail(f"the rollback run {run_id} ended {run.conclusion}", evidence)
    return Done(evidence)


def smoke(ctx: StepContext[NoState]) -> Outcome:
    """Runbook step 4: health, dry-run claim and redeem, the PWA flow."""
    svc = ctx.cfg.service(ctx.incident.service)
    if not svc.smoke_checks:
        return Done({"checks": [], "note": "no smoke checks configured"})
    base = svc.base_urls.get(ctx.incident.env)
    if base is None:
        return Fail(f"services.{svc.name}.base_urls has no URL for {ctx.incident.env}")
    results = run_checks(
        ctx.pipeline.http, base, svc.smoke_checks, ctx.clock, ctx.pipeline.smoke_retry_delay_s
    )
    evidence = {"base_url": base, "checks": [r.as_dict() for r in results]}
    red = [r for r in results if not r.ok]
    if red:
        return Fail(
            "smoke checks failed: " + "; ".join(f"{r.name}: {', '.join(r.problems)}" for r in red),
            evidence,
        )
    return Done(evidence)


def _undo(ctx: StepContext[Any], state: UndoState, save: Callable[[UndoState], object]) -> UndoState:
    """Undo what was dampened, newest first, skipping what was undone before (by the undo step
    when the escalation undoes, too); ``save`` persists each undo as it happens."""
    incident = ctx.incident
    actions = {a.name: a for a in ctx.cfg.service(incident.service).dampening.get(incident.env, [])}
    dampened = ctx.state_of(DAMPEN)
    before = set() if ctx.name == UNDO_DAMPENING.name else set(ctx.state_of(UNDO_DAMPENING).undone)
    cut_off = [n for n in dampened.priors if n not in dampened.done]  # flags may be switched: restore
    undone = list(state.undone)
    for name in reversed(dampened.done + cut_off):
        action = actions.get(name)
        if action is None or name in undone or name in before:
            continue
        evidence = dampened.results.get(name) or (
            {"prior": dampened.priors[name]} if name in dampened.priors else None
        )
        if undo_action(ctx.pipeline.http, action, evidence) is not None:
            undone.append(name)
            save(UndoState(undone=undone))
    return UndoState(undone=undone)


def undo_dampening(ctx: StepContext[UndoState]) -> Outcome:
    """Undo the dampening after the smoke checks (kept as it is when the rollback escalates,
    unless ``undo_dampening_on_escalation``)."""
    done = _undo(ctx, ctx.state, lambda s: ctx.save(undone=s.undone))
    return Done({"undone": done.undone})


def post_rollback_watch(ctx: StepContext[WatchState]) -> Outcome:
    """Runbook step 5: watch the stable release against the SLOs (≥ 30 min in prod)."""
    incident = ctx.incident
    watch_id = ctx.state.watch_id
    if watch_id is None:  # a crash right after creating the watch must not create a second one
        existing = ctx.store.incident_watch(incident.id, WatchKind.POST_ROLLBACK.value)
        watch_id = existing.id if existing is not None else None
        if watch_id is not None:
            ctx.save(watch_id=watch_id)
    if watch_id is None:
        _, to_release = ctx.releases()
        assert to_release is not None
        now = ctx.now()
        length = ctx.cfg.env(incident.env).post_rollback_watch_s
        with ctx.transition():  # the watch, the step's pointer to it and the incident's phase, at once
            watch = ctx.store.create_watch(
                incident.env,
                incident.service,
                WatchKind.POST_ROLLBACK.value,
                to_release.id,
                incident.from_release_id,
                now,
                now + length,
                incident.id,
            )
            ctx.save(watch_id=watch.id)
            ctx.store.set_incident_phase(incident.id, IncidentPhase.WATCHING)
            ctx.log(
                DecisionKind.WATCH_STARTED,
                f"post-rollback watch of {to_release.tag} for {length:.0f}s",
                DecisionResult.RUNNING,
                watch_id=watch.id,
                from_release=None,
            )
        return Wait(until=now + length, reason=f"post-rollback watch {watch.id} runs for {length:.0f}s")
    watch = ctx.store.watch(watch_id)
    if watch.phase == WatchPhase.RUNNING:
        return Wait(reason=f"post-rollback watch {watch.id} is running")
    if watch.phase != WatchPhase.SUCCESSFUL:
        return Fail(
            f"the release did not recover: post-rollback watch {watch.phase} ({watch.summary})",
            {"watch_id": watch.id},
        )
    return Done({"watch_id": watch.id, "summary": watch.summary})


def quarantine(ctx: StepContext[Any]) -> None:
    """The release we rolled back from is quarantined in this environment (once, logged): its next
    deploy there is reported at once and rolled back without new evidence where the policy allows."""
    incident, (bad, _) = ctx.incident, ctx.releases()
    with ctx.transition():
        if ctx.store.quarantined(incident.env, incident.service, bad.tag) is not None:
            return
        row = ctx.store.quarantine(
            incident.env, incident.service, bad.tag, bad.sha, incident.id, incident.reason[:500], ctx.now()
        )
        ctx.log(
            DecisionKind.QUARANTINE,
            f"{bad.tag} quarantined in {incident.env}: a later deploy of it is reported at once and rolled "
            "back without new evidence, unless an operator lifts the quarantine with a reason",
            DecisionResult.QUARANTINED,
            {"quarantine": row.id},
            to_release=None,
        )


def resolve(ctx: StepContext[ResolveState]) -> Outcome:
    """Runbook step 6: resolve the page, update (and close) the ticket, pin the target and write the
    closing entry, which commits with the step: a crash leaves the incident open or fully resolved."""
    incident = ctx.incident
    from_release, to_release = ctx.releases()
    calls: dict[str, Callable[[], Any]] = {}
    pd = ctx.cfg.incidents.pagerduty
    pager = ctx.pipeline.pager
    if pager is not None and pd is not None and pd.resolve_on_recovery:

        def resolve_page() -> dict[str, Any]:
            pager.resolve(notices.dedup_key(incident))
            return {"dedup_key": notices.dedup_key(incident)}

        calls["page_resolved"] = resolve_page
    if ctx.pipeline.tickets is not None:
        text = notices.resolved(incident, from_release, to_release)
        close = ctx.cfg.incidents.ticket.close_on_resolve
        calls["ticket_resolved"] = lambda: _ticket_update(ctx, "resolved", text, close=close)
    sent = send_notices(ctx, calls) if calls else {}
    if isinstance(sent, Retry):
        return sent
    quarantine(ctx)
    now = ctx.now()
    pinned = ctx.store.current_pin(incident.env, incident.service)
    if to_release is not None and (pinned is None or pinned.id != to_release.id):
        reason = f"rolled back to it in incident {incident.id}"
        ctx.store.pin(incident.env, incident.service, to_release.id, now, Actor.AUTOMATIC.value, reason)
    evidence = {
        "rollback_run": ctx.state_of(DISPATCH).model_dump(include={"run_id", "run_url", "ref", "inputs"}),
        "duration_s": now - incident.created_at,
        "notices": sent,
    }
    return Done(
        {"resolved_at": now},
        incident_phase=IncidentPhase.RESOLVED,
        entry=Entry(
            DecisionKind.ROLLBACK_RESOLVED,
            notices.resolved_reason(from_release, to_release),
            DecisionResult.RESOLVED,
            evidence,
        ),
    )


def escalation_notice(ctx: StepContext[EscalationState]) -> Outcome:
    """After an escalation: the high-urgency page, the ticket update and (if configured) undoing the
    dampening. Not one of the runbook's steps: the driver runs it when an incident escalates."""
    incident = ctx.incident
    reason = ctx.state.reason
    calls: dict[str, Callable[[], Any]] = {}
    pd = ctx.cfg.incidents.pagerduty
    if ctx.pipeline.pager is not None and pd is not None:
        summary = f"ESCALATED: {notices.headline(incident, *ctx.releases())}: {reason}"
        extra = {"escalation": reason, "runbooks": list(notices.ESCALATION_RUNBOOKS)}
        calls["page"] = lambda: PageRef.model_validate(_page(ctx, pd.escalation_severity, summary, extra))
    if ctx.pipeline.tickets is not None:
        text = notices.escalation_ticket(reason)
        calls["ticket"] = lambda: _ticket_update(ctx, "escalated", text)
    if ctx.cfg.env(incident.env).undo_dampening_on_escalation:
        progress = UndoState(undone=ctx.state.undo_progress)
        calls["undo_dampening"] = lambda: _undo(ctx, progress, lambda s: ctx.save(undo_progress=s.undone))
    sent = send_notices(ctx, calls)
    if isinstance(sent, Retry):
        return sent
    if ctx.store.step(incident.id, FOLLOW_RUN.name).phase == StepPhase.SUCCESSFUL:
        quarantine(ctx)  # the rollback run did roll it back, whatever failed after
    what = ", ".join(k for k in calls if k in sent) or "nothing configured to send"
    return Done(
        sent,
        incident_phase=IncidentPhase.ESCALATED,
        entry=Entry(DecisionKind.STEP, f"escalation sent: {what}", DecisionResult.ESCALATION_SENT, sent),
    )


def veto_notice(ctx: StepContext[VetoNoticeState]) -> Outcome:
    """After a veto: the page says so and is resolved, the ticket says so and is closed. Not one of
    the runbook's steps: the driver runs it when an incident is vetoed."""
    incident = ctx.incident
    calls: dict[str, Callable[[], Any]] = {}
    pager, pd = ctx.pipeline.pager, ctx.cfg.incidents.pagerduty
    text = ctx.state.text
    if pager is not None and pd is not None:

        def page() -> dict[str, Any]:
            summary = f"VETOED: {notices.headline(incident, *ctx.releases())}: {text}"
            sent = _page(ctx, "info", summary, {"veto": text})
            pager.resolve(notices.dedup_key(incident))
            return {**sent, "resolved": True}

        calls["page"] = page
    if ctx.pipeline.tickets is not None:
        comment = f"**Vetoed — nothing was changed.** {text}"
        calls["ticket"] = lambda: _ticket_update(ctx, "vetoed", comment, close=True)
    sent = send_notices(ctx, calls)
    if isinstance(sent, Retry):
        return sent
    what = ", ".join(k for k in calls if k in sent) or "nothing configured to send"
    return Done(
        sent,
        incident_phase=IncidentPhase.VETOED,
        entry=Entry(DecisionKind.VETO, f"veto sent: {what}", DecisionResult.VETO_SENT, sent),
    )


# ---------------------------------------------------------------------------- the table

PIN = StepSpec("pin", pin, NoState)
TICKET_AND_PAGE = StepSpec("ticket_and_page", ticket_and_page, TicketAndPageState)
GO_AHEAD = StepSpec("go_ahead", go_ahead, GoAheadState)
DAMPEN = StepSpec("dampen", dampen, DampenState)
MIGRATION_GATE = StepSpec("migration_gate", migration_gate, MigrationGateState)
DISPATCH = StepSpec("dispatch", dispatch, DispatchState)
APPROVAL = StepSpec("approval", approval, ApprovalState)
FOLLOW_RUN = StepSpec("follow_run", follow_run, NoState)
SMOKE = StepSpec("smoke", smoke, NoState)
UNDO_DAMPENING = StepSpec("undo_dampening", undo_dampening, UndoState)
POST_ROLLBACK_WATCH = StepSpec("post_rollback_watch", post_rollback_watch, WatchState)
RESOLVE = StepSpec("resolve", resolve, ResolveState)
#: The step that pages and updates the ticket once an incident escalated (not one of ``RUNBOOK``).
ESCALATION = StepSpec("escalation_notice", escalation_notice, EscalationState)
#: The step that tells the page and the ticket that a human vetoed the rollback.
VETO_NOTICE = StepSpec("veto_notice", veto_notice, VetoNoticeState)

#: The runbook's steps in order (runbook-rollback.de.md, "Schritte").
RUNBOOK: tuple[StepSpec[Any], ...] = (
    PIN,
    TICKET_AND_PAGE,
    GO_AHEAD,
    DAMPEN,
    MIGRATION_GATE,
    DISPATCH,
    APPROVAL,
    FOLLOW_RUN,
    SMOKE,
    UNDO_DAMPENING,
    POST_ROLLBACK_WATCH,
    RESOLVE,
)
