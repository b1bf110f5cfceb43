"""An emulator of PagerDuty's Events API v2 (alert and change events), served over real HTTP.

PagerDuty cannot be reached from CI or the demo, and a mocked client would only test our own
assumptions about it. This server speaks ``shared/specs/pagerduty-events-v2.openapi.json``: it
checks events as PagerDuty documents (32-character alphanumeric routing keys it knows, the
``trigger`` payload's summary, source and severity, ``dedup_key`` for acknowledge and resolve,
summaries of at most 1024 characters, ISO 8601 timestamps, about 120 events a minute per routing
key), answers 202 or 400 with PagerDuty's bodies, and keeps each alert's lifecycle (triggered →
acknowledged → resolved) with every event that shaped it. Tests of the callers inject faults
(5xx, 429, delays, dropped connections) and read the request log.

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
import signal
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, cast
from urllib.parse import parse_qs, urlsplit

from watchdog.emulator.github import Exchange, ExchangeListener, Fault

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


@dataclass
class _Outcome:
    status: int | None
    headers: dict[str, str]
    body: bytes
    drop: bool


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


class PagerDutyEmulator:
    """In-memory PagerDuty Events API v2, served on ``127.0.0.1`` (port 0 = a free port).

    All state sits behind one lock. ``url`` ends in ``/v2`` and is what clients take as the
    events URL (PagerDuty's is ``https://events.pagerduty.com/v2``). Alerts are kept per routing
    key and ``dedup_key``, as PagerDuty does: acknowledge and resolve only reach an open alert
    triggered through the same routing key, and a trigger after a resolve opens a new alert.
    ``rate_limit`` events per routing key per minute are accepted, then 429 (None: no limit).
    """

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
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._now = now
        self._new_dedup_key = new_dedup_key
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._server_thread: threading.Thread | None = None
        self._routing_keys: set[str] = set()
        for key in routing_keys:
            self.add_routing_key(key)
        self.rate_limit = rate_limit
        self._recent: dict[str, deque[float]] = {}

        self._alerts: list[Alert] = []
        self._events: list[AlertEvent] = []
        self._changes: list[ChangeEvent] = []
        self._event_seq = itertools.count(1)

        self._faults: list[Fault] = []
        self._log: list[Exchange] = []
        self._log_lock = threading.Lock()
        self._seq = itertools.count(1)
        self._listeners: list[ExchangeListener] = [on_exchange] if on_exchange else []
        self.listener_errors: list[BaseException] = []
        self.internal_errors: list[BaseException] = []

    # ----------------------------------------------------------------------- lifecycle

    def start(self) -> PagerDutyEmulator:
        """Bind and serve in a background thread; returns self."""
        if self._server is not None:
            raise RuntimeError("the PagerDuty emulator is already running")
        self._stopping.clear()
        self._server = _Server((self._host, self._port), self)
        self._server_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="pagerduty-emulator",
            daemon=True,
        )
        self._server_thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; requests held by an injected delay are let go at once."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._server_thread is not None:
            self._server_thread.join(timeout=5)
            self._server_thread = None

    def __enter__(self) -> PagerDutyEmulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The events URL: ``http://127.0.0.1:<port>/v2`` (POST ``/enqueue`` and ``/change/enqueue``)."""
        if self._server is None:
            raise RuntimeError("the PagerDuty emulator is not running; call start() first")
        host, port = self._server.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else str(host)
        return f"http://{shown}:{port}{BASE_PATH}"

    def add_routing_key(self, key: str) -> None:
        """Accept events for another integration (32 alphanumerics, like PagerDuty's keys)."""
        if len(key) != 32 or not _ALPHANUMERIC.fullmatch(key):
            raise ValueError("a PagerDuty routing key is 32 alphanumeric characters")
        with self._lock:
            self._routing_keys.add(key)

    # ----------------------------------------------------------------------- faults

    def inject(
        self,
        method: str,
        path: str,
        *,
        status: int | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        drop: Literal["before", "after"] | None = None,
        times: int = 1,
    ) -> Fault:
        """Queue a fault for requests whose method matches (``*`` = any) and path matches the regex."""
        if times < 1:
            raise ValueError("a fault fires at least once")
        re.compile(path)
        fault = Fault(method, path, status, body, dict(headers or {}), delay, drop, times)
        with self._lock:
            self._faults.append(fault)
        return fault

    def inject_error(self, method: str, path: str, status: int = 502, *, times: int = 1) -> Fault:
        """Answer with an error (502 by default) in PagerDuty's error shape, without processing."""
        return self.inject(method, path, status=status, times=times)

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

    def inject_delay(self, method: str, path: str, seconds: float, *, times: int = 1) -> Fault:
        """Serve matching requests normally but only after ``seconds`` (to make clients time out)."""
        return self.inject(method, path, delay=seconds, times=times)

    def inject_accept_then_drop(self, method: str, path: str, *, times: int = 1) -> Fault:
        """Process matching events for real, then close the connection without an answer."""
        return self.inject(method, path, drop="after", times=times)

    def inject_drop(self, method: str, path: str, *, times: int = 1) -> Fault:
        """Close the connection of matching requests without processing them."""
        return self.inject(method, path, drop="before", times=times)

    @property
    def pending_faults(self) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults if not f.exhausted]

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # ----------------------------------------------------------------------- request log

    def add_listener(self, listener: ExchangeListener) -> None:
        """Call ``listener`` with every exchange, before its response is sent."""
        self._listeners.append(listener)

    @property
    def exchanges(self) -> list[Exchange]:
        with self._log_lock:
            return list(self._log)

    def requests(
        self, method: str | None = None, path: str | None = None, operation: str | None = None
    ) -> list[Exchange]:
        """Logged exchanges filtered by method, path regex and/or operationId (``createV2Event``)."""
        return [
            ex
            for ex in self.exchanges
            if (method is None or ex.method == method.upper())
            and (path is None or re.search(path, ex.path))
            and (operation is None or ex.operation == operation)
        ]

    def clear_log(self) -> None:
        with self._log_lock:
            self._log.clear()

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

    def _handle(self, method: str, target: str, raw_headers: Mapping[str, str], body: bytes) -> _Outcome:
        """Serve one request end to end (faults, routing, the event itself) and log it."""
        parts = urlsplit(target)
        path = parts.path or "/"
        headers = {k.lower(): v for k, v in raw_headers.items()}
        try:
            request_json: Any = json.loads(body) if body else None
        except ValueError:
            request_json = None

        fault = self._take_fault(method, path)
        if fault is not None and fault.delay > 0:
            self._stopping.wait(fault.delay)
        operation = _ROUTES.get(path.rstrip("/"))
        reply: _Reply | None
        if fault is not None and fault.drop == "before":
            reply = None
        elif fault is not None and fault.status is not None:
            reply = self._fault_reply(fault)
        else:
            reply = self._serve(method, path.rstrip("/"), body)

        response_headers: dict[str, str] = {}
        payload = b""
        if reply is not None:
            if isinstance(reply.body, bytes | str):  # an injected stand-in, e.g. a proxy's HTML page
                response_headers = {"content-type": "text/html; charset=utf-8"}
                payload = reply.body.encode() if isinstance(reply.body, str) else reply.body
            else:
                response_headers = {"content-type": "application/json"}
                payload = json.dumps(reply.body).encode()
            response_headers.update({k.lower(): v for k, v in reply.headers.items()})
            response_headers["content-length"] = str(len(payload))
        dropped = reply is None or (fault is not None and fault.drop == "after")
        try:
            response_json = json.loads(payload) if payload else None
        except ValueError:
            response_json = None
        exchange = Exchange(
            seq=next(self._seq),
            method=method.upper(),
            path=path,
            query=parse_qs(parts.query, keep_blank_values=True),
            request_headers=headers,
            request_body=body,
            request_json=request_json,
            status=reply.status if reply else None,
            response_headers=response_headers,
            response_body=payload,
            response_json=response_json,
            operation=operation,
            fault=fault,
            dropped=dropped,
            at=self._now(),
        )
        self._record(exchange)
        return _Outcome(status=exchange.status, headers=response_headers, body=payload, drop=dropped)

    def _record(self, exchange: Exchange) -> None:
        with self._log_lock:
            self._log.append(exchange)
        for listener in list(self._listeners):
            try:
                listener(exchange)
            except Exception as exc:
                log.exception("exchange listener failed")
                self.listener_errors.append(exc)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if not fault.exhausted and fault.matches(method, path):
                    fault.fired += 1
                    return fault
        return None

    @staticmethod
    def _fault_reply(fault: Fault) -> _Reply:
        status = cast(int, fault.status)
        if fault.body is None:
            phrase = HTTPStatus(status)
            body: Any = {"status": phrase.phrase, "message": phrase.description}
        else:
            body = fault.body
        return _Reply(status, body, dict(fault.headers))

    def _serve(self, method: str, path: str, raw: bytes) -> _Reply:
        operation = _ROUTES.get(path)
        if operation is None:
            return _Reply(404, {"status": "Not Found", "message": f"No such endpoint: {path}"})
        if method.upper() != "POST":
            return _Reply(405, {"status": "Method Not Allowed", "message": "Use POST"}, {"allow": "POST"})
        try:
            event = json.loads(raw)
        except ValueError:
            event = None
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


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: PagerDutyEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    """Turns HTTP into :meth:`PagerDutyEmulator._handle` calls; keep-alive like events.pagerduty.com."""

    protocol_version = "HTTP/1.1"
    server_version = "PagerDuty"
    sys_version = ""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def _serve(self) -> None:
        emulator = cast(_Server, self.server).emulator
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        outcome = emulator._handle(self.command, self.path, dict(self.headers.items()), body)
        if outcome.drop or outcome.status is None:
            self.close_connection = True
            with suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            self.send_response(outcome.status)
            for name, value in outcome.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if outcome.body:
                self.wfile.write(outcome.body)
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


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
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    emulator.start()
    log.info("PagerDuty emulator serving at %s for %d routing key(s)", emulator.url, len(keys))
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
