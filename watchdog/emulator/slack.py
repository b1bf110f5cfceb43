"""An emulator of the parts of Slack the watchdog uses, served over real HTTP — and the user too.

Slack cannot be reached from CI or the demo, and a mocked client would only test our own
assumptions about it. This server speaks the Web API methods ``chat.postMessage``,
``chat.update`` and ``conversations.history`` (bearer token → ``invalid_auth``, unknown channel
→ ``channel_not_found``, every error as HTTP 200 with ``{"ok": false, "error": ...}`` as Slack
does), one incoming webhook (:data:`WEBHOOK_PATH`, answering ``ok`` or an error as text), and the
``response_url`` of each button press. Every ``blocks`` payload is checked with slack_sdk's own
models (``Block.parse``, ``validate_json``, and no field the model does not know) and Slack's
limits (50 blocks, 40,000 characters of text): anything else is ``invalid_blocks``.

It keeps each channel's messages with their ``ts`` (from the injected clock, strictly
increasing), metadata, thread replies and every earlier version of an edited message.

It also plays the person in the channel: :meth:`SlackEmulator.press` clicks a button of a stored
message and sends our interactivity endpoint the ``block_actions`` payload Slack would, form
encoded and signed with the app's signing secret (:func:`sign`); what the endpoint then posts to
the ``response_url`` is kept in :attr:`SlackEmulator.responses`. Faults (429 with Retry-After,
5xx, dropped answers) and the request log come from :mod:`watchdog.emulator.base`.

Use it in-process (``with SlackEmulator() as slack: ...`` with ``api_url=slack.api_url``) or
standalone: ``python -m watchdog.emulator.slack --port 8093``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import itertools
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qs, urlencode

import httpx
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

from watchdog.clock import Clock, RealClock
from watchdog.emulator.base import (
    Answer,
    EmulatorHandler,
    Exchange,
    ExchangeListener,
    Fault,
    HttpEmulator,
    HttpRequest,
)

log = logging.getLogger(__name__)

__all__ = [
    "API_APP_ID",
    "BOT_TOKEN",
    "BOT_USER_ID",
    "DEPLOYS_CHANNEL",
    "SIGNING_SECRET",
    "TEAM_ID",
    "VERIFICATION_TOKEN",
    "WEBHOOK_PATH",
    "Exchange",
    "Fault",
    "Message",
    "MessageVersion",
    "ResponsePost",
    "SlackEmulator",
    "block_errors",
    "sign",
]

#: The bot token the emulator accepts unless told otherwise.
BOT_TOKEN = "xoxb-000000000001-000000000002-emulatoremulatorEMULATOR"
#: The app's signing secret: :meth:`SlackEmulator.press` signs its requests with it.
SIGNING_SECRET = "8f742231b10e8888abcd99e1b3c1d2a7"
#: The legacy verification token in every interaction payload (deprecated by Slack; a dummy).
VERIFICATION_TOKEN = "emulatorVerificationToken0"
TEAM_ID = "T0000000001"
TEAM_DOMAIN = "acme"
API_APP_ID = "A0123456789"
BOT_ID = "B0123456789"
BOT_USER_ID = "U0BOT000001"
#: ``#deploys``, the one channel the emulator has unless told otherwise.
DEPLOYS_CHANNEL = "C0123456789"
#: The incoming webhook's path (it posts to :data:`DEPLOYS_CHANNEL`); the full URL is a secret.
WEBHOOK_PATH = "/services/T000/B000/XXXX"

API_PATH = "/api"
ACTIONS_PATH = "/actions/"
MAX_BLOCKS = 50
MAX_TEXT_CHARS = 40_000
MAX_HISTORY_LIMIT = 999

_ERROR_CODES = {429: "ratelimited", 500: "internal_error", 503: "service_unavailable", 504: "request_timeout"}


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """Slack's request signature: ``v0=`` + HMAC-SHA256(secret, ``v0:{timestamp}:{body}``) in hex."""
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class MessageVersion:
    """What a message said before an edit (``chat.update`` or a ``replace_original``)."""

    text: str
    blocks: tuple[Mapping[str, Any], ...]
    metadata: Mapping[str, Any] | None
    replaced_at: float


