"""An emulator of Opsgenie's Alert API v2 (create, get, notes, close), served over real HTTP.

Opsgenie cannot be reached from CI or the demo, and a mocked client would only test our own
assumptions about it. This server speaks the part of ``shared/specs/opsgenie-alerts.swagger2.json``
the watchdog uses: it knows its API keys (``Authorization: GenieKey <key>``, else 401), checks
bodies as Opsgenie documents (a message of at most 130 characters, an alias of at most 512, a
description of at most 15000, string-valued details, P1–P5; else 422 with Opsgenie's per-field
``errors``), deduplicates creates by alias (an open alert with the alias counts one more
occurrence, as Opsgenie does), finds alerts by id, tiny id or alias (``identifierType``), and
keeps every alert with its notes and log. Accepted requests answer 202 ``Request will be
processed``, as Opsgenie's asynchronous API does. Faults (5xx, 429, dropped connections) and the
request log come from :mod:`watchdog.emulator.base`; injected errors answer in Opsgenie's shape.

Use it in-process (``with OpsgenieEmulator() as og: ...`` with ``api_url=og.url``) or standalone:
``python -m watchdog.emulator.opsgenie --port 8093 --api-key KEY``.
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
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Literal, cast
from urllib.parse import unquote

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

__all__ = ["API_KEY", "Alert", "AlertNote", "Exchange", "ExchangeListener", "Fault", "OpsgenieEmulator"]

#: The API key the emulator accepts unless told otherwise (Opsgenie's keys are UUIDs).
API_KEY = "2f1c7d7e-9a4b-4c3e-8f57-6b0d2a9e1c44"

MAX_MESSAGE_CHARS = 130
MAX_ALIAS_CHARS = 512
MAX_DESCRIPTION_CHARS = 15000
MAX_NOTE_CHARS = 25000
MAX_ENTITY_CHARS = 512
MAX_SOURCE_CHARS = 100
MAX_USER_CHARS = 100
MAX_TAGS = 20
MAX_TAG_CHARS = 50
PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
RESPONDER_TYPES = ("team", "user", "escalation", "schedule")
TOOK = 0.01

AlertStatus = Literal["open", "closed"]

#: (method, path pattern, operationId) — the Alert API's operations this emulator serves.
_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"^/v2/alerts$"), "createAlert"),
    ("GET", re.compile(r"^/v2/alerts/(?P<identifier>[^/]+)$"), "getAlert"),
    ("POST", re.compile(r"^/v2/alerts/(?P<identifier>[^/]+)/notes$"), "addNote"),
    ("GET", re.compile(r"^/v2/alerts/(?P<identifier>[^/]+)/notes$"), "listNotes"),
    ("POST", re.compile(r"^/v2/alerts/(?P<identifier>[^/]+)/close$"), "closeAlert"),
)


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class AlertNote:
    note: str
    user: str | None
    source: str | None
    created_at: float


@dataclass(frozen=True)
class Alert:
    """An alert as Opsgenie keeps it; ``count`` is how many creates it absorbed (the first included)."""

    id: str
    tiny_id: str
    alias: str
    message: str
    status: AlertStatus
    count: int
    priority: str
    description: str
    tags: tuple[str, ...]
    details: Mapping[str, str]
    entity: str
    source: str
    responders: tuple[Mapping[str, str], ...]
    created_at: float
    updated_at: float
    closed_at: float | None = None
    notes: tuple[AlertNote, ...] = ()
    #: What happened to the alert, oldest first ("created", "deduplicated", "note added", "closed").
    log: tuple[str, ...] = ()
    #: The create requests' bodies, oldest first.
    creates: tuple[Mapping[str, Any], ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The alert as ``GET /v2/alerts/{identifier}`` shows it in ``data``."""
        return {
            "id": self.id,
            "tinyId": self.tiny_id,
            "alias": self.alias,
            "message": self.message,
            "status": self.status,
            "acknowledged": False,
            "isSeen": False,
            "tags": list(self.tags),
            "snoozed": False,
            "count": self.count,
            "lastOccurredAt": _iso(self.updated_at),
            "createdAt": _iso(self.created_at),
            "updatedAt": _iso(self.updated_at),
            "source": self.source,
            "owner": "",
            "priority": self.priority,
            "responders": [
                {
                    "type": r["type"],
                    "id": r.get("id") or str(uuid.uuid5(uuid.NAMESPACE_URL, repr(sorted(r.items())))),
                }
                for r in self.responders
            ],
            "actions": [],
            "entity": self.entity,
            "description": self.description,
            "details": dict(self.details),
        }


