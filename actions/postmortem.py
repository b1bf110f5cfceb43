"""The runbook's "Nacharbeiten": a postmortem issue when a rollback ends, pre-filled from the record.

When a rollback resolves (or escalates to humans) the watchdog opens one GitHub issue per incident:
the timeline from the decision log (times, artefacts, the reason with its evidence, each step, who
overrode what), links to the incident ticket and the rollback run, and the checklist the runbook
asks for — root cause, the roll-forward fix deployed with the normal, watched deploy, monitoring and
runbook updates. It is a notifier like the others (delivered from the outbox, retried, recorded),
and idempotent: the issue's title carries the incident's correlation id with ``-postmortem``, so a
second delivery finds the first issue instead of opening another.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from actions.notify import Notice, NoticeEvent
from actions.tickets import IncidentTickets

__all__ = ["PostmortemNotifier", "postmortem_body"]

CHECKLIST = (
    "Root cause found and written down (what in the release caused it, and why the tests let it through)",
    "Roll-forward fix released with the normal deploy, watched by the watchdog like any release",
    "Monitoring updated: would a signal have caught it sooner, or with less traffic?",
    "Runbook updated where the rollback needed a human or took longer than it should have",
    "Quarantine of the rolled-back release lifted only with a reason, if ever",
)


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def postmortem_body(notice: Notice) -> str:
    """The issue's body, from the notice of the rollback's end (its facts carry the timeline)."""
    ended = "resolved" if notice.event == NoticeEvent.ROLLBACK_RESOLVED else "escalated to humans"
    timeline: list[Mapping[str, Any]] = list(notice.facts.get("timeline") or [])
    overrides = [t for t in timeline if t.get("actor") not in (None, "watchdog")]
    lines = [
        f"Postmortem of the rollback of **{notice.service}** in **{notice.env}**, which {ended} "
        f"at {_utc(notice.at)}.",
        "",
        f"- released: `{notice.release or '?'}`, rolled back to: `{notice.target or '?'}`",
        f"- correlation id: `{notice.correlation_id or notice.subject}`",
        f"- trigger: {notice.facts.get('trigger', '?')}",
        f"- why: {notice.facts.get('decision_reason') or notice.text}",
    ]
    for link in notice.links:
        lines.append(f"- {link.text}: {link.url}")
    if notice.evidence:
        lines += ["", "## Evidence", ""]
        lines += [f"- {e.summary()}" for e in notice.evidence]
    lines += [
        "",
        "## Timeline (from the decision log)",
        "",
        "| time (UTC) | what | result | who |",
        "|---|---|---|---|",
    ]
    for t in timeline:
        when = _utc(float(t["at"])) if isinstance(t.get("at"), int | float) else "?"
        what = _cell(t.get("reason", ""))
        artefacts = " → ".join(str(t[k]) for k in ("from", "to") if t.get(k))
        if artefacts:
            what = f"{what} ({artefacts})"
        lines.append(f"| {when} | {what} | {t.get('result', '')} | {_cell(t.get('actor', ''))} |")
    lines += ["", "## Overrides by humans", ""]
    lines += [f"- {_utc(float(t['at']))}: {t['actor']}: {_cell(t['reason'])}" for t in overrides] or [
        "- none"
    ]
    lines += ["", "## Follow-up", ""]
    lines += [f"- [ ] {item}" for item in CHECKLIST]
    lines += [
        "",
        f"The whole record: `rollback-watchdog log --incident {notice.incident_id}`.",
    ]
    return "\n".join(lines)


class PostmortemNotifier:
    """Opens the postmortem issue in the tickets' repository (labels from ``incidents.postmortem``)."""

    def __init__(self, name: str, tickets: IncidentTickets) -> None:
        self.name = name
        self.tickets = tickets

    @staticmethod
    def _key(notice: Notice) -> str:
        return f"{notice.correlation_id or notice.subject}-postmortem"

    def deliver(self, notice: Notice, memo: Mapping[str, Any]) -> dict[str, Any]:
        if notice.event not in (NoticeEvent.ROLLBACK_RESOLVED, NoticeEvent.ESCALATED) or memo.get("number"):
            return dict(memo)
        title = (
            f"Postmortem: rollback of {notice.service} in {notice.env} ({notice.release} → {notice.target})"
        )
        ticket = self.tickets.open(self._key(notice), title, postmortem_body(notice))
        return {"number": ticket.number, "url": ticket.url}

    def recover(self, notice: Notice, memo: Mapping[str, Any]) -> dict[str, Any] | None:
        found = self.tickets.find(self._key(notice))
        return None if found is None else {"number": found.number, "url": found.url}
