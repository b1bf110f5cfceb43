"""Alerting through Opsgenie's Alert API v2: one alert per incident, noted as it goes, closed at the end.

An OPEN notice that is critical or a warning creates the alert under the alias
``rollback-watchdog/<correlation id or subject>``. Opsgenie deduplicates creates by alias (an open
alert with the alias counts one more occurrence instead of opening another), so sending a create
again is harmless. Later OPEN notices of the subject become notes on the alert; a RESOLVED notice
or a CLOSED override (a veto) closes it, and any other CLOSED notice is a note. An INFO notice of a
subject without an alert sends nothing.

Opsgenie's answers map onto the watchdog's errors as its documentation says: 202 ("Request will be
processed": the work is queued) is done; 400, 401, 403, 404 and 422 are final (``ActionFailed``,
naming what Opsgenie found wrong); 429, 5xx, timeouts and network errors may pass later
(``ActionRetryable``, with ``Retry-After`` when given). A close that finds no alert (404) counts as
done: there is nothing left open. The API key is a secret: it travels only in the
``Authorization: GenieKey`` header and is scrubbed from every message, log line and repr.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import quote

import httpx
import structlog

from actions.http import json_object, send
from actions.notify import Notice, NoticeEvent, NoticeSeverity, NoticeStatus
from watchdog.clock import Clock
from watchdog.config import OpsgenieNotifierConfig
from watchdog.errors import ActionFailed
from watchdog.observability import redact

__all__ = ["ALIAS_PREFIX", "OpsgenieNotifier", "alert_alias", "create_payload"]

log = structlog.get_logger("actions.opsgenie")

SERVICE = "Opsgenie"
SOURCE = "rollback-watchdog"
ALIAS_PREFIX = "rollback-watchdog/"
#: Opsgenie's documented field limits; longer values are cut to fit.
MAX_MESSAGE_CHARS = 130
MAX_ALIAS_CHARS = 512
MAX_DESCRIPTION_CHARS = 15000
MAX_NOTE_CHARS = 25000
MAX_TAGS = 20
MAX_TAG_CHARS = 50
MAX_DETAIL_CHARS = 1000
#: How many of Opsgenie's request ids the memo keeps (to look a request up in Opsgenie's logs).
MEMO_REQUEST_IDS = 20
#: The severities that open an alert; the others only add to an open one.
ALERTING = (NoticeSeverity.CRITICAL, NoticeSeverity.WARNING)
_ELLIPSIS = "…"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(_ELLIPSIS)] + _ELLIPSIS


def alert_alias(notice: Notice) -> str:
    """The alert's alias, Opsgenie's dedup key: one per incident."""
    return _cut(ALIAS_PREFIX + (notice.correlation_id or notice.subject), MAX_ALIAS_CHARS)


def _segment(alias: str) -> str:
    """The alias as one path segment: its ``/`` percent-encoded."""
    return quote(alias, safe="")


def _lines(notice: Notice) -> str:
    """The notice's text, evidence and history as plain text."""
    parts = [notice.text]
    if notice.evidence:
        parts.append("Evidence:\n" + "\n".join(f"- {e.summary()}" for e in notice.evidence))
    if notice.history:
        parts.append("History:\n" + "\n".join(notice.history))
    return "\n\n".join(parts)


def _details(notice: Notice) -> dict[str, str]:
    """Opsgenie's ``details`` is a string → string map: the notice's facts, then its own fields."""
    facts = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in notice.facts.items()}
    own = {
        "env": notice.env,
        "service": notice.service,
        "release": notice.release,
        "target": notice.target,
        "incident_id": None if notice.incident_id is None else str(notice.incident_id),
        "correlation_id": notice.correlation_id,
        "event": notice.event.value,
    }
    merged = {**facts, **{k: v for k, v in own.items() if v is not None}}
    return {str(k): _cut(v, MAX_DETAIL_CHARS) for k, v in merged.items()}


def _ends(notice: Notice) -> bool:
    """Whether ``notice`` ends its subject: resolved, or closed by an override (a veto). Other
    closed notices of an incident (its release quarantined) are news on the alert, not its end."""
    return notice.status is NoticeStatus.RESOLVED or notice.event is NoticeEvent.OVERRIDE


def create_payload(notice: Notice, cfg: OpsgenieNotifierConfig) -> dict[str, Any]:
    """The ``CreateAlertPayload`` for ``notice``, cut to Opsgenie's limits and scrubbed of secrets."""
    tags: list[str] = []
    for tag in [*cfg.tags, notice.env, notice.service, notice.release]:
        if tag and _cut(tag, MAX_TAG_CHARS) not in tags:
            tags.append(_cut(tag, MAX_TAG_CHARS))
    payload: dict[str, Any] = {
        "message": _cut(notice.title, MAX_MESSAGE_CHARS),
        "alias": alert_alias(notice),
        "description": _cut(_lines(notice), MAX_DESCRIPTION_CHARS),
        "responders": [dict(r) for r in cfg.responders],
        "tags": tags[:MAX_TAGS],
        "details": _details(notice),
        "entity": notice.service,
        "source": SOURCE,
        "user": notice.actor,
    }
    priority = cfg.priorities.get(notice.severity.value)
    if priority is not None:
        payload["priority"] = priority
    return cast(dict[str, Any], redact(payload))


