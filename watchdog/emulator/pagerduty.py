"""An emulator of PagerDuty's Events API v2 (alert and change events), served over real HTTP.

PagerDuty cannot be reached from CI or the demo, and a mocked client would only test our own
assumptions about it. This server speaks ``shared/specs/pagerduty-events-v2.openapi.json``: it
checks events as PagerDuty documents (32-character alphanumeric routing keys it knows, the
``trigger`` payload's summary, source and severity, ``dedup_key`` for acknowledge and resolve,
summaries of at most 1024 characters, ISO 8601 timestamps, about 120 events a minute per routing
key), answers 202 or 400 with PagerDuty's bodies, and keeps each alert's lifecycle (triggered →
acknowledged → resolved) with every event that shaped it. Tests of the callers inject faults
(5xx, 429, delays, dropped connections) and read the request log, both shared with the other
emulators in :mod:`watchdog.emulator.base`; injected errors answer in PagerDuty's shapes.

Use it in-process (``with PagerDutyEmulator() as pd: PagerDuty(pd.url, ROUTING_KEY, http)``) or
standalone: ``python -m watchdog.emulator.pagerduty --port 8092 --routing-key KEY``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from http import HTTPStatus
from typing import Any, Literal, cast

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
    "ROUTING_KEY",
    "Alert",
    "AlertEvent",
    "ChangeEvent",
    "Exchange",
    "ExchangeListener",
    "Fault",
    "PagerDutyEmulator",
]

#: The routing key the emulator accepts unless told otherwise (any 32 alphanumerics will do).
ROUTING_KEY = "0123456789abcdef0123456789abcdef"

BASE_PATH = "/v2"
SEVERITIES = ("critical", "error", "warning", "info")
ACTIONS = ("trigger", "acknowledge", "resolve")
MAX_SUMMARY_CHARS = 1024
MAX_DEDUP_KEY_CHARS = 255
RATE_WINDOW_SECONDS = 60.0

AlertStatus = Literal["triggered", "acknowledged", "resolved"]
EventAction = Literal["trigger", "acknowledge", "resolve"]

_ROUTES = {f"{BASE_PATH}/enqueue": "createV2Event", f"{BASE_PATH}/change/enqueue": "createChangeEvent"}
_ALPHANUMERIC = re.compile(r"[A-Za-z0-9]*")


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class AlertEvent:
    """One ``/enqueue`` event PagerDuty accepted (202), and whether it changed an alert.

    ``applied`` is False for an acknowledge or resolve that found no open alert for its
    ``dedup_key`` and routing key: PagerDuty accepts and then drops those.
    """

    seq: int
    action: EventAction
    routing_key: str
    dedup_key: str
    payload: Mapping[str, Any] | None
    body: Mapping[str, Any]
    applied: bool
    received_at: float


@dataclass(frozen=True)
class Alert:
    """An alert as PagerDuty keeps it: where it stands and every event that made it so.

    ``severity``, ``summary``, ``source`` and ``custom_details`` are those of the latest trigger:
    a further trigger for an open alert is logged on it and updates what it shows.
    """

    dedup_key: str
    routing_key: str
    status: AlertStatus
    severity: str
    summary: str
    source: str
    custom_details: Mapping[str, Any] | None
    payload: Mapping[str, Any]
    links: Sequence[Mapping[str, Any]]
    events: tuple[AlertEvent, ...]
    created_at: float
    resolved_at: float | None

    @property
    def triggers(self) -> int:
        """How many trigger events the alert received (the first one included)."""
        return sum(1 for e in self.events if e.action == "trigger")


@dataclass(frozen=True)
class ChangeEvent:
    """One accepted ``/change/enqueue`` event: context for responders, never a page."""

    seq: int
    routing_key: str
    summary: str
    source: str | None
    custom_details: Mapping[str, Any] | None
    body: Mapping[str, Any]
    received_at: float


# --------------------------------------------------------------------------- internal state


class _InvalidEvent(Exception):
    """Raised while checking an event to answer 400 with PagerDuty's error body."""

    def __init__(self, errors: list[str], *, status: str = "invalid event", message: str | None = None):
        super().__init__("; ".join(errors))
        self.body = {"status": status, "message": message or "Event object is invalid", "errors": errors}


