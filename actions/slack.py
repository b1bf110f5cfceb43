"""Telling a Slack channel: one Block Kit message per subject, kept up to date as it advances.

With a bot token the first notice of a subject is posted (``chat.postMessage``) and every later
one edits that message in place (``chat.update``), so the channel shows one message per incident
that always says where it stands, who did what, and — while it is open — the override buttons.
Edits notify nobody, so a critical notice, a resolution and a closing also get a short reply in the
message's thread. Each message carries the notice's key in its metadata
(``event_type: rollback_watchdog_notice``): after a lost answer :meth:`SlackNotifier.recover`
looks for it in the channel's history instead of posting twice.

With an incoming webhook each notice is a new message (webhooks cannot edit), and a lost answer
cannot be checked: the notice is sent again, a duplicate at worst.

Slack answers most errors with HTTP 200 and ``{"ok": false, "error": "<code>"}``. They map onto
the watchdog's errors in one table (:data:`RETRYABLE_ERRORS`): rate limits and Slack-side failures
are retryable (with ``Retry-After`` when given), everything else (``invalid_auth``,
``channel_not_found``, ``invalid_blocks``…) is final and named in the message. The token and the
webhook URL are secrets: they travel only in headers and the request line and are scrubbed from
every message, log line and repr.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import structlog
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from actions.http import retry_after
from actions.notify import Notice, NoticeSeverity, NoticeStatus
from watchdog.clock import Clock
from watchdog.config import SlackNotifierConfig
from watchdog.errors import action_error
from watchdog.observability import redact

__all__ = [
    "EVENT_TYPE",
    "OVERRIDES_BLOCK_ID",
    "RETRYABLE_ERRORS",
    "SlackNotifier",
    "blocks",
    "escape",
    "render",
    "text_fallback",
]

log = structlog.get_logger("actions.slack")

#: The ``metadata.event_type`` of every message the watchdog posts; its payload is ``{subject, key}``.
EVENT_TYPE = "rollback_watchdog_notice"
#: The ``block_id`` of the override buttons (the interactivity endpoint reads it back).
OVERRIDES_BLOCK_ID = "watchdog-overrides"

#: Slack's ``error`` codes that may pass later; any other ``ok: false`` answer is final.
RETRYABLE_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
#: How far before the notice ``recover`` reads the channel's history, in seconds.
RECOVER_WINDOW_S = 3600.0
#: Pages of ``conversations.history`` (of :data:`_HISTORY_LIMIT` messages) ``recover`` reads at most.
_HISTORY_PAGES = 5
_HISTORY_LIMIT = 100
#: Notice keys kept in the memo (enough to drop a retried notice, small enough to store).
_MEMO_KEYS = 20
#: History lines shown in the message (the newest).
HISTORY_LINES = 10

# Slack's documented limits (Block Kit reference, chat.postMessage).
MAX_TEXT_CHARS = 40_000
MAX_HEADER_CHARS = 150
MAX_SECTION_CHARS = 3000
MAX_FIELD_CHARS = 2000
MAX_BUTTON_TEXT_CHARS = 75
MAX_CONFIRM_TEXT_CHARS = 300
MAX_CONFIRM_BUTTON_CHARS = 30

_ELLIPSIS = "…"
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{8,}")
_SEVERITY_EMOJI = {
    NoticeSeverity.CRITICAL: ":rotating_light:",
    NoticeSeverity.WARNING: ":warning:",
    NoticeSeverity.INFO: ":information_source:",
}
_STATE_EMOJI = {"fail": ":red_circle:", "pass": ":large_green_circle:"}
_OVER = (NoticeStatus.RESOLVED, NoticeStatus.CLOSED)


# --------------------------------------------------------------------------- rendering (pure)


def escape(text: str) -> str:
    """Text safe inside mrkdwn: Slack reads ``&``, ``<`` and ``>`` as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(_ELLIPSIS)] + _ELLIPSIS


