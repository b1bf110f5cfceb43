"""Telling any HTTP endpoint: the notice as signed JSON, for receivers we do not write ourselves.

The body is ``Notice.as_dict()`` as compact UTF-8 JSON with sorted keys, so that the bytes the
signature covers are the bytes sent. The signature works like GitHub's ``X-Hub-Signature-256`` with
the timestamp bound in against replay: ``X-Watchdog-Signature-256: sha256=<hex HMAC-SHA256(secret,
"{X-Watchdog-Timestamp}." + body)>``. :func:`sign` and :func:`verify` are public so that receivers
(and the docs' examples) check it the same way.

There is no way to ask a receiver whether a delivery arrived, so :meth:`WebhookNotifier.recover`
says None and a lost answer means the notice is sent again, with the same ``X-Watchdog-Delivery``
(the notice's key): receivers are expected to drop a delivery id they have seen, as GitHub advises
for its webhooks.

The receiver's answers map onto the watchdog's errors: 2xx is done; 408, 429, 5xx, timeouts and
network errors may pass later (``ActionRetryable``, with ``Retry-After`` when given); any other 4xx
is final. The secret never leaves the process: only the signature travels, and the secret is
scrubbed from every message, log line and repr.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import httpx
import structlog

from actions.http import send
from actions.notify import Notice
from watchdog.clock import Clock
from watchdog.config import WebhookNotifierConfig
from watchdog.errors import WatchdogError
from watchdog.observability import redact

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "SignatureError",
    "WebhookNotifier",
    "notice_body",
    "sign",
    "verify",
]

log = structlog.get_logger("actions.webhook")

SERVICE = "webhook"
EVENT_HEADER = "X-Watchdog-Event"
DELIVERY_HEADER = "X-Watchdog-Delivery"
TIMESTAMP_HEADER = "X-Watchdog-Timestamp"
SIGNATURE_HEADER = "X-Watchdog-Signature-256"
#: How many delivered notice keys the memo keeps (a receiver dedups the rest by delivery id).
MEMO_KEYS = 50
_PREFIX = "sha256="


class SignatureError(WatchdogError):
    """A delivery's signature does not hold: ``reason`` says why (missing, malformed, stale, wrong)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Watchdog-Signature-256`` value: ``sha256=`` and the hex HMAC of ``"{timestamp}." + body``."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    return _PREFIX + mac.hexdigest()


def verify(
    secret: bytes, headers: Mapping[str, str], body: bytes, now: float, max_age_s: float = 300
) -> None:
    """Check a delivery's signature and timestamp; raise :class:`SignatureError` when either fails.

    ``headers`` may use any case. A timestamp more than ``max_age_s`` from ``now`` either way is
    refused (a replay, or a clock far off); the comparison is constant-time."""
    lower = {k.lower(): v for k, v in headers.items()}
    signature = lower.get(SIGNATURE_HEADER.lower())
    stamp = lower.get(TIMESTAMP_HEADER.lower())
    if signature is None:
        raise SignatureError(f"missing {SIGNATURE_HEADER}")
    if stamp is None:
        raise SignatureError(f"missing {TIMESTAMP_HEADER}")
    if not stamp.isascii() or not stamp.isdigit():
        raise SignatureError(f"{TIMESTAMP_HEADER} is not a whole number of seconds")
    digest = signature[len(_PREFIX) :]
    if not signature.startswith(_PREFIX) or len(digest) != 64 or not _is_hex(digest):
        raise SignatureError(f"{SIGNATURE_HEADER} is not sha256=<64 hex digits>")
    timestamp = int(stamp)
    if timestamp < now - max_age_s:
        raise SignatureError(f"{TIMESTAMP_HEADER} is more than {max_age_s:g} s old")
    if timestamp > now + max_age_s:
        raise SignatureError(f"{TIMESTAMP_HEADER} is more than {max_age_s:g} s in the future")
    if not hmac.compare_digest(sign(secret, timestamp, body), signature.lower()):
        raise SignatureError(f"{SIGNATURE_HEADER} does not match the body")


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def notice_body(notice: Notice) -> bytes:
    """The bytes posted and signed: the notice as compact UTF-8 JSON, keys sorted, secrets scrubbed."""
    payload = redact(notice.as_dict())
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class WebhookNotifier:
    """Posts every notice, signed, to one URL; the memo remembers the keys already delivered."""

    def __init__(self, name: str, cfg: WebhookNotifierConfig, http: httpx.Client, clock: Clock) -> None:
        self.name = name
        self.url = cfg.url
        self.timeout_s = cfg.timeout_s
        self._secret = cfg.secret.get_secret_value()
        self._http = http
        self._clock = clock

    def __repr__(self) -> str:
        return f"WebhookNotifier(name={self.name!r}, url={redact(self.url)!r})"

    def deliver(self, notice: Notice, memo: Mapping[str, Any]) -> dict[str, Any]:
        delivered = [str(k) for k in memo.get("delivered", ())]
        if notice.key in delivered:
            return dict(memo)
        self._post(notice)
        return {**memo, "delivered": [*delivered, notice.key][-MEMO_KEYS:]}

    def recover(self, notice: Notice, memo: Mapping[str, Any]) -> dict[str, Any] | None:
        """None: a receiver cannot be asked. The notice goes again under the same delivery id, which
        the receiver drops if it had it."""
        return None

    # ------------------------------------------------------------------ plumbing

    def _redact(self, text: str) -> str:
        text = redact(text)
        return text.replace(self._secret, "[secret]") if self._secret else text

    def _post(self, notice: Notice) -> None:
        body = notice_body(notice)
        timestamp = int(self._clock.now())  # signed afresh on every attempt: a retry is never stale
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "rollback-watchdog",
            EVENT_HEADER: notice.event.value,
            DELIVERY_HEADER: notice.key,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._secret.encode(), timestamp, body),
        }
        bound = log.bind(notifier=self.name, key=notice.key, subject=notice.subject, env=notice.env)
        response = send(
            self._http,
            "POST",
            self.url,
            service=SERVICE,
            what=f"{self.name} delivery {notice.key}",
            scrub=self._redact,
            log=bound,
            content=body,
            headers=headers,
            timeout=self.timeout_s,
        )
        bound.info("webhook.delivered", status=response.status_code)
