"""From a decision-log entry to the notice people read: which entries are told, how urgent, in words.

The decision log is the one record of what the watchdog decided; a notice is one of its entries
told to people. Steps that change nothing for a reader (a step started, a notice sent) are not
told; milestones are (the rollback run dispatched, approved, finished; the smoke checks passed; the
post-rollback watch started). Each notice carries the evidence in numbers, the links (ticket, run,
API), the overrides a reader may still take, and the thread's history so far.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from actions.notify import (
    Button,
    EvidenceLine,
    Link,
    Notice,
    NoticeEvent,
    NoticeSeverity,
    NoticeStatus,
)
from watchdog.config import WatchdogConfig
from watchdog.evidence import evidence_url
from watchdog.phases import DecisionKind, DecisionResult, IncidentPhase, WatchPhase
from watchdog.pipeline import notices as texts
from watchdog.store import DecisionEntry, Incident, Store

#: Steps whose completion is a milestone a reader hears about.
MILESTONES = {
    "dispatch": "the rollback run was dispatched",
    "approval": "the rollback run was approved",
    "follow_run": "the rollback run finished",
    "smoke": "the smoke checks passed",
}
#: How many lines of a thread's history a notice carries.
HISTORY_LINES = 15

VETO = Button("veto", "Veto", "danger", "Cancel this rollback? Nothing will be changed.")
APPROVE = Button("approve", "Approve rollback", "primary", "Start the rollback now?")
PROMOTE = Button("promote", "Promote now", "default", "End the watch and pin this release as stable?")
ACKNOWLEDGE = Button("acknowledge", "Acknowledge", "default")


@dataclass(frozen=True)
class Told:
    """How an entry is told: its event, urgency, and where its subject stands."""

    event: NoticeEvent
    severity: NoticeSeverity
    status: NoticeStatus
    milestone: str | None = None


def classify(entry: DecisionEntry) -> Told | None:
    """How ``entry`` is told, or None when it is not (a step started, a notice delivered)."""
    kind, result = entry.kind, entry.result
    info, warning, critical = NoticeSeverity.INFO, NoticeSeverity.WARNING, NoticeSeverity.CRITICAL
    is_open, resolved, closed = NoticeStatus.OPEN, NoticeStatus.RESOLVED, NoticeStatus.CLOSED
    match kind:
        case DecisionKind.WATCH_STARTED:
            if entry.incident_id is not None:  # the post-rollback watch
                return Told(NoticeEvent.ROLLBACK_STEP, info, is_open, "post_rollback_watch")
            return Told(NoticeEvent.DEPLOY, info, is_open)
        case DecisionKind.PROMOTED:
            if result == DecisionResult.SHADOW:  # shadow mode: the pin did not move, nothing to tell
                return None
            return Told(NoticeEvent.PROMOTED, info, resolved)
        case DecisionKind.INCONCLUSIVE:
            return Told(NoticeEvent.INCONCLUSIVE, warning, closed)
        case DecisionKind.WATCH_SUPERSEDED:
            return Told(NoticeEvent.DEPLOY, info, closed)
        case DecisionKind.BLIND:
            if result == DecisionResult.SEEING:
                return Told(NoticeEvent.BLIND, info, resolved)
            return Told(NoticeEvent.BLIND, warning, is_open)
        case DecisionKind.ROLLBACK_DECIDED:
            if result == DecisionResult.PROPOSED:
                return Told(NoticeEvent.ROLLBACK_PROPOSED, warning, is_open)
            if result == DecisionResult.SHADOW_ROLLBACK:  # shadow mode: would have, nothing done
                return Told(NoticeEvent.ROLLBACK_HELD, info, closed)
            if result in (DecisionResult.WOULD_ROLL_BACK, DecisionResult.NOT_STARTED):
                return Told(NoticeEvent.ROLLBACK_HELD, warning, closed)
            return Told(NoticeEvent.ROLLBACK_STARTED, critical, is_open)
        case DecisionKind.STEP:
            step = entry.evidence.get("step")
            if result == DecisionResult.SUCCESSFUL and step in MILESTONES:
                return Told(NoticeEvent.ROLLBACK_STEP, info, is_open, str(step))
            if result == DecisionResult.AWAITING_APPROVAL:
                return Told(NoticeEvent.ROLLBACK_STEP, warning, is_open, "awaiting_approval")
            if result == DecisionResult.PAGED:  # a page-severity signal failed
                return Told(
                    NoticeEvent.BLIND if "blind" in entry.evidence else NoticeEvent.DEPLOY, warning, is_open
                )
            return None
        case DecisionKind.ROLLBACK_RESOLVED:
            return Told(NoticeEvent.ROLLBACK_RESOLVED, info, resolved)
        case DecisionKind.ESCALATED:
            return Told(NoticeEvent.ESCALATED, critical, is_open)
        case DecisionKind.VETO:
            if result == DecisionResult.VETOED:
                return Told(NoticeEvent.OVERRIDE, info, closed)
            return None  # veto_sent: the notice of the veto itself went out already
        case DecisionKind.APPROVAL:  # a proposal approved: this is where the rollback starts
            return Told(NoticeEvent.ROLLBACK_STARTED, critical, is_open)
        case DecisionKind.ACKNOWLEDGED:
            return Told(NoticeEvent.OVERRIDE, info, is_open)
        case DecisionKind.PAUSE | DecisionKind.RESUME | DecisionKind.WATCH_EXTENDED:
            return Told(NoticeEvent.OVERRIDE, info, is_open if kind == DecisionKind.PAUSE else closed)
        case DecisionKind.QUARANTINE:
            if result == DecisionResult.REDEPLOYED:
                return Told(NoticeEvent.QUARANTINE, critical, is_open)
            return Told(NoticeEvent.QUARANTINE, info, closed)
    return None


def subject_of(entry: DecisionEntry) -> str:
    """The thread an entry belongs to: its incident, else its watch, else its scope."""
    if entry.incident_id is not None:
        return f"incident-{entry.incident_id}"
    if entry.watch_id is not None:
        return f"watch-{entry.watch_id}"
    return f"{entry.env}/{entry.service}"


def _fmt(value: Any, unit: str = "") -> str | None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return None
    return f"{value:.3g}{unit}"


def _pct(value: Any) -> str | None:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return f"{100 * value:.2f} %"


def evidence_line(item: dict[str, Any]) -> EvidenceLine:
    """A signal's evidence (``SignalResult.evidence()``) as numbers a human reads."""
    inner = item.get("evidence") if isinstance(item.get("evidence"), dict) else {}
    assert isinstance(inner, dict)
    worst = inner.get("worst") if isinstance(inner.get("worst"), dict) else inner
    assert isinstance(worst, dict)
    canary = baseline = None
    if "canary_bad" in worst and "expected_canary_bad" in worst:
        canary = f"{worst['canary_bad']:g} bad" + (
            f" ({_pct(worst['canary_rate'])})" if _pct(worst.get("canary_rate")) else ""
        )
        baseline = f"{worst['expected_canary_bad']:.1f} bad expected" + (
            f" (its rate {_pct(worst['baseline_rate'])})" if _pct(worst.get("baseline_rate")) else ""
        )
    statistic = bound = None
    name = str(inner.get("statistic_name") or "")
    stat, threshold = item.get("statistic"), item.get("threshold")
    if (
        "log" in name
        and "e-value" in name
        and isinstance(stat, int | float)
        and isinstance(threshold, int | float)
    ):
        statistic = f"e-value {math.exp(min(stat, 700)):.3g}"
        bound = f"{math.exp(min(threshold, 700)):.3g} (1/α)"
    elif isinstance(stat, int | float):
        statistic = f"{name or 'statistic'} {_fmt(stat)}"
        bound = _fmt(threshold)
    value = item.get("slo_breach") or item.get("summary") or item.get("error")
    return EvidenceLine(
        signal=str(item.get("signal", "?")),
        state=str(item.get("state", "?")),
        value=str(value) if value else None,
        canary=canary,
        baseline=baseline,
        statistic=statistic,
        bound=bound,
        detector=str(item["detector"]) if item.get("detector") else None,
    )