# --------------------------------------------------------------------------- internal state


@dataclass
class _Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text_errors(body: Mapping[str, Any], name: str, limit: int, *, required: bool = False) -> dict[str, str]:
    value = body.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return {name: f"{name.capitalize()} can not be empty."} if required else {}
    if not isinstance(value, str):
        return {name: f"{name.capitalize()} must be a string."}
    if len(value) > limit:
        return {name: f"{name.capitalize()} can not be longer than {limit} characters."}
    return {}


def _action_errors(body: Mapping[str, Any]) -> dict[str, str]:
    """The errors of the fields every alert action takes (``user``, ``source``, ``note``)."""
    return {
        **_text_errors(body, "user", MAX_USER_CHARS),
        **_text_errors(body, "source", MAX_SOURCE_CHARS),
        **_text_errors(body, "note", MAX_NOTE_CHARS),
    }


def _create_errors(body: Mapping[str, Any]) -> dict[str, str]:
    errors = {
        **_text_errors(body, "message", MAX_MESSAGE_CHARS, required=True),
        **_text_errors(body, "alias", MAX_ALIAS_CHARS),
        **_text_errors(body, "description", MAX_DESCRIPTION_CHARS),
        **_text_errors(body, "entity", MAX_ENTITY_CHARS),
        **_action_errors(body),
    }
    tags = body.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        errors["tags"] = "Tags must be a list of strings."
    elif len(tags) > MAX_TAGS or any(len(t) > MAX_TAG_CHARS for t in tags):
        errors["tags"] = f"At most {MAX_TAGS} tags of at most {MAX_TAG_CHARS} characters."
    details = body.get("details", {})
    if not isinstance(details, dict) or not all(isinstance(v, str) for v in details.values()):
        errors["details"] = "Details must be a map of strings."
    priority = body.get("priority", "P3")
    if priority not in PRIORITIES:
        errors["priority"] = "Priority should be one of [P1, P2, P3, P4, P5]."
    responders = body.get("responders", [])
    if not isinstance(responders, list) or not all(
        isinstance(r, dict)
        and r.get("type") in RESPONDER_TYPES
        and any(isinstance(r.get(k), str) for k in ("id", "name", "username"))
        for r in responders
    ):
        errors["responders"] = "Responders must have a type and an id, name or username."
    return errors