@dataclass
class _Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def _new_dedup_key() -> str:
    return uuid.uuid4().hex


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _routing_key_errors(body: Mapping[str, Any]) -> list[str]:
    key = body.get("routing_key")
    if _missing(key):
        return ["'routing_key' is missing or blank"]
    if not isinstance(key, str):
        return ["'routing_key' must be a string"]
    errors = []
    if len(key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    if not _ALPHANUMERIC.fullmatch(key):
        errors.append("'routing_key' cannot contain non-alphanumeric characters.")
    return errors


def _text_errors(
    payload: Mapping[str, Any], name: str, *, required: bool, limit: int | None = None
) -> list[str]:
    value = payload.get(name)
    if _missing(value):
        return [f"'payload.{name}' is missing or blank"] if required else []
    if not isinstance(value, str):
        return [f"'payload.{name}' must be a string"]
    if limit is not None and len(value) > limit:
        return [f"Length of 'payload.{name}' is too long (maximum is {limit} characters)"]
    return []


def _timestamp_errors(payload: Mapping[str, Any]) -> list[str]:
    value = payload.get("timestamp")
    if value is None:
        return []
    if isinstance(value, str):
        with suppress(ValueError):
            datetime.fromisoformat(value)
            return []
    return ["'payload.timestamp' is not a valid ISO 8601 timestamp"]


def _details(payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
    details = payload.get("custom_details")
    return details if isinstance(details, dict) else None


# --------------------------------------------------------------------------- the emulator


class _Handler(EmulatorHandler):
    """Keep-alive and the ``Server`` header like events.pagerduty.com."""

    server_version = "PagerDuty"
    sys_version = ""
    do_GET = do_POST = do_PUT = EmulatorHandler.serve


class PagerDutyEmulator(HttpEmulator[_Reply]):
    """In-memory PagerDuty Events API v2, served on ``127.0.0.1`` (port 0 = a free port).

    All state sits behind one lock. ``url`` ends in ``/v2`` and is what clients take as the
    events URL (PagerDuty's is ``https://events.pagerduty.com/v2``). Alerts are kept per routing
    key and ``dedup_key``, as PagerDuty does: acknowledge and resolve only reach an open alert
    triggered through the same routing key, and a trigger after a resolve opens a new alert.
    ``rate_limit`` events per routing key per minute are accepted, then 429 (None: no limit).
    """

    service = "PagerDuty"
    handler = _Handler

    def __init__(
        self,
        *,
        routing_keys: Collection[str] = (ROUTING_KEY,),
        rate_limit: int | None = 120,
        host: str = "127.0.0.1",
        port: int = 0,
        on_exchange: ExchangeListener | None = None,
        now: Callable[[], float] = time.time,
        new_dedup_key: Callable[[], str] = _new_dedup_key,
    ) -> None:
        super().__init__(host=host, port=port, now=now, on_exchange=on_exchange)
        self._new_dedup_key = new_dedup_key
        self._routing_keys: set[str] = set()
        for key in routing_keys:
            self.add_routing_key(key)
        self.rate_limit = rate_limit
        self._recent: dict[str, deque[float]] = {}

        self._alerts: list[Alert] = []
        self._events: list[AlertEvent] = []
        self._changes: list[ChangeEvent] = []
        self._event_seq = itertools.count(1)

    # ----------------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """The events URL: ``http://127.0.0.1:<port>/v2`` (POST ``/enqueue`` and ``/change/enqueue``)."""
        return super().url + BASE_PATH

    def add_routing_key(self, key: str) -> None:
        """Accept events for another integration (32 alphanumerics, like PagerDuty's keys)."""
        if len(key) != 32 or not _ALPHANUMERIC.fullmatch(key):
            raise ValueError("a PagerDuty routing key is 32 alphanumeric characters")
        with self._lock:
            self._routing_keys.add(key)

    # ----------------------------------------------------------------------- faults

    def inject_rate_limit(
        self, method: str, path: str, *, retry_after: float | None = None, times: int = 1
    ) -> Fault:
        """Answer 429 ("Request Limit Exceeded"), with ``Retry-After`` when given."""
        return self.inject(
            method,
            path,
            status=429,
            body={"status": "throttle event", "message": "Request Limit Exceeded"},
            headers={} if retry_after is None else {"retry-after": f"{retry_after:g}"},
            times=times,
        )

    # ----------------------------------------------------------------------- request log

    @property
    def exchanges(self) -> list[Exchange]:
        """Every logged exchange, oldest first (filter with :meth:`requests`, e.g. by ``createV2Event``)."""
        return self.requests()

    # ----------------------------------------------------------------------- what PagerDuty holds

    def alerts(self, status: AlertStatus | None = None) -> list[Alert]:
        """Every alert in the order they were opened, optionally only those in ``status``."""
        with self._lock:
            return [a for a in self._alerts if status is None or a.status == status]

    def alert(self, dedup_key: str, routing_key: str | None = None) -> Alert:
        """The newest alert with ``dedup_key`` (and routing key, if given); KeyError when none."""
        with self._lock:
            for found in reversed(self._alerts):
                if found.dedup_key == dedup_key and routing_key in (None, found.routing_key):
                    return found
        raise KeyError(dedup_key)

    def events(self) -> list[AlertEvent]:
        """Every accepted alert event, in the order received (dropped acknowledges included)."""
        with self._lock:
            return list(self._events)

    def change_events(self) -> list[ChangeEvent]:
        """Every accepted change event, in the order received."""
        with self._lock:
            return list(self._changes)

    # ======================================================================= request handling

    def _unserved_operation(self, request: HttpRequest) -> str | None:
        """PagerDuty's log names the endpoint's operation even for requests a fault answered."""
        return _ROUTES.get(request.path.rstrip("/"))

    def _fault_reply(self, fault: Fault) -> _Reply:
        status = cast(int, fault.status)
        if fault.body is None:
            phrase = HTTPStatus(status)
            body: Any = {"status": phrase.phrase, "message": phrase.description}
        else:
            body = fault.body
        return _Reply(status, body, dict(fault.headers))

    def _render(self, reply: _Reply) -> Answer:
        if isinstance(reply.body, bytes | str):  # an injected stand-in, e.g. a proxy's HTML page
            headers = {"content-type": "text/html; charset=utf-8"}
            payload = reply.body.encode() if isinstance(reply.body, str) else reply.body
        else:
            headers = {"content-type": "application/json"}
            payload = json.dumps(reply.body).encode()
        headers.update({k.lower(): v for k, v in reply.headers.items()})
        headers["content-length"] = str(len(payload))
        return Answer(reply.status, headers, payload)

    def _serve(self, request: HttpRequest) -> tuple[str | None, _Reply]:
        operation = _ROUTES.get(request.path.rstrip("/"))
        return operation, self._event_reply(operation, request)

    def _event_reply(self, operation: str | None, request: HttpRequest) -> _Reply:
        path = request.path.rstrip("/")
        if operation is None:
            return _Reply(404, {"status": "Not Found", "message": f"No such endpoint: {path}"})
        if request.method != "POST":
            return _Reply(405, {"status": "Method Not Allowed", "message": "Use POST"}, {"allow": "POST"})
        event = request.json
        if not isinstance(event, dict):
            return _Reply(
                400,
                {
                    "status": "Unrecognized object",
                    "message": "Event object format is unrecognized",
                    "errors": ["JSON parse error"],
                },
            )
        with self._lock:
            try:
                if operation == "createChangeEvent":
                    return self._change(event)
                return self._enqueue(event)
            except _InvalidEvent as exc:
                return _Reply(400, exc.body)
            except Exception as exc:
                log.exception("PagerDuty emulator failed on %s", path)
                self.internal_errors.append(exc)
                return _Reply(500, {"status": "Internal Server Error", "message": f"{type(exc).__name__}"})

    def _admit(self, event: Mapping[str, Any], errors: list[str]) -> tuple[str, _Reply | None]:
        """Check the routing key after the event's own errors; a 429 reply when over the rate limit."""
        errors = _routing_key_errors(event) + errors
        if errors:
            raise _InvalidEvent(errors)
        key = cast(str, event["routing_key"])
        if key not in self._routing_keys:
            raise _InvalidEvent(["Invalid routing key"])
        if self.rate_limit is None:
            return key, None
        recent = self._recent.setdefault(key, deque())
        now = self._now()
        while recent and recent[0] <= now - RATE_WINDOW_SECONDS:
            recent.popleft()
        if len(recent) >= self.rate_limit:
            return key, _Reply(429, {"status": "throttle event", "message": "Request Limit Exceeded"})
        recent.append(now)
        return key, None

    def _enqueue(self, event: dict[str, Any]) -> _Reply:
        action = event.get("event_action")
        errors: list[str] = []
        if _missing(action):
            errors.append("'event_action' is missing or blank")
        elif action not in ACTIONS:
            errors.append(
                "'event_action' is invalid (must be one of the following: "
                "'trigger', 'acknowledge' or 'resolve')"
            )
        dedup_key = event.get("dedup_key")
        if _missing(dedup_key):
            if action in ("acknowledge", "resolve"):
                errors.append("'dedup_key' is missing or blank")
        elif not isinstance(dedup_key, str):
            errors.append("'dedup_key' must be a string")
        elif len(dedup_key) > MAX_DEDUP_KEY_CHARS:
            errors.append(f"Length of 'dedup_key' is too long (maximum is {MAX_DEDUP_KEY_CHARS} characters)")
        payload = event.get("payload")
        if action == "trigger":
            if not isinstance(payload, dict):
                errors.append("'payload' is missing or blank")
            else:
                errors += _text_errors(payload, "summary", required=True, limit=MAX_SUMMARY_CHARS)
                errors += _text_errors(payload, "source", required=True)
                severity = payload.get("severity")
                if _missing(severity):
                    errors.append("'payload.severity' is missing or blank")
                elif severity not in SEVERITIES:
                    errors.append(
                        "'payload.severity' is invalid (must be one of the following: "
                        "'critical', 'warning', 'error' or 'info')"
                    )
                errors += _timestamp_errors(payload)
        routing_key, throttled = self._admit(event, errors)
        if throttled is not None:
            return throttled
        key = cast(str, dedup_key) if not _missing(dedup_key) else self._new_dedup_key()
        self._apply(cast(EventAction, action), routing_key, key, event)
        return _Reply(202, {"status": "success", "message": "Event processed", "dedup_key": key})

    def _apply(self, action: EventAction, routing_key: str, dedup_key: str, body: dict[str, Any]) -> None:
        """Move the alert along its lifecycle and log the event on it."""
        now = self._now()
        index = next(
            (
                i
                for i in range(len(self._alerts) - 1, -1, -1)
                if self._alerts[i].dedup_key == dedup_key
                and self._alerts[i].routing_key == routing_key
                and self._alerts[i].status != "resolved"
            ),
            None,
        )
        payload = body.get("payload") if action == "trigger" else None
        event = AlertEvent(
            seq=next(self._event_seq),
            action=action,
            routing_key=routing_key,
            dedup_key=dedup_key,
            payload=payload,
            body=body,
            applied=action == "trigger" or index is not None,
            received_at=now,
        )
        self._events.append(event)
        if action == "trigger":
            shown = cast(dict[str, Any], payload)
            update = {
                "severity": shown["severity"],
                "summary": shown["summary"],
                "source": shown["source"],
                "custom_details": _details(shown),
                "payload": shown,
                "links": list(body.get("links") or ()),
            }
            if index is None:
                self._alerts.append(
                    Alert(
                        dedup_key=dedup_key,
                        routing_key=routing_key,
                        status="triggered",
                        events=(event,),
                        created_at=now,
                        resolved_at=None,
                        **update,
                    )
                )
            else:
                alert = self._alerts[index]
                self._alerts[index] = replace(alert, events=(*alert.events, event), **update)
        elif index is not None:
            alert = self._alerts[index]
            if action == "acknowledge":
                self._alerts[index] = replace(alert, status="acknowledged", events=(*alert.events, event))
            else:
                self._alerts[index] = replace(
                    alert, status="resolved", resolved_at=now, events=(*alert.events, event)
                )

    def _change(self, event: dict[str, Any]) -> _Reply:
        payload = event.get("payload")
        errors: list[str] = []
        if not isinstance(payload, dict):
            errors.append("'payload' is missing or blank")
        else:
            errors += _text_errors(payload, "summary", required=True, limit=MAX_SUMMARY_CHARS)
            errors += _text_errors(payload, "source", required=False)
            errors += _timestamp_errors(payload)
        routing_key, throttled = self._admit(event, errors)
        if throttled is not None:
            return throttled
        shown = cast(dict[str, Any], payload)
        self._changes.append(
            ChangeEvent(
                seq=next(self._event_seq),
                routing_key=routing_key,
                summary=shown["summary"],
                source=shown.get("source"),
                custom_details=_details(shown),
                body=event,
                received_at=self._now(),
            )
        )
        return _Reply(202, {"status": "success", "message": "Event processed"})


# --------------------------------------------------------------------------- standalone


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator as a server until interrupted (for the demo and Docker)."""
    parser = argparse.ArgumentParser(
        prog="python -m watchdog.emulator.pagerduty",
        description="Serve an emulated PagerDuty Events API v2 (alert and change events).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=8092)
    parser.add_argument(
        "--routing-key",
        action="append",
        help="an integration key to accept (repeatable; default $PAGERDUTY_ROUTING_KEY or the built-in one)",
    )
    parser.add_argument("--rate-limit", type=int, default=120, help="events per routing key per minute")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    keys = args.routing_key or [os.environ.get("PAGERDUTY_ROUTING_KEY", ROUTING_KEY)]
    try:
        emulator = PagerDutyEmulator(
            routing_keys=keys, rate_limit=args.rate_limit, host=args.host, port=args.port
        )
    except ValueError as exc:
        parser.error(str(exc))
    emulator.serve_until_terminated(f"for {len(keys)} routing key(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