@dataclass(frozen=True)
class Message:
    """A message as the channel holds it. ``thread_ts`` is set on a reply (the parent's ts);
    ``via`` says how it came (``api``, ``webhook``, ``response_url``); ``edits`` are the earlier
    versions, oldest first."""

    channel: str
    ts: str
    text: str
    blocks: tuple[Mapping[str, Any], ...]
    metadata: Mapping[str, Any] | None
    thread_ts: str | None
    via: str
    body: Mapping[str, Any]
    posted_at: float
    edits: tuple[MessageVersion, ...] = ()

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    def button(self, action_id: str) -> tuple[str | None, Mapping[str, Any]] | None:
        """The ``(block_id, element)`` of the button ``action_id``, if the message shows one."""
        for block in self.blocks:
            if block.get("type") != "actions":
                continue
            for element in block.get("elements") or ():
                if element.get("type") == "button" and element.get("action_id") == action_id:
                    return block.get("block_id"), element
        return None

    def as_api(self, *, with_metadata: bool) -> dict[str, Any]:
        """The message as ``conversations.history`` and interaction payloads show it."""
        shown: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": API_APP_ID,
            "team": TEAM_ID,
            "text": self.text,
            "ts": self.ts,
            "blocks": [dict(b) for b in self.blocks],
        }
        if self.via == "webhook":
            shown["subtype"] = "bot_message"
        if self.thread_ts is not None:
            shown["thread_ts"] = self.thread_ts
        if self.edits:
            shown["edited"] = {"user": BOT_USER_ID, "ts": self.ts}
        if with_metadata and self.metadata is not None:
            shown["metadata"] = dict(self.metadata)
        return shown


@dataclass(frozen=True)
class ResponsePost:
    """What our interactivity endpoint posted to a press's ``response_url``."""

    response_id: str
    channel: str
    message_ts: str
    action_id: str
    user_id: str
    body: Any
    received_at: float


@dataclass
class _Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Press:
    channel: str
    message_ts: str
    action_id: str
    user_id: str


class _SlackError(Exception):
    """An ``ok: false`` answer (HTTP 200 unless told otherwise)."""

    def __init__(self, error: str, *, status: int = 200, **extra: Any) -> None:
        super().__init__(error)
        self.reply = _Reply(status, {"ok": False, "error": error, **extra})


# --------------------------------------------------------------------------- blocks


def _lost_keys(sent: Any, kept: Any, where: str = "") -> list[str]:
    """Fields of ``sent`` that slack_sdk's model dropped: ones Slack does not know."""
    if isinstance(sent, Mapping):
        if not isinstance(kept, Mapping):
            return [where or "/"]
        lost: list[str] = []
        for key, value in sent.items():
            if key not in kept:
                lost.append(f"{where}/{key}")
            else:
                lost += _lost_keys(value, kept[key], f"{where}/{key}")
        return lost
    if isinstance(sent, list):
        if not isinstance(kept, list):
            return [where or "/"]
        lost = [f"{where}/{i}" for i in range(len(kept), len(sent))]
        for i, (a, b) in enumerate(zip(sent, kept, strict=False)):
            lost += _lost_keys(a, b, f"{where}/{i}")
        return lost
    return []


