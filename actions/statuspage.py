"""Telling customers on Atlassian Statuspage that a bad release is being rolled back.

The status page is for customers, so only what they notice reaches it: a rollback that *started*
in one of the configured environments (prod by default) opens an incident (``identified``, the
service's component degraded), the start of the post-rollback watch moves it to ``monitoring``,
an escalation says engineers are on it, and the resolution (or a veto: nothing was changed after
all) resolves it with the component ``operational`` again. Proposals, held rollbacks, deploys and
promotions are not incidents yet and send nothing; neither does a step that would not change what
the page says. The words are plain and fixed: no evidence, release names or internal links.

Each incident's name ends in ``[rw-<correlation id>]`` so that :meth:`StatuspageNotifier.recover`
finds it again among the unresolved incidents after an answer was lost.

Statuspage's answers map onto the watchdog's errors as its documentation says to retry: 2xx is
done; 420 and 429 (its rate limit, with ``Retry-After``), 5xx, timeouts and network errors may pass
later (``ActionRetryable``); any other 4xx is final (``ActionFailed``, naming what Statuspage found
wrong). The API key is a secret: it travels only in the ``Authorization`` header and is scrubbed
from every message and log line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import structlog

from actions.http import json_object, send
from actions.notify import Notice, NoticeEvent, NoticeStatus
from watchdog.clock import Clock
from watchdog.config import StatuspageNotifierConfig
from watchdog.observability import redact

__all__ = ["RATE_LIMITED", "StatuspageNotifier", "incident_marker"]

log = structlog.get_logger("actions.statuspage")

SERVICE = "Statuspage"
#: Statuspage's rate-limit answers: 429, and the 420 it still sends to older integrations.
RATE_LIMITED = frozenset({420, 429})
#: The fact (``Notice.facts["milestone"]``) saying the post-rollback watch started.
MONITORING_MILESTONE = "post_rollback_watch"

_HEADLINE = {
    "degraded_performance": "Degraded performance of",
    "partial_outage": "Partial outage of",
    "major_outage": "Outage of",
}


def incident_marker(notice: Notice) -> str:
    """The tag ending the incident's name that finds it again: ``[rw-<correlation id or subject>]``."""
    return f"[rw-{notice.correlation_id or notice.subject}]"


@dataclass(frozen=True)
class _Change:
    """What one notice does to the subject's incident."""

    kind: Literal["create", "update", "resolve"]
    status: Literal["identified", "monitoring", "resolved"]
    body: str
    component_status: str


def _started(notice: Notice, cfg: StatuspageNotifierConfig) -> _Change:
    return _Change(
        "create",
        "identified",
        f"Some requests to {notice.service} are slower or failing after a recent change. "
        "We have identified the change and are reverting it.",
        cfg.component_status,
    )


def _progress(notice: Notice, cfg: StatuspageNotifierConfig) -> _Change:
    watching = notice.facts.get("milestone") == MONITORING_MILESTONE
    if watching:
        words = f"The recent change to {notice.service} has been reverted. We are monitoring the results."
        return _Change("update", "monitoring", words, cfg.component_status)
    words = f"We are still reverting the recent change to {notice.service}."
    return _Change("update", "identified", words, cfg.component_status)


def _escalated(notice: Notice, cfg: StatuspageNotifierConfig) -> _Change:
    words = f"Our engineers are working on restoring {notice.service}. We will post an update soon."
    return _Change("update", "identified", words, cfg.component_status)


def _resolved(notice: Notice, cfg: StatuspageNotifierConfig) -> _Change:
    words = f"The recent change to {notice.service} has been reverted and it is operating normally again."
    return _Change("resolve", "resolved", words, "operational")


def _closed(notice: Notice, cfg: StatuspageNotifierConfig) -> _Change:
    words = f"No change was made after all: {notice.service} is operating normally. Sorry for the alarm."
    return _Change("resolve", "resolved", words, "operational")


#: What each event does to the status page; events not named send nothing.
_PLANNERS: dict[NoticeEvent, Callable[[Notice, StatuspageNotifierConfig], _Change]] = {
    NoticeEvent.ROLLBACK_STARTED: _started,
    NoticeEvent.ROLLBACK_STEP: _progress,
    NoticeEvent.OVERRIDE: _progress,
    NoticeEvent.ESCALATED: _escalated,
    NoticeEvent.ROLLBACK_RESOLVED: _resolved,
}


