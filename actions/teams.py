"""Telling a Microsoft Teams channel: an Adaptive Card (1.5) posted to a Workflows webhook.

A Workflows webhook takes a post and cannot do anything else: it cannot update a message, so every
notice is a new card, and it cannot call back, so the overrides are ``Action.OpenUrl`` links (the
notice's ``links``), never buttons. There is no lookup either: :meth:`TeamsNotifier.recover` says
None, and a crash between the post and the watchdog's record of it may post the notice once more.

The flow's answers map onto the watchdog's errors: 2xx is done (Workflows answers 202 once it has
queued the run); 429, 5xx, timeouts and network errors may pass later (``ActionRetryable``, with
``Retry-After`` when given); any other 4xx is final (a deleted flow, a refused card). The webhook
URL carries its own signature (``sig=``) and is a secret: it is scrubbed from every message, log
line and repr.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import httpx
import structlog

from actions.http import send
from actions.notify import Notice, NoticeSeverity
from watchdog.clock import Clock
from watchdog.config import TeamsNotifierConfig
from watchdog.observability import redact

__all__ = ["CARD_CONTENT_TYPE", "CARD_SCHEMA", "TeamsNotifier", "card", "message"]

log = structlog.get_logger("actions.teams")

SERVICE = "Teams"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
#: How many history lines a card shows (the newest).
HISTORY_LINES = 10
#: How many posted notice keys the memo keeps.
MEMO_KEYS = 50

_TITLE_COLOUR = {
    NoticeSeverity.CRITICAL: "attention",
    NoticeSeverity.WARNING: "warning",
    NoticeSeverity.INFO: "default",
}


def _text(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def _section(heading: str, lines: list[str]) -> list[dict[str, Any]]:
    if not lines:
        return []
    head = _text(heading, weight="bolder", spacing="medium", separator=True)
    return [head, *(_text(line, spacing="none") for line in lines)]


def card(notice: Notice) -> dict[str, Any]:
    """The notice as an Adaptive Card 1.5: title, text, facts, evidence, recent history, links."""
    release = notice.release or ""
    if notice.target:
        release = f"{release} → {notice.target}" if release else f"→ {notice.target}"
    facts = {
        "Environment": notice.env,
        "Service": notice.service,
        "Release": release or None,
        "Status": notice.status.value,
        "Actor": notice.actor,
        "Correlation id": notice.correlation_id,
    }
    body: list[dict[str, Any]] = [
        _text(
            notice.title,
            style="heading",
            size="medium",
            weight="bolder",
            color=_TITLE_COLOUR[notice.severity],
        ),
        _text(notice.text),
        {
            "type": "FactSet",
            "facts": [{"title": k, "value": v} for k, v in facts.items() if v is not None],
        },
        *_section("Evidence", [e.summary() for e in notice.evidence]),
        *_section("History", list(notice.history[-HISTORY_LINES:])),
    ]
    content: dict[str, Any] = {
        "$schema": CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": "1.5",
        "fallbackText": notice.title,
        "body": body,
    }
    if notice.links:
        content["actions"] = [
            {"type": "Action.OpenUrl", "title": link.text, "url": link.url} for link in notice.links
        ]
    return content


def message(notice: Notice) -> dict[str, Any]:
    """The Workflows webhook's envelope around the card (secrets scrubbed)."""
    attachment = {"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": card(notice)}
    return cast(dict[str, Any], redact({"type": "message", "attachments": [attachment]}))


class TeamsNotifier:
    """Posts every notice as a new card to one Workflows webhook; the memo remembers what it posted."""

    def __init__(self, name: str, cfg: TeamsNotifierConfig, http: httpx.Client, clock: Clock) -> None:
        self.name = name
        self.timeout_s = cfg.timeout_s
        self._url = cfg.webhook_url.get_secret_value()
        self._http = http
        self._clock = clock

    def __repr__(self) -> str:
        return f"TeamsNotifier(name={self.name!r})"

    def deliver(self, notice: Notice, memo: Mapping[str, Any]) -> dict[str, Any]:
        posted = [str(k) for k in memo.get("posted", ())]
        if notice.key in posted:
            return dict(memo)
        self._post(notice)
        return {**memo, "posted": [*posted, notice.key][-MEMO_KEYS:]}

    def recover(self, notice: Notice, memo: Mapping[str, Any]) -> dict[str, Any] | None:
        """None: Teams cannot be asked whether a card arrived, so it is posted again (at worst twice)."""
        return None

    # ------------------------------------------------------------------ plumbing

    def _redact(self, text: str) -> str:
        text = redact(text)
        for shown in {self._url, str(httpx.URL(self._url))}:
            text = text.replace(shown, "[webhook url]")
        return text

    def _post(self, notice: Notice) -> None:
        bound = log.bind(notifier=self.name, key=notice.key, subject=notice.subject, env=notice.env)
        response = send(
            self._http,
            "POST",
            self._url,
            service=SERVICE,
            what=f"{self.name} post {notice.key}",
            scrub=self._redact,
            log=bound,
            complaint=_complaint,
            json=message(notice),
            timeout=self.timeout_s,
        )
        bound.info("teams.posted", status=response.status_code)


def _complaint(response: httpx.Response) -> str:
    """What the flow said is wrong: Azure's ``error.message`` (or ``code``), or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or error)[:500]
    return str(body)[:200]