def _evidence(entry: DecisionEntry, incident: Incident | None) -> tuple[EvidenceLine, ...]:
    failed = entry.evidence.get("failed")
    if not isinstance(failed, list) and incident is not None:
        failed = incident.evidence.get("failed")
    if isinstance(failed, list):
        return tuple(evidence_line(f) for f in failed if isinstance(f, dict))
    if entry.kind == DecisionKind.STEP and "signal" in entry.evidence:
        return (evidence_line(entry.evidence),)
    return ()


def hhmmss(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def _history(store: Store, entry: DecisionEntry) -> tuple[str, ...]:
    if entry.incident_id is None:
        return ()
    lines = [f"{hhmmss(t['at'])} {t['reason']} ({t['actor']})" for t in timeline(store, entry)]
    return tuple(lines[-HISTORY_LINES:])


def timeline(store: Store, entry: DecisionEntry) -> list[dict[str, Any]]:
    """The incident's whole record up to ``entry``, for the postmortem (steps started and notices
    delivered left out)."""
    assert entry.incident_id is not None
    return [
        {
            "at": e.at,
            "kind": e.kind.value,
            "result": e.result.value,
            "actor": e.actor,
            "reason": e.reason,
            "from": e.from_tag,
            "to": e.to_tag,
        }
        for e in store.decisions(incident_id=entry.incident_id)
        if e.id <= entry.id
        and e.kind != DecisionKind.NOTICE
        and not (e.kind == DecisionKind.STEP and e.result == DecisionResult.STARTED)
    ]


def _buttons(
    cfg: WatchdogConfig, store: Store, entry: DecisionEntry, incident: Incident | None, now: float
) -> tuple[Button, ...]:
    if incident is not None:
        phase = incident.phase
        if phase == IncidentPhase.PROPOSED:
            return (APPROVE, VETO)
        if phase == IncidentPhase.RUNNING:
            deadline = texts.veto_deadline(cfg, incident)
            return (VETO,) if deadline is not None and now < deadline else ()
        if phase in (IncidentPhase.ESCALATING, IncidentPhase.ESCALATED) and not any(
            e.kind == DecisionKind.ACKNOWLEDGED for e in store.decisions(incident_id=incident.id)
        ):
            return (ACKNOWLEDGE,)
        return ()
    if entry.watch_id is not None and entry.kind == DecisionKind.WATCH_STARTED:
        watch = store.watch(entry.watch_id)
        if watch.phase == WatchPhase.RUNNING:
            return (PROMOTE,)
    return ()


def _links(
    cfg: WatchdogConfig, store: Store, entry: DecisionEntry, incident: Incident | None
) -> tuple[Link, ...]:
    links: list[Link] = []
    if incident is not None:
        steps = {s.name: s.evidence for s in store.steps(incident.id)}
        ticket = steps.get("ticket_and_page", {}).get("ticket")
        if isinstance(ticket, dict) and ticket.get("url"):
            links.append(Link(f"Ticket #{ticket.get('number')}", str(ticket["url"])))
        run_url = steps.get("dispatch", {}).get("run_url")
        if isinstance(run_url, str) and run_url:
            links.append(Link("Rollback run", run_url))
        postmortem = store.thread_memo("postmortem", f"incident-{incident.id}")
        if postmortem.get("url"):
            links.append(Link(f"Postmortem #{postmortem.get('number')}", str(postmortem["url"])))
    base = cfg.notifications.public_url
    if base:
        base = base.rstrip("/")
        if incident is not None:
            links.append(Link("Incident in the watchdog", f"{base}/v1/incidents/{incident.id}"))
            picture = evidence_url(base, incident)
            if picture is not None:
                links.append(Link("Evidence picture", picture))
        elif entry.watch_id is not None:
            links.append(Link("Watch in the watchdog", f"{base}/v1/watches/{entry.watch_id}"))
    return tuple(links)


def _releases(store: Store, entry: DecisionEntry, incident: Incident | None) -> tuple[str | None, str | None]:
    """The release a notice is about and, in a rollback, its target. An entry's two releases mean
    different things by kind (a watch's start names the previous pin and the new release; a
    rollback the bad one and its target), so they are read from what the entry is about."""
    if incident is not None:
        target = store.release(incident.to_release_id) if incident.to_release_id else None
        return store.release(incident.from_release_id).tag, target.tag if target else None
    if entry.kind in (DecisionKind.WATCH_STARTED, DecisionKind.PROMOTED, DecisionKind.INCONCLUSIVE):
        return entry.to_tag, None
    if entry.watch_id is not None:
        return store.release(store.watch(entry.watch_id).release_id).tag, None
    return entry.from_tag, entry.to_tag


def _title(entry: DecisionEntry, told: Told, release: str, target: str) -> str:
    where = f"{entry.service} in {entry.env}"
    match told.event:
        case NoticeEvent.ROLLBACK_STARTED:
            if entry.kind == DecisionKind.APPROVAL:
                return f"Rollback of {where} approved by {entry.actor}: rolling back {release} → {target}"
            return f"Rolling back {where}: {release} → {target}"
        case NoticeEvent.ROLLBACK_PROPOSED:
            return f"Rollback proposed for {where}: {release} → {target}"
        case NoticeEvent.ROLLBACK_HELD:
            if entry.result == DecisionResult.SHADOW_ROLLBACK:
                return f"Shadow mode: would have rolled back {where}: {release} → {entry.to_tag or '?'}"
            return f"{release} failed its watch in {entry.env}; no automatic rollback ({where})"
        case NoticeEvent.ROLLBACK_RESOLVED:
            return f"Rolled back {where}: back on {target}"
        case NoticeEvent.ESCALATED:
            return f"ESCALATED: rollback of {where} needs a human"
        case NoticeEvent.DEPLOY:
            return f"Watching {release} in {entry.env} ({entry.service})"
        case NoticeEvent.PROMOTED:
            return f"{release} promoted in {entry.env} ({entry.service})"
        case NoticeEvent.INCONCLUSIVE:
            return f"Watch of {release} in {entry.env} ended inconclusive ({entry.service})"
        case NoticeEvent.BLIND:
            state = "seeing again" if told.severity == NoticeSeverity.INFO else "blind"
            return f"The watchdog is {state} on {where}"
        case NoticeEvent.QUARANTINE:
            if entry.result == DecisionResult.LIFTED:
                return f"Quarantine of {release} in {entry.env} lifted by {entry.actor} ({entry.service})"
            if entry.result == DecisionResult.QUARANTINED:
                return f"{release} quarantined in {entry.env} ({entry.service})"
            return f"Quarantined release {release} deployed again to {entry.env} ({entry.service})"
        case NoticeEvent.OVERRIDE:
            return _override_title(entry, where, release)
    if told.milestone == "post_rollback_watch":
        return f"Rolled back {where} to {target}: watching it recover"
    if entry.incident_id is not None:
        return f"Rollback of {where}: {release} → {target}"
    return f"{entry.kind.value.replace('_', ' ')}: {where}"


def _override_title(entry: DecisionEntry, where: str, release: str) -> str:
    match entry.kind:
        case DecisionKind.VETO:
            return f"Rollback of {where} vetoed by {entry.actor}: {release} stays"
        case DecisionKind.APPROVAL:
            return f"Rollback of {where} approved by {entry.actor}"
        case DecisionKind.ACKNOWLEDGED:
            return f"Escalation of {where} acknowledged by {entry.actor}"
        case DecisionKind.PAUSE:
            return f"Automatic rollbacks paused for {where} by {entry.actor}"
        case DecisionKind.RESUME:
            return f"Automatic rollbacks resumed for {where}"
        case DecisionKind.WATCH_EXTENDED:
            return f"Watch of {release} in {entry.env} extended by {entry.actor}"
    return f"{entry.kind.value.replace('_', ' ')}: {where} by {entry.actor}"


def render(cfg: WatchdogConfig, store: Store, entry: DecisionEntry, now: float) -> Notice | None:
    """The notice for ``entry``, or None when it is not told."""
    told = classify(entry)
    if told is None:
        return None
    incident = store.incident(entry.incident_id) if entry.incident_id is not None else None
    from_tag, to_tag = _releases(store, entry, incident)
    facts: dict[str, Any] = {"kind": entry.kind.value, "result": entry.result.value, "entry_id": entry.id}
    if told.milestone:
        facts["milestone"] = told.milestone
    if incident is not None:
        facts.update(incident_phase=incident.phase.value, trigger=incident.trigger)
        if told.event in (NoticeEvent.ROLLBACK_RESOLVED, NoticeEvent.ESCALATED):
            facts.update(decision_reason=incident.reason, timeline=timeline(store, entry))
    text = entry.reason
    if told.milestone in MILESTONES:
        text = f"{MILESTONES[told.milestone]}: {entry.reason}"
    if incident is not None and told.event in (NoticeEvent.ROLLBACK_STARTED, NoticeEvent.ROLLBACK_PROPOSED):
        hold = texts.hold(cfg, incident)
        if hold:
            text = f"{text}\n{hold.replace('**', '')}"
    return Notice(
        key=f"entry-{entry.id}",
        subject=subject_of(entry),
        event=told.event,
        severity=told.severity,
        status=told.status,
        at=entry.at,
        env=entry.env,
        service=entry.service,
        title=_title(entry, told, from_tag or "?", to_tag or "?")[:150],
        text=text[:3000],
        actor=entry.actor,
        release=from_tag,
        target=to_tag,
        incident_id=entry.incident_id,
        watch_id=entry.watch_id,
        correlation_id=incident.correlation_id if incident is not None else None,
        evidence=_evidence(entry, incident),
        links=_links(cfg, store, entry, incident),
        buttons=_buttons(cfg, store, entry, incident, now),
        history=_history(store, entry),
        facts=facts,
    )