def _cut_front(lines: Sequence[str], limit: int) -> str:
    """The newest lines that fit in ``limit`` characters (older ones go first)."""
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        size += len(line) + 1
        if size > limit:
            break
        kept.append(line)
    return "\n".join(reversed(kept)) or _cut(lines[-1], limit)


def _link(text: str, url: str) -> str:
    return f"<{escape(url)}|{escape(text).replace('|', '¦')}>"


def _facts(notice: Notice) -> list[str]:
    rows = [("Environment", notice.env), ("Service", notice.service)]
    if notice.release:
        rows.append(("Release", notice.release))
    if notice.target:
        rows.append(("Rolled back to", notice.target))
    rows += [("Status", notice.status.value), ("By", notice.actor)]
    return [_cut(f"*{label}*\n{escape(value)}", MAX_FIELD_CHARS) for label, value in rows]


def _button(notice: Notice, index: int) -> ButtonElement:
    button = notice.buttons[index]
    style = button.style if button.style in ("primary", "danger") else None
    label = _cut(button.label, MAX_BUTTON_TEXT_CHARS)
    confirm = None
    if button.confirm:
        confirm = ConfirmObject(
            title=_cut(f"{label}?", 100),
            text=PlainTextObject(text=_cut(button.confirm, MAX_CONFIRM_TEXT_CHARS)),
            confirm=_cut(label, MAX_CONFIRM_BUTTON_CHARS),
            deny="Cancel",
            style=style,
        )
    value = {"subject": notice.subject, "incident_id": notice.incident_id, "watch_id": notice.watch_id}
    return ButtonElement(
        text=PlainTextObject(text=label, emoji=True),
        action_id=button.action,
        value=json.dumps(value, sort_keys=True),
        style=style,
        confirm=confirm,
    )


def blocks(notice: Notice, *, buttons: bool = True) -> list[Block]:
    """The notice as Block Kit: header, text, facts, evidence, links, history, and the override
    buttons while the subject is open (``buttons`` False leaves them out, e.g. for a channel whose
    app has no interactivity)."""
    emoji = ":white_check_mark:" if notice.status in _OVER else _SEVERITY_EMOJI[notice.severity]
    out: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=_cut(f"{emoji} {notice.title}", MAX_HEADER_CHARS), emoji=True)),
        SectionBlock(text=MarkdownTextObject(text=_cut(escape(notice.text) or " ", MAX_SECTION_CHARS))),
        SectionBlock(fields=[MarkdownTextObject(text=f) for f in _facts(notice)]),
    ]
    if notice.evidence:
        lines = [f"{_STATE_EMOJI.get(e.state, '•')} {escape(e.summary())}" for e in notice.evidence]
        out.append(
            SectionBlock(text=MarkdownTextObject(text=_cut_front(["*Evidence*", *lines], MAX_SECTION_CHARS)))
        )
    if notice.links:
        shown = " · ".join(_link(link.text, link.url) for link in notice.links)
        out.append(SectionBlock(text=MarkdownTextObject(text=_cut(shown, MAX_SECTION_CHARS))))
    if notice.history:
        lines = [escape(line) for line in notice.history[-HISTORY_LINES:]]
        out.append(ContextBlock(elements=[MarkdownTextObject(text=_cut_front(lines, MAX_SECTION_CHARS))]))
    footer = [f"<!date^{int(notice.at)}^{{date_short_pretty}} {{time_secs}}|{int(notice.at)}>"]
    footer += [escape(x) for x in (notice.subject, notice.correlation_id) if x]
    out.append(ContextBlock(elements=[MarkdownTextObject(text=" · ".join(footer))]))
    if buttons and notice.buttons and notice.status is NoticeStatus.OPEN:
        out.append(DividerBlock())
        out.append(
            ActionsBlock(
                block_id=OVERRIDES_BLOCK_ID,
                elements=[_button(notice, i) for i in range(len(notice.buttons))],
            )
        )
    return out