class OpsgenieNotifier:
    """One Opsgenie API integration: opens, notes and closes the alert of each incident."""

    def __init__(self, name: str, cfg: OpsgenieNotifierConfig, http: httpx.Client, clock: Clock) -> None:
        self.name = name
        self.api_url = cfg.api_url.rstrip("/")
        self.timeout_s = cfg.timeout_s
        self._cfg = cfg
        self._api_key = cfg.api_key.get_secret_value()
        self._http = http
        self._clock = clock

    def __repr__(self) -> str:
        return f"OpsgenieNotifier(name={self.name!r}, api_url={self.api_url!r})"

    def deliver(self, notice: Notice, memo: Mapping[str, Any]) -> dict[str, Any]:
        alias = str(memo.get("alias") or alert_alias(notice))
        is_open = bool(memo.get("opened")) and not memo.get("closed")
        if notice.status is NoticeStatus.OPEN:
            if is_open:
                request_id = self._send(
                    "POST", f"/v2/alerts/{_segment(alias)}/notes", self._note(notice), "note"
                )
                return self._memo(memo, alias, request_id, opened=True, closed=False)
            if notice.severity in ALERTING:
                request_id = self._send("POST", "/v2/alerts", create_payload(notice, self._cfg), "create")
                return self._memo(memo, alias, request_id, opened=True, closed=False)
            return dict(memo)  # an INFO notice of a subject without an alert
        if not is_open:
            return dict(memo)
        if not _ends(notice):  # e.g. the bad release quarantined just before the rollback resolves
            request_id = self._send("POST", f"/v2/alerts/{_segment(alias)}/notes", self._note(notice), "note")
            return self._memo(memo, alias, request_id, opened=True, closed=False)
        request_id = self._send("POST", f"/v2/alerts/{_segment(alias)}/close", self._note(notice), "close")
        return self._memo(memo, alias, request_id, opened=True, closed=True)

    def recover(self, notice: Notice, memo: Mapping[str, Any]) -> dict[str, Any] | None:
        """After a lost answer: the memo if the alert stands as ``notice`` would have left it.

        A create arrived if an alert has the alias; a close if that alert is closed. Whether a note
        arrived cannot be told from the alert, so it is None: a note twice beats none."""
        if notice.status is not NoticeStatus.OPEN and not _ends(notice):
            return None  # a note (or nothing): sent again
        alias = str(memo.get("alias") or alert_alias(notice))
        alert = self._find(alias)
        if alert is None:
            return None
        closed = alert.get("status") == "closed"
        if notice.status is NoticeStatus.OPEN:
            if memo.get("opened") and not memo.get("closed"):
                return None  # a note
            if closed:
                return None
            return self._memo(memo, alias, None, opened=True, closed=False)
        if not closed:
            return None
        return self._memo(memo, alias, None, opened=True, closed=True)

    # ------------------------------------------------------------------ plumbing

    @staticmethod
    def _note(notice: Notice) -> dict[str, Any]:
        note = _cut(f"{notice.title}\n\n{_lines(notice)}", MAX_NOTE_CHARS)
        return cast(dict[str, Any], redact({"note": note, "user": notice.actor, "source": SOURCE}))

    @staticmethod
    def _memo(
        memo: Mapping[str, Any], alias: str, request_id: str | None, *, opened: bool, closed: bool
    ) -> dict[str, Any]:
        ids = [str(i) for i in memo.get("request_ids", ())]
        if request_id:
            ids.append(request_id)
        return {
            **memo,
            "alias": alias,
            "opened": opened,
            "closed": closed,
            "request_ids": ids[-MEMO_REQUEST_IDS:],
        }

    def _redact(self, text: str) -> str:
        text = redact(text)
        return text.replace(self._api_key, "[api key]") if self._api_key else text

    def _find(self, alias: str) -> dict[str, Any] | None:
        """The alert with ``alias`` as Opsgenie shows it, or None when there is none."""
        try:
            answer = self._request("GET", f"/v2/alerts/{_segment(alias)}", None, "get")
        except ActionFailed as exc:
            if exc.status == 404:
                return None
            raise
        data = answer.get("data")
        return data if isinstance(data, dict) else {}

    def _send(self, method: str, path: str, body: dict[str, Any], what: str) -> str | None:
        """Send one request; Opsgenie's ``requestId``. A close of an alert that is gone is done."""
        try:
            answer = self._request(method, path, body, what)
        except ActionFailed as exc:
            if what == "close" and exc.status == 404:
                log.info("opsgenie.close_found_nothing", notifier=self.name, path=path)
                return None
            raise
        request_id = answer.get("requestId")
        return request_id if isinstance(request_id, str) else None

    def _request(self, method: str, path: str, body: dict[str, Any] | None, what: str) -> dict[str, Any]:
        """One call of the Alert API; the parsed 2xx body, or the error the caller can act on."""
        url = f"{self.api_url}{path}"
        params = None if path == "/v2/alerts" else {"identifierType": "alias"}
        headers = {"Authorization": f"GenieKey {self._api_key}", "User-Agent": SOURCE}
        bound = log.bind(notifier=self.name)
        response = send(
            self._http,
            method,
            url,
            service=SERVICE,
            what=f"{what} {path}",
            scrub=self._redact,
            log=bound,
            complaint=_complaint,
            quiet=(404,) if what == "get" else (),  # a lookup's "not there" is an answer
            params=params,
            json=body,
            headers=headers,
            timeout=self.timeout_s,
        )
        bound.info("opsgenie.sent", what=what, status=response.status_code)
        return json_object(response)


def _complaint(response: httpx.Response) -> str:
    """What Opsgenie said is wrong: its ``message`` and per-field ``errors``, or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    if not isinstance(body, dict):
        return str(body)[:200]
    parts = [str(body["message"])] if body.get("message") else []
    errors = body.get("errors")
    if isinstance(errors, dict) and errors:
        parts.append("; ".join(f"{k}: {v}" for k, v in errors.items()))
    return ": ".join(parts) or response.reason_phrase
