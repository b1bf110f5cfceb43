"""Marking the watchdog's decisions on Grafana's graphs, as annotations.

Each deploy, promotion, rollback decision, escalation, override and quarantine becomes an
annotation at the decision's time, tagged ``env:``, ``service:``, ``release:``, ``event:`` (and
``target:`` for a rollback) besides the configured tags, so a dashboard's annotation query can pick
them. Rollback steps are annotated only at their milestones. When a rollback resolves, the
annotation of its start is stretched to the resolution (``timeEnd``): the graphs show the rollback
as a region.

Every annotation carries the tag ``notice:<key>``: :meth:`GrafanaNotifier.recover` finds it by
that tag after an answer was lost, so a retry never draws a second line.

Grafana's answers map onto the watchdog's errors: 200 is done; 429, 5xx, timeouts and network
errors may pass later (``ActionRetryable``, with ``Retry-After`` when given); any other 4xx is final
(``ActionFailed``, with Grafana's message). The service account token is a secret: it travels only
in the ``Authorization`` header and is scrubbed from every message and log line.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import httpx
import structlog

from actions.http import json_object, send
from actions.notify import Notice, NoticeEvent
from watchdog.clock import Clock
from watchdog.config import GrafanaNotifierConfig
from watchdog.errors import ActionFailed
from watchdog.observability import redact

__all__ = ["ANNOTATED", "GrafanaNotifier", "notice_tag"]

log = structlog.get_logger("actions.grafana")

SERVICE = "Grafana"
#: The events drawn on the graphs (a rollback step only when it is a milestone).
ANNOTATED = frozenset(
    {
        NoticeEvent.DEPLOY,
        NoticeEvent.PROMOTED,
        NoticeEvent.ROLLBACK_STARTED,
        NoticeEvent.ROLLBACK_PROPOSED,
        NoticeEvent.ROLLBACK_HELD,
        NoticeEvent.ROLLBACK_RESOLVED,
        NoticeEvent.ESCALATED,
        NoticeEvent.OVERRIDE,
        NoticeEvent.QUARANTINE,
    }
)


def notice_tag(notice: Notice) -> str:
    """The tag that makes the annotation findable again: ``notice:<key>``."""
    return f"notice:{notice.key}"


def _annotated(notice: Notice) -> bool:
    return notice.event in ANNOTATED or (
        notice.event is NoticeEvent.ROLLBACK_STEP and bool(notice.facts.get("milestone"))
    )


def _text(notice: Notice) -> str:
    """Title, evidence and links, escaped, one per line (Grafana renders the text as HTML)."""
    lines = [f"<b>{html.escape(notice.title)}</b>"]
    lines += [html.escape(e.summary()) for e in notice.evidence]
    lines += [
        f'<a href="{html.escape(link.url, quote=True)}">{html.escape(link.text)}</a>' for link in notice.links
    ]
    return "<br>".join(lines)


def _complaint(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    message = body.get("message") if isinstance(body, dict) else None
    return str(message) if message else str(body)[:200]


class GrafanaNotifier:
    """One Grafana (``notifications.notifiers.<name>`` of kind ``grafana``).

    The memo keeps ``annotation_id`` (the subject's latest annotation) and ``region_id`` (the
    annotation of the rollback's start, to be stretched when it resolves)."""

    def __init__(self, name: str, cfg: GrafanaNotifierConfig, http: httpx.Client, clock: Clock) -> None:
        self.name = name
        self._cfg = cfg
        self._http = http
        self._clock = clock
        self._token = cfg.token.get_secret_value()
        self._url = f"{cfg.url.rstrip('/')}/api/annotations"

    def __repr__(self) -> str:
        return f"GrafanaNotifier(name={self.name!r}, url={self._cfg.url!r})"

    # ------------------------------------------------------------------ the protocol

    def deliver(self, notice: Notice, memo: Mapping[str, Any]) -> dict[str, Any]:
        if not _annotated(notice):
            return dict(memo)
        bound = log.bind(notifier=self.name, env=notice.env, service=notice.service, subject=notice.subject)
        at = round(notice.at * 1000)
        region = memo.get("region_id")
        if (
            notice.event is NoticeEvent.ROLLBACK_RESOLVED
            and region is not None
            and not memo.get("region_closed")
        ):
            # before the resolution's own annotation: a retry after either request repeats both harmlessly
            self._close_region(int(region), at)
        annotation: dict[str, Any] = {"time": at, "tags": self._tags(notice), "text": _text(notice)}
        if self._cfg.dashboard_uid:
            annotation["dashboardUID"] = self._cfg.dashboard_uid
        answer = self._send("POST", self._url, annotation, f"annotate {notice.event.value}")
        annotation_id = int(answer["id"]) if isinstance(answer.get("id"), int) else None
        bound.info("grafana.annotated", notice_event=notice.event.value, annotation=annotation_id)
        return self._memo(notice, memo, annotation_id)

    def recover(self, notice: Notice, memo: Mapping[str, Any]) -> dict[str, Any] | None:
        """The memo if an annotation tagged ``notice:<key>`` exists, None if not. A lookup that fails
        raises as ``deliver`` does, so that the caller retries rather than annotates twice."""
        if not _annotated(notice):
            return dict(memo)
        query = {"tags": [notice_tag(notice)], "type": "annotation", "limit": 1}
        found = self._send("GET", self._url, None, "find annotation", params=query)
        items = found.get("items", [])
        if not items:
            return None
        return self._memo(notice, memo, int(items[0]["id"]))

    # ------------------------------------------------------------------ what a notice draws

    def _tags(self, notice: Notice) -> list[str]:
        tags = [*self._cfg.tags, f"env:{notice.env}", f"service:{notice.service}"]
        if notice.release:
            tags.append(f"release:{notice.release}")
        tags.append(f"event:{notice.event.value}")
        if notice.target:
            tags.append(f"target:{notice.target}")
        tags.append(notice_tag(notice))
        return list(dict.fromkeys(tags))

    def _memo(self, notice: Notice, memo: Mapping[str, Any], annotation_id: int | None) -> dict[str, Any]:
        updated = {**memo, "annotation_id": annotation_id}
        if notice.event is NoticeEvent.ROLLBACK_STARTED:
            updated.update(region_id=annotation_id, region_closed=False)
        elif notice.event is NoticeEvent.ROLLBACK_RESOLVED and "region_id" in memo:
            updated["region_closed"] = True
        return updated

    def _close_region(self, region: int, at: int) -> None:
        """Stretch the rollback's start annotation to ``at``; one deleted meanwhile is let be."""
        try:
            self._send("PATCH", f"{self._url}/{region}", {"timeEnd": at}, f"end region {region}")
        except ActionFailed as exc:
            if exc.status != 404:
                raise
            log.warning("grafana.region_gone", notifier=self.name, annotation=region)

    # ------------------------------------------------------------------ plumbing

    def _redact(self, text: str) -> str:
        text = redact(text)
        return text.replace(self._token, "[token]") if self._token else text

    def _send(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        what: str,
        *,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One request; the parsed 200 body (a list comes back as ``{"items": [...]}``), or the error
        the caller can act on."""
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        response = send(
            self._http,
            method,
            url,
            service=SERVICE,
            what=what,
            scrub=self._redact,
            log=log.bind(notifier=self.name),
            complaint=_complaint,
            json=body,
            params=params,
            headers=headers,
            timeout=self._cfg.timeout_s,
        )
        return json_object(response)