def text_fallback(notice: Notice) -> str:
    """The message's ``text``: what notifications, screen readers and old clients show."""
    release = f" {notice.release}" if notice.release else ""
    line = f"{notice.title} ({notice.env}/{notice.service}{release}, {notice.status.value})"
    return _cut(escape(line), MAX_TEXT_CHARS)


def render(notice: Notice, *, buttons: bool = True) -> dict[str, Any]:
    """The message body Slack takes: ``{"text", "blocks"}`` as plain JSON (validated by slack_sdk)."""
    return {"text": text_fallback(notice), "blocks": [b.to_dict() for b in blocks(notice, buttons=buttons)]}


def _reply_text(notice: Notice) -> str:
    """The thread reply of a notice the channel must hear about: what changed, by whom."""
    return _cut(
        f"*{escape(notice.title)}* (by {escape(notice.actor)})\n{escape(notice.text)}", MAX_TEXT_CHARS
    )


def _metadata(notice: Notice) -> dict[str, Any]:
    return {"event_type": EVENT_TYPE, "event_payload": {"subject": notice.subject, "key": notice.key}}


def _carries(message: Mapping[str, Any], key: str) -> bool:
    metadata = message.get("metadata")
    if not isinstance(metadata, Mapping) or metadata.get("event_type") != EVENT_TYPE:
        return False
    payload = metadata.get("event_payload")
    return isinstance(payload, Mapping) and payload.get("key") == key


