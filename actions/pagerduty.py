"""Paging oncall through PagerDuty's Events API v2.

The watchdog triggers an alert when a rollback starts, triggers it again with a higher severity
when the rollback escalates (the same ``dedup_key``, so PagerDuty updates the open alert instead of
opening another), and resolves it once recovery is confirmed. Change events put context on the
service's timeline without paging anyone.

PagerDuty's answers map onto the watchdog's errors as its documentation says to retry: 202 is
done; 400 is final (``ActionFailed``, naming what PagerDuty found wrong); 429, 5xx, timeouts and
network errors may pass later (``ActionRetryable``, with ``Retry-After`` when given). Retrying a
trigger or resolve with the same ``dedup_key`` is harmless. The routing key is a secret: it travels
only in request bodies and is scrubbed from every message, log line and repr.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import structlog

from actions.http import json_object, send
from watchdog.observability import redact

log = structlog.get_logger("actions.pagerduty")

SEVERITIES = ("critical", "error", "warning", "info")
#: PagerDuty's documented limit on ``payload.summary``; longer summaries are cut to fit.
MAX_SUMMARY_CHARS = 1024
_ELLIPSIS = "…"


def _summary(text: str) -> str:
    if len(text) <= MAX_SUMMARY_CHARS:
        return text
    return text[: MAX_SUMMARY_CHARS - len(_ELLIPSIS)] + _ELLIPSIS


def _timestamp(seconds: float) -> str:
    """ISO 8601 with an explicit UTC offset, as PagerDuty's ``payload.timestamp`` expects."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def _complaint(response: httpx.Response) -> str:
    """What PagerDuty said is wrong: its message and ``errors`` list, or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    if not isinstance(body, dict):
        return str(body)[:200]
    parts = [str(body[k]) for k in ("status", "message") if body.get(k)]
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        parts.append("; ".join(str(e) for e in errors))
    return ": ".join(parts) or response.reason_phrase


class PagerDuty:
    """A client of one Events API v2 integration (routing key), over an ``httpx.Client`` handed in."""

    def __init__(
        self,
        events_url: str,
        routing_key: str,
        http: httpx.Client,
        *,
        timeout_s: float = 10.0,
        client: str = "rollback-watchdog",
        client_url: str | None = None,
    ) -> None:
        self.events_url = events_url.rstrip("/")
        self._routing_key = routing_key
        self._http = http
        self.timeout_s = timeout_s
        self.client = client
        self.client_url = client_url

    def __repr__(self) -> str:
        return f"PagerDuty(events_url={self.events_url!r}, client={self.client!r})"

    def trigger(
        self,
        dedup_key: str,
        summary: str,
        *,
        severity: str,
        source: str,
        component: str | None = None,
        group: str | None = None,
        class_: str | None = None,
        custom_details: dict[str, Any] | None = None,
        links: list[dict[str, str]] | None = None,
        timestamp: float | None = None,
    ) -> str:
        """Open the alert ``dedup_key``, or update it while open; returns PagerDuty's ``dedup_key``.

        ``summary`` is cut to PagerDuty's 1024 characters; ``timestamp`` (epoch seconds) is sent
        as ISO 8601. A severity outside critical/error/warning/info is a ``ValueError``.
        """
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, not {severity!r}")
        payload: dict[str, Any] = {"summary": _summary(summary), "source": source, "severity": severity}
        optional = {
            "component": component,
            "group": group,
            "class": class_,
            "custom_details": custom_details,
            "timestamp": None if timestamp is None else _timestamp(timestamp),
        }
        payload.update({k: v for k, v in optional.items() if v is not None})
        event: dict[str, Any] = {
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "payload": payload,
            "client": self.client,
        }
        if self.client_url:
            event["client_url"] = self.client_url
        if links:
            event["links"] = links
        answer = self._send("/enqueue", event, f"trigger {dedup_key}")
        returned = answer.get("dedup_key")
        return returned if isinstance(returned, str) and returned else dedup_key

    def acknowledge(self, dedup_key: str) -> None:
        """Mark the alert as being worked on: no further notifications while it stays acknowledged."""
        self._send(
            "/enqueue", {"event_action": "acknowledge", "dedup_key": dedup_key}, f"acknowledge {dedup_key}"
        )

    def resolve(self, dedup_key: str) -> None:
        """Close the alert; PagerDuty drops a resolve for an alert that is not open."""
        self._send("/enqueue", {"event_action": "resolve", "dedup_key": dedup_key}, f"resolve {dedup_key}")

    def change(
        self,
        summary: str,
        *,
        source: str | None = None,
        custom_details: dict[str, Any] | None = None,
        links: list[dict[str, str]] | None = None,
        timestamp: float | None = None,
    ) -> None:
        """Record a change (a deploy, a rollback) on the service's timeline; pages nobody."""
        payload: dict[str, Any] = {"summary": _summary(summary)}
        optional = {
            "source": source,
            "custom_details": custom_details,
            "timestamp": None if timestamp is None else _timestamp(timestamp),
        }
        payload.update({k: v for k, v in optional.items() if v is not None})
        event: dict[str, Any] = {"payload": payload}
        if links:
            event["links"] = links
        self._send("/change/enqueue", event, "change event")

    # ------------------------------------------------------------------ plumbing

    def _redact(self, text: str) -> str:
        text = redact(text)
        return text.replace(self._routing_key, "[routing key]") if self._routing_key else text

    def _send(self, path: str, event: dict[str, Any], what: str) -> dict[str, Any]:
        """POST one event; the parsed 2xx body, or the error the caller can act on."""
        body = {"routing_key": self._routing_key, **redact(event)}  # the key itself is a secret
        response = send(
            self._http,
            "POST",
            f"{self.events_url}{path}",
            service="PagerDuty",
            what=what,
            scrub=self._redact,
            log=log,
            complaint=_complaint,
            json=body,
            timeout=self.timeout_s,
        )
        log.info("pagerduty.sent", what=what, status=response.status_code)
        return json_object(response)
