"""What the rollback tells people: the page, the ticket, its comments. Text only, no effects."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from watchdog.config import WatchdogConfig
from watchdog.phases import Actor, IncidentPhase
from watchdog.store import Incident, Release

ESCALATION_RUNBOOKS = ("docs/runbooks/incident.md (Incident Response)", "restore-db.md")


def dedup_key(incident: Incident) -> str:
    """The incident's PagerDuty alert (every page of one rollback updates the same alert)."""
    return f"rollback-watchdog/{incident.correlation_id}"


def headline(incident: Incident, from_release: Release, to_release: Release | None) -> str:
    target = to_release.tag if to_release else "?"
    return f"Rollback of {incident.service} in {incident.env}: {from_release.tag} → {target}"


def _release(release: Release) -> dict[str, Any]:
    return {"tag": release.tag, "sha": release.sha, "build_url": release.build_url}


def details(incident: Incident, from_release: Release, to_release: Release | None) -> dict[str, Any]:
    """The facts of the rollback, for the page's custom details."""
    return {
        "incident_id": incident.id,
        "correlation_id": incident.correlation_id,
        "environment": incident.env,
        "service": incident.service,
        "trigger": incident.trigger,
        "reason": incident.reason,
        "requested_by": incident.actor,
        "from_release": _release(from_release),
        "to_release": None if to_release is None else _release(to_release),
    }


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def veto_deadline(cfg: WatchdogConfig, incident: Incident) -> float | None:
    """Until when a veto cancels this rollback: only an automatic one, in an environment with a veto
    window, that was not proposed (an approved proposal already had its human)."""
    if incident.actor != Actor.AUTOMATIC.value or incident.evidence.get("rollback_policy") == "propose":
        return None
    window = cfg.env(incident.env).veto_window_s
    return incident.created_at + window if window > 0 else None


def hold(cfg: WatchdogConfig, incident: Incident) -> str | None:
    """What humans can still do before the rollback changes anything, for the ticket and the page."""
    how = f"`rollback-watchdog veto --incident {incident.id}` or `POST /v1/incidents/{incident.id}/veto`"
    if incident.phase == IncidentPhase.PROPOSED:
        return (
            f"**Proposed, not started**: an operator approves it with `rollback-watchdog approve --incident "
            f"{incident.id}` (or `POST /v1/incidents/{incident.id}/approve`), or vetoes it with {how}."
        )
    deadline = veto_deadline(cfg, incident)
    if deadline is None:
        return None
    return f"**Veto window**: nothing is changed before {utc(deadline)}; until then {how} cancels it."


def hold_details(cfg: WatchdogConfig, incident: Incident) -> dict[str, Any]:
    deadline = veto_deadline(cfg, incident)
    details: dict[str, Any] = {}
    if deadline is not None:
        details["veto_until"] = utc(deadline)
    if incident.phase == IncidentPhase.PROPOSED:
        details["proposed"] = "waiting for an operator's approval"
    hint = hold(cfg, incident)
    if hint is not None:
        details["what_you_can_do"] = hint
    return details


def ticket_body(
    incident: Incident,
    from_release: Release,
    to_release: Release | None,
    hold_line: str | None = None,
    *,
    picture_url: str | None = None,
) -> str:
    to = _release(to_release) if to_release else {}
    return "\n".join(
        [
            *([hold_line, ""] if hold_line else []),
            f"The rollback watchdog is rolling back **{incident.service}** in **{incident.env}**.",
            "",
            f"- from: `{from_release.tag}` ({from_release.sha or 'sha unknown'})",
            f"- to: `{to.get('tag', '?')}` ({to.get('sha') or 'sha unknown'}) {to.get('build_url') or ''}",
            f"- trigger: {incident.trigger}, requested by {incident.actor}",
            f"- reason: {incident.reason}",
            f"- correlation id: `{incident.correlation_id}`",
            *(
                [f"- evidence picture: {picture_url} (the API; a viewer token opens it)"]
                if picture_url
                else []
            ),
            "",
            "Every step and decision is in the decision log "
            f"(`rollback-watchdog log --incident {incident.id}`). This ticket is updated when the "
            "rollback resolves or escalates.",
        ]
    )


def resolved(incident: Incident, from_release: Release, to_release: Release | None) -> str:
    return (
        f"Resolved: {incident.service} in {incident.env} is back on "
        f"`{to_release.tag if to_release else '?'}`. The smoke checks passed and the post-rollback "
        f"watch stayed within the SLOs. Next: the postmortem, and a fix rolled forward. "
        f"`{from_release.tag}` is marked failed and is never a rollback target."
    )


def resolved_reason(from_release: Release, to_release: Release | None) -> str:
    return (
        f"rolled back from {from_release.tag} to {to_release.tag if to_release else '?'}; smoke checks "
        "passed and the post-rollback watch stayed within the SLOs"
    )


def escalation(reason: str) -> str:
    return f"{reason}. No further automatic rollback; follow " + " and ".join(ESCALATION_RUNBOOKS)


def escalation_ticket(reason: str) -> str:
    return f"**Escalated — a human must take over.** {reason}"


def approval_reminder(
    incident: Incident, run_id: int, run_url: str, reviewers: list[str], n: int, timeout_s: float
) -> str:
    mentions = " ".join(f"@{r}" for r in reviewers) or "reviewers"
    return (
        f"{mentions}: rollback run {run_id} to **{incident.env}** waits for your approval: "
        f"{run_url} (reminder {n}; the run is cancelled and the incident escalated if nobody "
        f"approves within {timeout_s:g}s of the first request)"
    )


def auto_approval_comment(incident: Incident) -> str:
    """GitHub's review comment for ``approval: auto`` (GitHub keeps at most 1,000 characters)."""
    return f"approved by rollback-watchdog (approval: auto) for incident {incident.id}: {incident.reason}"[
        :1000
    ]