def _remember(keys: Any, key: str) -> list[str]:
    kept = [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []
    return [*kept, key][-_MEMO_KEYS:]


def _error_status(code: str) -> int:
    """The HTTP status an ``ok: false`` answer stands for: 429, 503 (Slack-side), or 400 (final)."""
    if code == "ratelimited":
        return 429
    return 503 if code in RETRYABLE_ERRORS else 400


# --------------------------------------------------------------------------- the notifier (I/O)


class SlackNotifier:
    """One configured Slack destination: a bot token and a channel, or an incoming webhook."""

    def __init__(self, name: str, cfg: SlackNotifierConfig, http: httpx.Client, clock: Clock) -> None:
        self.name = name
        self.api_url = cfg.api_url.rstrip("/")
        self.channel = cfg.channel
        self.buttons = cfg.buttons
        self.timeout_s = cfg.timeout_s
        self._token = cfg.token.get_secret_value() if cfg.token is not None else None
        self._webhook_url = cfg.webhook_url.get_secret_value() if cfg.webhook_url is not None else None
        self._http = http
        self._clock = clock
        self._log = log.bind(notifier=name)

    def __repr__(self) -> str:
        mode = f"channel={self.channel!r}" if self._token else "webhook"
        return f"SlackNotifier(name={self.name!r}, {mode})"

    # ----------------------------------------------------------------------- Notifier

    def deliver(self, notice: Notice, memo: Mapping[str, Any]) -> dict[str, Any]:
        """Post the subject's message, or update it; a notice already delivered is not sent again."""
        if notice.key in (memo.get("keys") or ()):
            return dict(memo)
        body = render(notice, buttons=self.buttons)
        if self._token is None:
            self._webhook(body, notice)
            return {"keys": _remember(memo.get("keys"), notice.key)}
        channel, ts = memo.get("channel"), memo.get("ts")
        if not (isinstance(channel, str) and isinstance(ts, str)):
            return self._post(body, notice)
        if not self._update(channel, ts, body, notice):  # deleted by someone: the subject starts anew
            return self._post(body, notice)
        if notice.severity is NoticeSeverity.CRITICAL or notice.status in _OVER:
            self._reply(channel, ts, notice)
        return {"channel": channel, "ts": ts, "keys": _remember(memo.get("keys"), notice.key)}

    def recover(self, notice: Notice, memo: Mapping[str, Any]) -> dict[str, Any] | None:
        """Whether ``notice`` reached the channel although its answer was lost: the first post is
        found by the key in its metadata; an update by the key on the message at ``memo.ts``.
        Webhooks cannot be read back (None: sent again, a duplicate at worst), nor a channel
        configured by name rather than id before its first post."""
        if self._token is None:
            return None
        channel, ts = memo.get("channel"), memo.get("ts")
        keys = memo.get("keys")
        if isinstance(channel, str) and isinstance(ts, str):
            params = {
                "channel": channel,
                "latest": ts,
                "oldest": ts,
                "inclusive": "true",
                "limit": "1",
                "include_all_metadata": "true",
            }
            found = _messages(self._call("conversations.history", params))
            if any(m.get("ts") == ts and _carries(m, notice.key) for m in found):
                return {"channel": channel, "ts": ts, "keys": _remember(keys, notice.key)}
            return None
        if self.channel is None or not _CHANNEL_ID.fullmatch(self.channel):
            self._log.warning("slack.recover_needs_channel_id", subject=notice.subject, key=notice.key)
            return None
        oldest = min(notice.at, self._clock.now()) - RECOVER_WINDOW_S
        params = {
            "channel": self.channel,
            "oldest": f"{oldest:.6f}",
            "limit": str(_HISTORY_LIMIT),
            "include_all_metadata": "true",
        }
        cursor = ""
        for _ in range(_HISTORY_PAGES):
            answer = self._call("conversations.history", {**params, "cursor": cursor} if cursor else params)
            for message in _messages(answer):
                if _carries(message, notice.key) and isinstance(message.get("ts"), str):
                    return {"channel": self.channel, "ts": message["ts"], "keys": _remember(keys, notice.key)}
            cursor = str((answer.get("response_metadata") or {}).get("next_cursor") or "")
            if not answer.get("has_more") or not cursor:
                break
        return None

    # ----------------------------------------------------------------------- the three requests

    def _post(self, body: dict[str, Any], notice: Notice) -> dict[str, Any]:
        answer = self._call(
            "chat.postMessage",
            json_body={
                "channel": self.channel,
                **body,
                "unfurl_links": False,
                "metadata": _metadata(notice),
            },
        )
        channel, ts = answer.get("channel"), answer.get("ts")
        if not isinstance(channel, str) or not isinstance(ts, str):
            raise action_error(
                "Slack chat.postMessage: answer without channel and ts", service="Slack", status=502
            )
        self._log.info("slack.posted", subject=notice.subject, key=notice.key, channel=channel, ts=ts)
        return {"channel": channel, "ts": ts, "keys": [notice.key]}

    def _update(self, channel: str, ts: str, body: dict[str, Any], notice: Notice) -> bool:
        """Edit the subject's message; False when it is gone (deleted by someone)."""
        answer = self._call(
            "chat.update",
            json_body={"channel": channel, "ts": ts, **body, "metadata": _metadata(notice)},
            allow=("message_not_found",),
        )
        if answer.get("ok") is not True:
            self._log.warning("slack.message_gone", subject=notice.subject, channel=channel, ts=ts)
            return False
        self._log.info("slack.updated", subject=notice.subject, key=notice.key, channel=channel, ts=ts)
        return True

    def _reply(self, channel: str, ts: str, notice: Notice) -> None:
        self._call(
            "chat.postMessage",
            json_body={
                "channel": channel,
                "thread_ts": ts,
                "text": _reply_text(notice),
                "unfurl_links": False,
            },
        )

    # ----------------------------------------------------------------------- plumbing

    def _redact(self, text: str) -> str:
        text = redact(text)
        for secret in (self._token, self._webhook_url):
            if secret:
                text = text.replace(secret, "[secret]")
        if self._webhook_url:  # the path alone is the secret part, e.g. in a proxy's error page
            path = httpx.URL(self._webhook_url).path
            if len(path) > 8:
                text = text.replace(path, "[webhook path]")
        return text

    def _call(
        self,
        method: str,
        params: dict[str, str] | None = None,
        *,
        json_body: dict[str, Any] | None = None,
        allow: Sequence[str] = (),
    ) -> dict[str, Any]:
        """One Web API call (JSON POST, or GET with ``params``): the ``ok`` answer, an ``ok: false``
        one whose error the caller ``allow``s and handles, or the error raised."""
        url = f"{self.api_url}/{method}"
        headers = {"Authorization": f"Bearer {self._token}"}
        what = f"Slack {method}"
        try:
            if json_body is None:
                response = self._http.get(url, params=params, headers=headers, timeout=self.timeout_s)
            else:
                headers["Content-Type"] = "application/json; charset=utf-8"
                content = json.dumps(json_body).encode()
                response = self._http.post(url, content=content, headers=headers, timeout=self.timeout_s)
        except httpx.TransportError as exc:  # timeouts, refused and dropped connections
            self._log.warning("slack.unreachable", method=method, error=type(exc).__name__)
            raise action_error(self._redact(f"{what}: {type(exc).__name__}: {exc}"), service="Slack") from exc
        wait = retry_after(response)
        if not response.is_success:
            complaint = self._redact(_complaint(response))
            self._log.warning("slack.refused", method=method, status=response.status_code, error=complaint)
            message = f"{what}: answered {response.status_code}: {complaint}"
            raise action_error(message, service="Slack", status=response.status_code, retry_after=wait)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            message = f"{what}: unreadable answer: {self._redact(response.text[:200])}"
            raise action_error(message, service="Slack", status=502)
        if answer.get("ok") is not True:
            code = str(answer.get("error") or "unknown_error")
            if code in allow:
                return answer
            detail = _details(answer)
            self._log.warning("slack.error", method=method, error=code)
            message = self._redact(f"{what}: {code}" + (f" ({detail})" if detail else ""))
            raise action_error(message, service="Slack", status=_error_status(code), retry_after=wait)
        return answer

    def _webhook(self, body: dict[str, Any], notice: Notice) -> None:
        """POST to the incoming webhook: ``ok`` with 200; errors as text with 4xx (final), 429, 5xx."""
        url = self._webhook_url or ""
        try:
            response = self._http.post(url, json={**body, "unfurl_links": False}, timeout=self.timeout_s)
        except httpx.TransportError as exc:
            self._log.warning("slack.unreachable", method="webhook", error=type(exc).__name__)
            raise action_error(
                self._redact(f"Slack webhook: {type(exc).__name__}: {exc}"), service="Slack"
            ) from exc
        if response.is_success:
            self._log.info("slack.webhook_sent", subject=notice.subject, key=notice.key)
            return
        complaint = self._redact(_complaint(response))
        self._log.warning("slack.refused", method="webhook", status=response.status_code, error=complaint)
        raise action_error(
            f"Slack webhook: answered {response.status_code}: {complaint}",
            service="Slack",
            status=response.status_code,
            retry_after=retry_after(response),
        )


def _messages(answer: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = answer.get("messages")
    return [m for m in found if isinstance(m, Mapping)] if isinstance(found, list) else []


def _details(answer: Mapping[str, Any]) -> str:
    """What Slack added to an error: ``invalid_blocks``' messages, a missing scope."""
    parts: list[str] = []
    errors = answer.get("errors")
    if isinstance(errors, list):
        parts += [str(e) for e in errors]
    meta = answer.get("response_metadata")
    if isinstance(meta, Mapping) and isinstance(meta.get("messages"), list):
        parts += [str(m) for m in meta["messages"] if str(m) not in parts]
    if answer.get("needed"):
        parts.append(f"needed {answer['needed']}")
    return _cut("; ".join(parts), 300)


def _complaint(response: httpx.Response) -> str:
    """A non-2xx answer in a few words: Slack's ``error`` code, or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"])
    return str(body)[:200]