def block_errors(blocks: Any) -> list[str]:
    """Why Slack would refuse ``blocks`` (empty when it would take them), in its
    ``[ERROR] ... [json-pointer:/blocks/0/text]`` style."""
    if not isinstance(blocks, list):
        return ["[ERROR] must be an array [json-pointer:/blocks]"]
    errors: list[str] = []
    if len(blocks) > MAX_BLOCKS:
        errors.append(f"[ERROR] must provide no more than {MAX_BLOCKS} items [json-pointer:/blocks]")
    for i, raw in enumerate(blocks):
        pointer = f"/blocks/{i}"
        if not isinstance(raw, dict):
            errors.append(f"[ERROR] must be an object [json-pointer:{pointer}]")
            continue
        try:
            parsed = Block.parse(raw)
            if parsed is None:
                errors.append(f"[ERROR] unknown block type {raw.get('type')!r} [json-pointer:{pointer}/type]")
                continue
            parsed.validate_json()
            lost = _lost_keys(raw, parsed.to_dict())
        except (SlackObjectFormationError, TypeError, ValueError, KeyError, AttributeError) as exc:
            errors.append(f"[ERROR] {exc} [json-pointer:{pointer}]")
            continue
        errors += [f"[ERROR] unknown or invalid field [json-pointer:{pointer}{p}]" for p in lost]
    return errors


# --------------------------------------------------------------------------- the emulator


class _Handler(EmulatorHandler):
    """Keep-alive and the ``Server`` header like slack.com."""

    server_version = "Apache"
    sys_version = ""
    do_GET = do_POST = EmulatorHandler.serve