class _Unprocessable(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class _Handler(EmulatorHandler):
    server_version = "opsgenie-emulator"
    sys_version = ""
    do_GET = do_POST = EmulatorHandler.serve


class OpsgenieEmulator(HttpEmulator[_Reply]):
    """In-memory Opsgenie Alert API v2, served on ``127.0.0.1`` (port 0 = a free port).

    All state sits behind one lock. ``url`` is the API's base URL (Opsgenie's is
    ``https://api.opsgenie.com``); paths start with ``/v2/alerts``. A create with the alias of an
    open alert raises its ``count`` and adds to its log; after a close the same alias opens a new one.
    """

    service = "Opsgenie"
    handler = _Handler

    def __init__(
        self,
        *,
        api_keys: Collection[str] = (API_KEY,),
        host: str = "127.0.0.1",
        port: int = 0,
        on_exchange: ExchangeListener | None = None,
        now: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        super().__init__(host=host, port=port, now=now, on_exchange=on_exchange)
        self._api_keys = set(api_keys)
        self._new_id = new_id
        self._alerts: list[Alert] = []
        self._tiny = itertools.count(1)

    def add_api_key(self, key: str) -> None:
        with self._lock:
            self._api_keys.add(key)

    # ----------------------------------------------------------------------- faults

    def inject_rate_limit(
        self, method: str, path: str, *, retry_after: float | None = None, times: int = 1
    ) -> Fault:
        """Answer 429, as Opsgenie does past its request quota, with ``Retry-After`` when given."""
        return self.inject(
            method,
            path,
            status=429,
            body=self._error_body("You are making too many requests! To avoid errors, slow down."),
            headers={} if retry_after is None else {"retry-after": f"{retry_after:g}"},
            times=times,
        )

    # ----------------------------------------------------------------------- what Opsgenie holds

    @property
    def exchanges(self) -> list[Exchange]:
        return self.requests()

    def alerts(self, status: AlertStatus | None = None) -> list[Alert]:
        """Every alert in the order they were opened, optionally only those in ``status``."""
        with self._lock:
            return [a for a in self._alerts if status is None or a.status == status]

    def alert(self, alias: str) -> Alert:
        """The newest alert with ``alias``; KeyError when none."""
        with self._lock:
            index = self._find(alias, "alias")
            if index is None:
                raise KeyError(alias)
            return self._alerts[index]

    # ======================================================================= request handling

    def _unserved_operation(self, request: HttpRequest) -> str | None:
        return self._route(request)[0]

    def _route(self, request: HttpRequest) -> tuple[str | None, str | None]:
        """The operation and the (decoded) alert identifier of a request."""
        for method, pattern, operation in _ROUTES:
            found = pattern.match(request.path)
            if found and method == request.method:
                identifier = found.groupdict().get("identifier")
                return operation, None if identifier is None else unquote(identifier)
        return None, None

    def _error_body(self, message: str, errors: Mapping[str, str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"message": message, "took": TOOK, "requestId": self._new_id()}
        if errors:
            body["errors"] = dict(errors)
        return body

    def _accepted(self) -> _Reply:
        return _Reply(202, {"result": "Request will be processed", "took": TOOK, "requestId": self._new_id()})

    def _fault_reply(self, fault: Fault) -> _Reply:
        status = cast(int, fault.status)
        body = fault.body if fault.body is not None else self._error_body(HTTPStatus(status).phrase)
        return _Reply(status, body, dict(fault.headers))

    def _render(self, reply: _Reply) -> Answer:
        if isinstance(reply.body, bytes | str):  # an injected stand-in, e.g. a proxy's HTML page
            headers = {"content-type": "text/html; charset=utf-8"}
            payload = reply.body.encode() if isinstance(reply.body, str) else reply.body
        else:
            headers = {"content-type": "application/json"}
            payload = json.dumps(reply.body).encode()
            if isinstance(reply.body, dict) and isinstance(reply.body.get("requestId"), str):
                headers["x-request-id"] = reply.body["requestId"]
        headers.update({k.lower(): v for k, v in reply.headers.items()})
        headers["content-length"] = str(len(payload))
        return Answer(reply.status, headers, payload)

    def _serve(self, request: HttpRequest) -> tuple[str | None, _Reply]:
        operation, identifier = self._route(request)
        if operation is None:
            return None, _Reply(404, self._error_body(f"No such endpoint: {request.method} {request.path}"))
        auth = request.headers.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        with self._lock:
            if scheme != "GenieKey" or key not in self._api_keys:
                return None, _Reply(401, self._error_body("Could not authenticate"))
            try:
                return operation, self._operate(operation, identifier, request)
            except _Unprocessable as exc:
                message = "Request body is not processable. Please check the errors."
                return operation, _Reply(422, self._error_body(message, exc.errors))
            except Exception as exc:
                log.exception("Opsgenie emulator failed on %s", request.path)
                self.internal_errors.append(exc)
                return operation, _Reply(500, self._error_body(type(exc).__name__))

    def _operate(self, operation: str, identifier: str | None, request: HttpRequest) -> _Reply:
        body = request.json if request.body else {}
        if not isinstance(body, dict):
            return _Reply(400, self._error_body("Could not parse the request body as a JSON object."))
        if operation == "createAlert":
            return self._create(body)
        kind = (request.query.get("identifierType") or ["id"])[0]
        if kind not in ("id", "alias", "tiny"):
            raise _Unprocessable({"identifierType": "Identifier type should be one of [id, alias, tiny]."})
        index = self._find(cast(str, identifier), kind)
        if index is None:
            return _Reply(404, self._error_body("Alert does not exist"))
        alert = self._alerts[index]
        if operation == "getAlert":
            return _Reply(200, {"data": alert.as_json(), "took": TOOK, "requestId": self._new_id()})
        if operation == "listNotes":
            listed = [
                {"note": n.note, "owner": n.user or "", "createdAt": _iso(n.created_at), "offset": str(i)}
                for i, n in enumerate(alert.notes)
            ]
            return _Reply(200, {"data": listed, "took": TOOK, "requestId": self._new_id()})
        errors = _action_errors(body)
        if operation == "addNote" and not errors and not body.get("note"):
            errors["note"] = "Note can not be empty."
        if errors:
            raise _Unprocessable(errors)
        now = self._now()
        note = body.get("note")
        notes = alert.notes
        if note:
            notes = (*notes, AlertNote(note, body.get("user"), body.get("source"), now))
        if operation == "addNote":
            self._alerts[index] = replace(alert, notes=notes, updated_at=now, log=(*alert.log, "note added"))
        elif alert.status == "open":  # closeAlert; closing a closed alert changes nothing
            self._alerts[index] = replace(
                alert, status="closed", closed_at=now, updated_at=now, notes=notes, log=(*alert.log, "closed")
            )
        return self._accepted()

    def _find(self, identifier: str, kind: str) -> int | None:
        """The newest alert by id, tiny id or alias (an open one first, for an alias)."""
        attribute = {"id": "id", "tiny": "tiny_id", "alias": "alias"}[kind]
        found = [i for i, a in enumerate(self._alerts) if getattr(a, attribute) == identifier]
        open_ = [i for i in found if self._alerts[i].status == "open"]
        chosen = open_ or found
        return chosen[-1] if chosen else None

    def _create(self, body: dict[str, Any]) -> _Reply:
        errors = _create_errors(body)
        if errors:
            raise _Unprocessable(errors)
        now = self._now()
        alias = body.get("alias") or self._new_id()
        index = next((i for i, a in enumerate(self._alerts) if a.alias == alias and a.status == "open"), None)
        if index is not None:
            alert = self._alerts[index]
            self._alerts[index] = replace(
                alert,
                count=alert.count + 1,
                updated_at=now,
                log=(*alert.log, "deduplicated"),
                creates=(*alert.creates, body),
            )
            return self._accepted()
        self._alerts.append(
            Alert(
                id=self._new_id(),
                tiny_id=str(next(self._tiny)),
                alias=alias,
                message=body["message"],
                status="open",
                count=1,
                priority=body.get("priority", "P3"),
                description=body.get("description", ""),
                tags=tuple(body.get("tags", ())),
                details=dict(body.get("details", {})),
                entity=body.get("entity", ""),
                source=body.get("source", "127.0.0.1"),
                responders=tuple(dict(r) for r in body.get("responders", ())),
                created_at=now,
                updated_at=now,
                notes=(AlertNote(body["note"], body.get("user"), body.get("source"), now),)
                if body.get("note")
                else (),
                log=("created",),
                creates=(body,),
            )
        )
        return self._accepted()


# --------------------------------------------------------------------------- standalone


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator as a server until interrupted (for the demo and Docker)."""
    parser = argparse.ArgumentParser(
        prog="python -m watchdog.emulator.opsgenie",
        description="Serve an emulated Opsgenie Alert API v2 (create, get, notes, close).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=8093)
    parser.add_argument(
        "--api-key",
        action="append",
        help="an API key to accept (repeatable; default $OPSGENIE_API_KEY or the built-in one)",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    keys = args.api_key or [os.environ.get("OPSGENIE_API_KEY", API_KEY)]
    emulator = OpsgenieEmulator(api_keys=keys, host=args.host, port=args.port)
    emulator.serve_until_terminated(f"for {len(keys)} API key(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