def _complaint(response: httpx.Response) -> str:
    """What Statuspage said is wrong: its ``error`` (a message or a list of them), or the body's start."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, list):
        return "; ".join(str(e) for e in error)
    return str(error) if error else str(body)[:200]


class StatuspageNotifier:
    """One Statuspage page (``notifications.notifiers.<name>`` of kind ``statuspage``)."""

    def __init__(self, name: str, cfg: StatuspageNotifierConfig, http: httpx.Client, clock: Clock) -> None:
        self.name = name
        self._cfg = cfg
        self._http = http
        self._clock = clock
        self._api_key = cfg.api_key.get_secret_value()
        self._incidents_url = f"{cfg.api_url.rstrip('/')}/pages/{cfg.page_id}/incidents"

    def __repr__(self) -> str:
        return f"StatuspageNotifier(name={self.name!r}, page_id={self._cfg.page_id!r})"

    # ------------------------------------------------------------------ the protocol

    def deliver(self, notice: Notice, memo: Mapping[str, Any]) -> dict[str, Any]:
        change = self._plan(notice, memo)
        if change is None:
            return dict(memo)
        bound = log.bind(notifier=self.name, env=notice.env, service=notice.service, subject=notice.subject)
        fields: dict[str, Any] = {"status": change.status, "body": change.body}
        component = self._cfg.components.get(notice.service)
        if component is not None:
            fields["component_ids"] = [component]
            fields["components"] = {component: change.component_status}
        if change.kind == "create":
            fields["name"] = self._name(notice)
            fields["impact_override"] = self._cfg.impact
            answer = self._send("POST", self._incidents_url, {"incident": fields}, "create incident")
        else:
            incident = str(memo["incident_id"])
            url = f"{self._incidents_url}/{incident}"
            answer = self._send("PATCH", url, {"incident": fields}, f"{change.kind} incident {incident}")
        incident_id = str(answer.get("id") or memo.get("incident_id"))
        bound.info("statuspage.delivered", incident=incident_id, status=change.status, kind=change.kind)
        return {"incident_id": incident_id, "status": change.status, "resolved": change.kind == "resolve"}

    def recover(self, notice: Notice, memo: Mapping[str, Any]) -> dict[str, Any] | None:
        """Look the incident up: a create among the unresolved incidents by its marker, an update or
        a resolve on the incident itself. A lookup that fails raises as ``deliver`` does, so that the
        caller retries rather than opens a second incident."""
        change = self._plan(notice, memo)
        if change is None:
            return dict(memo)
        marker = incident_marker(notice)
        if change.kind == "create":
            listed = self._send("GET", f"{self._incidents_url}/unresolved", None, "list unresolved incidents")
            found = next(
                (i for i in listed.get("items", ()) if str(i.get("name", "")).endswith(marker)), None
            )
        else:
            incident = str(memo["incident_id"])
            found = self._send("GET", f"{self._incidents_url}/{incident}", None, f"get incident {incident}")
            updates = found.get("incident_updates") or [{}]
            latest = updates[0]  # Statuspage lists them newest first
            arrived = latest.get("status") == change.status and latest.get("body") == change.body
            if not str(found.get("name", "")).endswith(marker) or not arrived:
                found = None
        if found is None:
            return None
        return {
            "incident_id": str(found["id"]),
            "status": change.status,
            "resolved": change.kind == "resolve",
        }

    # ------------------------------------------------------------------ what a notice does

    def _plan(self, notice: Notice, memo: Mapping[str, Any]) -> _Change | None:
        """The change ``notice`` makes to the page, or None: not a customer-facing incident, or
        nothing customers would see differently."""
        if notice.env not in self._cfg.environments or notice.incident_id is None or memo.get("resolved"):
            return None
        opened = bool(memo.get("incident_id"))
        if notice.status is NoticeStatus.CLOSED:
            # over without a rollback is a veto (an override); the thread's other closed notices —
            # the bad release quarantined as the rollback resolves — change nothing customers see
            vetoed = notice.event is NoticeEvent.OVERRIDE
            return _closed(notice, self._cfg) if opened and vetoed else None
        planner = _PLANNERS.get(notice.event)
        if planner is None:
            return None
        change = planner(notice, self._cfg)
        if change.kind == "create":
            return None if opened else change
        if not opened:
            return None
        if notice.event in (NoticeEvent.ROLLBACK_STEP, NoticeEvent.OVERRIDE):
            if notice.status is not NoticeStatus.OPEN:
                return None
            if memo.get("status") == "monitoring" and change.status == "identified":
                return None  # a later step of a watched rollback: the page stays as it is
            if memo.get("status") == change.status:
                return None
        return change

    def _name(self, notice: Notice) -> str:
        headline = _HEADLINE.get(self._cfg.component_status, "Degraded performance of")
        return f"{headline} {notice.service}: rolling back a release {incident_marker(notice)}"

    # ------------------------------------------------------------------ plumbing

    def _redact(self, text: str) -> str:
        text = redact(text)
        return text.replace(self._api_key, "[api key]") if self._api_key else text

    def _send(self, method: str, url: str, body: dict[str, Any] | None, what: str) -> dict[str, Any]:
        """One request; the parsed 2xx body (a list comes back as ``{"items": [...]}``), or the error
        the caller can act on."""
        headers = {"Authorization": f"OAuth {self._api_key}", "Accept": "application/json"}
        response = send(
            self._http,
            method,
            url,
            service=SERVICE,
            what=what,
            scrub=self._redact,
            log=log.bind(notifier=self.name),
            complaint=_complaint,
            also_retryable=RATE_LIMITED,
            json=body,
            headers=headers,
            timeout=self._cfg.timeout_s,
        )
        return json_object(response)