class SlackEmulator(HttpEmulator[_Reply]):
    """In-memory Slack workspace with one bot, served on ``127.0.0.1`` (port 0 = a free port).

    ``channels`` maps channel ids to names (``#deploys`` by default); the bot is in all of them.
    ``users`` maps user ids to the names a press shows. ``clock`` (``.now()``) stamps messages.
    All state sits behind one lock; :meth:`press` never holds it while our endpoint answers.
    """

    service = "Slack"
    handler = _Handler

    def __init__(
        self,
        *,
        token: str = BOT_TOKEN,
        channels: Mapping[str, str] | None = None,
        users: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        on_exchange: ExchangeListener | None = None,
    ) -> None:
        self.clock: Clock = clock or RealClock()
        super().__init__(host=host, port=port, now=self.clock.now, on_exchange=on_exchange)
        self.token = token
        self.channels: dict[str, str] = dict(channels or {DEPLOYS_CHANNEL: "deploys"})
        self.users: dict[str, str] = dict(users or {"U0ALICE0001": "alice", "U0BOB000001": "bob"})
        self._messages: dict[str, list[Message]] = {c: [] for c in self.channels}
        self._last_micros = 0
        self._presses: dict[str, _Press] = {}
        self._responses: list[ResponsePost] = []
        self._trigger_seq = itertools.count(1)

    # ----------------------------------------------------------------------- addresses

    @property
    def api_url(self) -> str:
        """The Web API base URL (Slack's is ``https://slack.com/api``)."""
        return self.url + API_PATH

    @property
    def webhook_url(self) -> str:
        """The incoming webhook's URL (posting to ``#deploys``)."""
        return self.url + WEBHOOK_PATH

    # ----------------------------------------------------------------------- faults

    def inject_rate_limit(self, method: str, path: str, *, retry_after: float = 30, times: int = 1) -> Fault:
        """Answer 429 ``ratelimited`` with ``Retry-After``, as Slack's rate limits do."""
        return self.inject(
            method,
            path,
            status=429,
            body={"ok": False, "error": "ratelimited"},
            headers={"retry-after": f"{retry_after:g}"},
            times=times,
        )

    def inject_slack_error(self, method: str, path: str, error: str, *, times: int = 1) -> Fault:
        """Answer HTTP 200 ``{"ok": false, "error": error}`` (``not_in_channel``, ``fatal_error``…)."""
        return self.inject(method, path, status=200, body={"ok": False, "error": error}, times=times)

    # ----------------------------------------------------------------------- what the workspace holds

    def messages(self, channel: str = DEPLOYS_CHANNEL) -> list[Message]:
        """The channel's top-level messages, oldest first (thread replies: :meth:`replies`)."""
        with self._lock:
            return [m for m in self._messages[channel] if not m.is_reply]

    def message(self, ts: str, channel: str | None = None) -> Message:
        """The message ``ts`` (in ``channel``, or any); KeyError when there is none."""
        with self._lock:
            for name in [channel] if channel else list(self._messages):
                for found in self._messages.get(name, ()):
                    if found.ts == ts:
                        return found
        raise KeyError(ts)

    def replies(self, thread_ts: str, channel: str = DEPLOYS_CHANNEL) -> list[Message]:
        """The replies in the thread of ``thread_ts``, oldest first."""
        with self._lock:
            return [m for m in self._messages[channel] if m.is_reply and m.thread_ts == thread_ts]

    def delete(self, ts: str, channel: str = DEPLOYS_CHANNEL) -> None:
        """Someone deletes the message ``ts`` (and its thread) in the channel."""
        with self._lock:
            self._messages[channel] = [m for m in self._messages[channel] if ts not in (m.ts, m.thread_ts)]

    @property
    def responses(self) -> list[ResponsePost]:
        """What our endpoint posted to the ``response_url`` of each press, in order."""
        with self._lock:
            return list(self._responses)

    # ----------------------------------------------------------------------- the user

    def press(
        self,
        message_ts: str,
        action_id: str,
        user_id: str,
        *,
        url: str,
        channel: str | None = None,
        signing_secret: str = SIGNING_SECRET,
        timestamp: float | None = None,
    ) -> httpx.Response:
        """Click the button ``action_id`` of the message ``message_ts`` as ``user_id``: POST the
        signed ``block_actions`` payload Slack would send to ``url`` (the app's interactivity
        endpoint) and return its answer. ``signing_secret`` (the app's) and ``timestamp`` (default:
        the clock's now) let a test send a forged or stale request. A message without that button
        is a LookupError: Slack could not have sent it."""
        with self._lock:
            message = self.message(message_ts, channel)
            found = message.button(action_id)
            if found is None:
                raise LookupError(f"message {message_ts} has no button {action_id!r}")
            block_id, element = found
            response_id = uuid.uuid4().hex
            self._presses[response_id] = _Press(message.channel, message_ts, action_id, user_id)
            now = self.clock.now()
            name = self.users.get(user_id, user_id.lower())
            action: dict[str, Any] = {
                "action_id": action_id,
                "block_id": block_id,
                "text": element.get("text"),
                "value": element.get("value"),
                "type": "button",
                "action_ts": f"{now:.6f}",
            }
            if element.get("style"):
                action["style"] = element["style"]
            payload: dict[str, Any] = {
                "type": "block_actions",
                "user": {"id": user_id, "username": name, "name": name, "team_id": TEAM_ID},
                "api_app_id": API_APP_ID,
                "token": VERIFICATION_TOKEN,
                "container": {
                    "type": "message",
                    "message_ts": message_ts,
                    "channel_id": message.channel,
                    "is_ephemeral": False,
                },
                "trigger_id": f"{next(self._trigger_seq)}.{int(now)}.{uuid.uuid4().hex[:32]}",
                "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
                "enterprise": None,
                "is_enterprise_install": False,
                "channel": {"id": message.channel, "name": self.channels[message.channel]},
                "message": message.as_api(with_metadata=False),
                "state": {"values": {}},
                "response_url": f"{self.url}{ACTIONS_PATH}{response_id}",
                "actions": [action],
            }
        body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()
        stamp = str(int(now if timestamp is None else timestamp))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": sign(signing_secret, stamp, body),
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        }
        with httpx.Client(timeout=10.0) as client:  # outside the lock: the endpoint may call back
            return client.post(url, content=body, headers=headers)

    # ======================================================================= request handling

    def _fault_reply(self, fault: Fault) -> _Reply:
        status = cast(int, fault.status)
        if fault.body is not None:
            body: Any = fault.body
        elif "services" in fault.path:  # the webhook answers in text
            body = _ERROR_CODES.get(status, HTTPStatus(status).phrase.lower().replace(" ", "_"))
        else:
            body = {"ok": False, "error": _ERROR_CODES.get(status, "fatal_error")}
        return _Reply(status, body, dict(fault.headers))

    def _render(self, reply: _Reply) -> Answer:
        if isinstance(reply.body, bytes | str):  # the webhook's "ok", or an injected HTML page
            headers = {"content-type": "text/html"}
            payload = reply.body.encode() if isinstance(reply.body, str) else reply.body
        else:
            headers = {"content-type": "application/json; charset=utf-8"}
            payload = json.dumps(reply.body).encode()
        headers.update({k.lower(): v for k, v in reply.headers.items()})
        headers["content-length"] = str(len(payload))
        return Answer(reply.status, headers, payload)

    def _unserved_operation(self, request: HttpRequest) -> str | None:
        return self._operation(request.path)

    @staticmethod
    def _operation(path: str) -> str | None:
        if path.startswith(API_PATH + "/"):
            method = path[len(API_PATH) + 1 :]
            return method if method in _METHODS else None
        if path == WEBHOOK_PATH:
            return "incoming-webhook"
        if path.startswith(ACTIONS_PATH):
            return "response_url"
        return None

    def _serve(self, request: HttpRequest) -> tuple[str | None, _Reply]:
        operation = self._operation(request.path)
        try:
            with self._lock:
                if operation == "incoming-webhook":
                    return operation, self._webhook(request)
                if operation == "response_url":
                    return operation, self._response_url(request)
                if operation is None:
                    if request.path.startswith(API_PATH + "/"):
                        raise _SlackError("unknown_method", req_method=request.path[len(API_PATH) + 1 :])
                    if request.path.startswith("/services/"):
                        return None, _Reply(404, "no_service")
                    return None, _Reply(404, {"ok": False, "error": "not_found"})
                args, warnings = self._arguments(request)
                self._authenticate(request, args)
                reply = _METHODS[operation](self, args)
                if warnings:
                    reply.body["warning"] = ",".join(warnings)
                    reply.body.setdefault("response_metadata", {})["warnings"] = warnings
                return operation, reply
        except _SlackError as exc:
            return operation, exc.reply
        except Exception as exc:
            log.exception("Slack emulator failed on %s", request.path)
            self.internal_errors.append(exc)
            return operation, _Reply(500, {"ok": False, "error": "internal_error"})

    def _arguments(self, request: HttpRequest) -> tuple[dict[str, Any], list[str]]:
        """A method's arguments: the query, plus a JSON or form-encoded body (Slack takes both)."""
        args: dict[str, Any] = {k: v[-1] for k, v in request.query.items()}
        warnings: list[str] = []
        kind = request.headers.get("content-type", "")
        if request.body and kind.startswith("application/json"):
            if not isinstance(request.json, dict):
                raise _SlackError("invalid_json")
            if "charset" not in kind:
                warnings.append("missing_charset")
            args.update(request.json)
        elif request.body:
            form = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
            for key, values in form.items():
                value: Any = values[-1]
                if key in ("blocks", "metadata") and value:
                    try:
                        value = json.loads(value)
                    except ValueError as exc:
                        raise _SlackError("invalid_arguments") from exc
                args[key] = value
        return args, warnings

    def _authenticate(self, request: HttpRequest, args: Mapping[str, Any]) -> None:
        auth = request.headers.get("authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else args.get("token")
        if not token:
            raise _SlackError("not_authed")
        if token != self.token:
            raise _SlackError("invalid_auth")

    def _channel(self, given: Any, *, by_name: bool) -> str:
        if isinstance(given, str) and given in self.channels:
            return given
        if by_name and isinstance(given, str):
            for channel, name in self.channels.items():
                if given.lstrip("#") == name:
                    return channel
        raise _SlackError("channel_not_found")

    def _next_ts(self) -> str:
        micros = max(int(self.clock.now() * 1_000_000), self._last_micros + 1)
        self._last_micros = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    @staticmethod
    def _content(args: Mapping[str, Any], *, required: bool = True) -> tuple[str, tuple[dict[str, Any], ...]]:
        text, blocks = args.get("text"), args.get("blocks")
        if text is not None and not isinstance(text, str):
            raise _SlackError("invalid_arguments")
        if required and not text and not blocks:
            raise _SlackError("no_text")
        if text and len(text) > MAX_TEXT_CHARS:
            raise _SlackError("msg_too_long")
        if blocks is not None:
            errors = block_errors(blocks)
            if errors:
                raise _SlackError("invalid_blocks", errors=errors, response_metadata={"messages": errors})
        return text or "", tuple(blocks or ())

    @staticmethod
    def _metadata(args: Mapping[str, Any]) -> Mapping[str, Any] | None:
        metadata = args.get("metadata")
        if metadata is None:
            return None
        if (
            not isinstance(metadata, dict)
            or not isinstance(metadata.get("event_type"), str)
            or not isinstance(metadata.get("event_payload"), dict)
        ):
            raise _SlackError("invalid_metadata_format")
        return metadata

    def _store(self, channel: str, **fields: Any) -> Message:
        message = Message(channel=channel, ts=self._next_ts(), posted_at=self.clock.now(), **fields)
        self._messages[channel].append(message)
        return message

    def _replace(self, old: Message, new: Message) -> None:
        stored = self._messages[old.channel]
        stored[stored.index(old)] = new

    # ----------------------------------------------------------------------- the methods

    def _post_message(self, args: dict[str, Any]) -> _Reply:
        channel = self._channel(args.get("channel"), by_name=True)
        text, blocks = self._content(args)
        metadata = self._metadata(args)
        thread_ts = args.get("thread_ts") or None
        if thread_ts is not None:
            parent = next((m for m in self._messages[channel] if m.ts == thread_ts), None)
            if parent is None or parent.is_reply:
                raise _SlackError("thread_not_found")
        message = self._store(
            channel,
            text=text,
            blocks=blocks,
            metadata=metadata,
            thread_ts=thread_ts,
            via="api",
            body=dict(args),
        )
        shown = message.as_api(with_metadata=True)
        return _Reply(200, {"ok": True, "channel": channel, "ts": message.ts, "message": shown})

    def _update(self, args: dict[str, Any]) -> _Reply:
        channel = self._channel(args.get("channel"), by_name=False)
        ts = args.get("ts")
        old = next((m for m in self._messages[channel] if m.ts == ts), None)
        if old is None:
            raise _SlackError("message_not_found")
        if old.via == "webhook":
            raise _SlackError("cant_update_message")
        text, blocks = self._content(args, required=False)
        metadata = self._metadata(args)
        earlier = MessageVersion(old.text, old.blocks, old.metadata, self.clock.now())
        new = replace(
            old,
            text=text if "text" in args else old.text,
            blocks=blocks if "blocks" in args else old.blocks,
            metadata=metadata if "metadata" in args else old.metadata,
            edits=(*old.edits, earlier),
        )
        self._replace(old, new)
        shown = new.as_api(with_metadata=True)
        return _Reply(200, {"ok": True, "channel": channel, "ts": new.ts, "text": new.text, "message": shown})

    def _history(self, args: dict[str, Any]) -> _Reply:
        channel = self._channel(args.get("channel"), by_name=False)
        try:
            limit = min(int(args.get("limit") or 100), MAX_HISTORY_LIMIT)
            oldest = float(args.get("oldest") or 0)
            latest = float(args["latest"]) if args.get("latest") else None
            start = int(args.get("cursor") or 0)
        except ValueError as exc:
            raise _SlackError("invalid_arguments") from exc
        inclusive = str(args.get("inclusive", "")).lower() in ("1", "true")
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")

        def within(m: Message) -> bool:
            t = float(m.ts)
            above = t >= oldest if inclusive else t > oldest
            below = latest is None or (t <= latest if inclusive else t < latest)
            return above and below

        found = [m for m in reversed(self._messages[channel]) if not m.is_reply and within(m)]
        page = found[start : start + limit]
        more = start + limit < len(found)
        messages = []
        for m in page:
            shown = m.as_api(with_metadata=with_metadata)
            replies = [r for r in self._messages[channel] if r.is_reply and r.thread_ts == m.ts]
            if replies:
                shown.update(thread_ts=m.ts, reply_count=len(replies), latest_reply=replies[-1].ts)
            messages.append(shown)
        return _Reply(
            200,
            {
                "ok": True,
                "messages": messages,
                "has_more": more,
                "pin_count": 0,
                "response_metadata": {"next_cursor": str(start + limit) if more else ""},
            },
        )

    def _webhook(self, request: HttpRequest) -> _Reply:
        """An incoming webhook: ``ok``, or Slack's error as text with a 4xx."""
        if request.method != "POST":
            return _Reply(405, "invalid_method")
        body = request.json
        if not isinstance(body, dict):
            form = parse_qs(request.body.decode("utf-8", "replace"))
            try:
                body = json.loads(form["payload"][-1]) if "payload" in form else None
            except ValueError:
                body = None
        if not isinstance(body, dict):
            return _Reply(400, "invalid_payload")
        try:
            text, blocks = self._content(body)
        except _SlackError as exc:
            return _Reply(400, str(exc))
        self._store(
            DEPLOYS_CHANNEL if DEPLOYS_CHANNEL in self._messages else next(iter(self._messages)),
            text=text,
            blocks=blocks,
            metadata=None,
            thread_ts=None,
            via="webhook",
            body=body,
        )
        return _Reply(200, "ok")

    def _response_url(self, request: HttpRequest) -> _Reply:
        """What an app posts to a press's ``response_url``: kept, and applied to the message."""
        response_id = request.path[len(ACTIONS_PATH) :]
        press = self._presses.get(response_id)
        if press is None:
            return _Reply(404, {"ok": False, "error": "expired_url"})
        if request.method != "POST" or not isinstance(request.json, dict):
            return _Reply(400, {"ok": False, "error": "invalid_payload"})
        body = request.json
        self._responses.append(
            ResponsePost(
                response_id=response_id,
                channel=press.channel,
                message_ts=press.message_ts,
                action_id=press.action_id,
                user_id=press.user_id,
                body=body,
                received_at=self.clock.now(),
            )
        )
        try:
            text, blocks = self._content(body, required=not body.get("delete_original"))
        except _SlackError as exc:
            return _Reply(400, {"ok": False, "error": str(exc)})
        old = next((m for m in self._messages[press.channel] if m.ts == press.message_ts), None)
        if body.get("delete_original") and old is not None:
            self._messages[press.channel].remove(old)
        elif body.get("replace_original") and old is not None:
            earlier = MessageVersion(old.text, old.blocks, old.metadata, self.clock.now())
            self._replace(old, replace(old, text=text, blocks=blocks, edits=(*old.edits, earlier)))
        elif body.get("response_type") == "in_channel":
            self._store(
                press.channel,
                text=text,
                blocks=blocks,
                metadata=None,
                thread_ts=None,
                via="response_url",
                body=body,
            )
        return _Reply(200, {"ok": True})


_METHODS = {
    "chat.postMessage": SlackEmulator._post_message,
    "chat.update": SlackEmulator._update,
    "conversations.history": SlackEmulator._history,
}


# --------------------------------------------------------------------------- standalone


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator as a server until interrupted (for the demo and Docker)."""
    parser = argparse.ArgumentParser(
        prog="python -m watchdog.emulator.slack",
        description="Serve an emulated Slack (chat.postMessage, chat.update, conversations.history, "
        "an incoming webhook, response URLs).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=8093)
    parser.add_argument("--token", default=BOT_TOKEN, help="the bot token to accept")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    emulator = SlackEmulator(token=args.token, host=args.host, port=args.port)
    emulator.serve_until_terminated(f"(webhook {WEBHOOK_PATH}, channel #deploys = {DEPLOYS_CHANNEL})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
