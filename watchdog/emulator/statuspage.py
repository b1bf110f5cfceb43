"""An emulator of Atlassian Statuspage's REST API (a page's incidents and components), over real HTTP.

The status page is what customers read, so the watchdog's notifier must not be tested against our
own guesses about it. This server keeps one page (``PAGE_ID``) with its components and answers as
Statuspage documents: ``Authorization: OAuth <api key>`` or 401; the request wrapped in
``{"incident": {...}}`` or 400; a ``name`` on create, ``status`` one of investigating, identified,
monitoring, resolved, ``impact_override`` one of none, minor, major, critical, components of the
page with a component status Statuspage knows — 422 with ``{"error": [...]}`` otherwise. Each
create or update that carries a status or body adds an incident update (with the components it
moved), as on the real page. It is stricter than Statuspage in one way: a field Statuspage does not
document is refused (422) instead of ignored, so a misspelt field fails a test instead of being
silently dropped.

Faults (5xx, 420/429 with ``Retry-After``, delays, accepted-then-dropped answers) and the request
log come from :mod:`watchdog.emulator.base`; injected errors answer in Statuspage's shape.

Use it in-process (``with StatuspageEmulator() as sp: ...``, base URL ``sp.url`` ending in ``/v1``)
or standalone: ``python -m watchdog.emulator.statuspage --port 8094``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import re
import string
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, cast

from watchdog.emulator.base import (
    Answer,
    EmulatorHandler,
    ExchangeListener,
    Fault,
    HttpEmulator,
    HttpRequest,
)

log = logging.getLogger(__name__)

__all__ = [
    "API_KEY",
    "COMPONENT_ID",
    "COMPONENT_STATUSES",
    "IMPACTS",
    "INCIDENT_STATUSES",
    "PAGE_ID",
    "Incident",
    "IncidentUpdate",
    "StatuspageEmulator",
]

#: The page the emulator serves unless told otherwise (Statuspage ids are 12 lower-case alphanumerics).
PAGE_ID = "rw0page0test"
#: The API key it accepts (a secret in real life: tests check it never leaks).
API_KEY = "5p-key-5ecret-0000-1111-2222-333344445555"
#: The component seeded by default, named ``stamps`` like the demo's service.
COMPONENT_ID = "stmpscmpnt01"

BASE_PATH = "/v1"
INCIDENT_STATUSES = ("investigating", "identified", "monitoring", "resolved")
IMPACTS = ("none", "minor", "major", "critical")
COMPONENT_STATUSES = (
    "operational",
    "under_maintenance",
    "degraded_performance",
    "partial_outage",
    "major_outage",
)
#: Incident fields Statuspage documents for create and update of a realtime incident.
FIELDS = frozenset(
    {
        "name",
        "status",
        "impact_override",
        "body",
        "component_ids",
        "components",
        "deliver_notifications",
        "auto_tweet_at_beginning",
        "metadata",
        "backfilled",
        "backfill_date",
    }
)
#: The impact Statuspage derives from the worst component status when none is overridden.
_DERIVED_IMPACT = {
    "operational": "none",
    "under_maintenance": "none",
    "degraded_performance": "minor",
    "partial_outage": "major",
    "major_outage": "critical",
}
_PHRASES = {420: "Enhance Your Calm"}

_INCIDENTS = rf"^{BASE_PATH}/pages/(?P<page>[^/]+)/incidents"
#: (method, path pattern, Statuspage's operationId); the first match serves.
_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(_INCIDENTS + "$"), "postPagesPageIdIncidents"),
    ("GET", re.compile(_INCIDENTS + "$"), "getPagesPageIdIncidents"),
    ("GET", re.compile(_INCIDENTS + "/unresolved$"), "getPagesPageIdIncidentsUnresolved"),
    ("GET", re.compile(_INCIDENTS + "/(?P<incident>[^/]+)$"), "getPagesPageIdIncidentsIncidentId"),
    ("PATCH", re.compile(_INCIDENTS + "/(?P<incident>[^/]+)$"), "patchPagesPageIdIncidentsIncidentId"),
    ("PUT", re.compile(_INCIDENTS + "/(?P<incident>[^/]+)$"), "putPagesPageIdIncidentsIncidentId"),
    ("GET", re.compile(rf"^{BASE_PATH}/pages/(?P<page>[^/]+)/components$"), "getPagesPageIdComponents"),
)


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class IncidentUpdate:
    """One entry of an incident's timeline: the status it moved to, the words customers read, and the
    components it changed (``{"code", "name", "old_status", "new_status"}``)."""

    id: str
    status: str
    body: str
    affected_components: tuple[Mapping[str, str], ...]
    created_at: float


@dataclass(frozen=True)
class Incident:
    """An incident as Statuspage keeps it; ``updates`` oldest first (the API lists them newest first)."""

    id: str
    name: str
    status: str
    impact: str
    impact_override: str | None
    component_ids: tuple[str, ...]
    updates: tuple[IncidentUpdate, ...]
    created_at: float
    updated_at: float
    monitoring_at: float | None = None
    resolved_at: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def statuses(self) -> list[str]:
        """The statuses of its updates, oldest first: ``["identified", "monitoring", "resolved"]``."""
        return [u.status for u in self.updates]


@dataclass
class _Component:
    id: str
    name: str
    status: str = "operational"
    updated_at: float = 0.0


@dataclass
class _Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class _Refused(Exception):
    """Raised while checking a request to answer with Statuspage's error body."""

    def __init__(self, status: int, error: str | list[str]) -> None:
        super().__init__(str(error))
        self.status, self.error = status, error


def _new_id_source() -> Callable[[], str]:
    counter = itertools.count(1)
    alphabet = string.digits + string.ascii_lowercase

    def new_id() -> str:
        n, out = next(counter), ""
        while n:
            n, digit = divmod(n, len(alphabet))
            out = alphabet[digit] + out
        return ("sp" + out).rjust(12, "0")

    return new_id


def _iso(seconds: float | None) -> str | None:
    return (
        None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    )


def _field_errors(
    fields: Mapping[str, Any], components: Mapping[str, _Component], *, creating: bool
) -> list[str]:
    """Statuspage's validation messages for an incident's fields (Rails' wording)."""
    errors = [f"Unknown field: {name}" for name in sorted(set(fields) - FIELDS)]
    name = fields.get("name")
    if creating and (not isinstance(name, str) or not name.strip()):
        errors.append("Name can't be blank")
    elif name is not None and not isinstance(name, str):
        errors.append("Name must be a string")
    if "status" in fields and fields["status"] not in INCIDENT_STATUSES:
        errors.append("Status is not included in the list")
    if fields.get("impact_override") is not None and fields["impact_override"] not in IMPACTS:
        errors.append("Impact override is not included in the list")
    if "body" in fields and not isinstance(fields["body"], str):
        errors.append("Body must be a string")
    ids = fields.get("component_ids", [])
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        errors.append("Component ids must be a list of component ids")
    else:
        errors += [f"Component {i} not found" for i in ids if i not in components]
    moved = fields.get("components", {})
    if not isinstance(moved, dict):
        errors.append("Components must map component ids to a status")
    else:
        for cid, status in moved.items():
            if cid not in components:
                errors.append(f"Component {cid} not found")
            elif status not in COMPONENT_STATUSES:
                errors.append(f"Component {cid} status is not included in the list")
    return errors


# --------------------------------------------------------------------------- the emulator


class _Handler(EmulatorHandler):
    """Keep-alive and a ``Server`` header like api.statuspage.io."""

    server_version = "Statuspage"
    sys_version = ""
    do_GET = do_POST = do_PATCH = do_PUT = EmulatorHandler.serve


class StatuspageEmulator(HttpEmulator[_Reply]):
    """In-memory Statuspage REST API for one page, served on ``127.0.0.1`` (port 0 = a free port).

    ``components`` maps component ids to names (all operational at first); ``url`` ends in ``/v1``
    and is what clients take as the API URL (Statuspage's is ``https://api.statuspage.io/v1``).
    All state sits behind the base's lock.
    """

    service = "Statuspage"
    handler = _Handler

    def __init__(
        self,
        *,
        page_id: str = PAGE_ID,
        api_key: str = API_KEY,
        components: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        on_exchange: ExchangeListener | None = None,
        now: Callable[[], float] = time.time,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        super().__init__(host=host, port=port, now=now, on_exchange=on_exchange)
        self.page_id = page_id
        self._api_key = api_key
        self._new_id = new_id or _new_id_source()
        seeded = {COMPONENT_ID: "stamps"} if components is None else components
        self._components = {cid: _Component(cid, name, updated_at=now()) for cid, name in seeded.items()}
        self._incidents: list[Incident] = []
        self._handlers: dict[str, Callable[[HttpRequest, Mapping[str, str]], _Reply]] = {
            "postPagesPageIdIncidents": self._create,
            "getPagesPageIdIncidents": lambda _r, _m: self._list(unresolved=False),
            "getPagesPageIdIncidentsUnresolved": lambda _r, _m: self._list(unresolved=True),
            "getPagesPageIdIncidentsIncidentId": self._get,
            "patchPagesPageIdIncidentsIncidentId": self._update,
            "putPagesPageIdIncidentsIncidentId": self._update,
            "getPagesPageIdComponents": lambda _r, _m: _Reply(
                200, [self._component_json(c) for c in self._components.values()]
            ),
        }

    def __repr__(self) -> str:
        return f"StatuspageEmulator(page_id={self.page_id!r})"

    @property
    def url(self) -> str:
        """The API URL: ``http://127.0.0.1:<port>/v1``."""
        return super().url + BASE_PATH

    # ----------------------------------------------------------------------- faults

    def inject_rate_limit(
        self, method: str, path: str, *, status: int = 429, retry_after: float | None = None, times: int = 1
    ) -> Fault:
        """Answer Statuspage's rate limit (429, or the older 420), with ``Retry-After`` when given."""
        return self.inject(
            method,
            path,
            status=status,
            body={"error": "Rate limit exceeded"},
            headers={} if retry_after is None else {"retry-after": f"{retry_after:g}"},
            times=times,
        )

    # ----------------------------------------------------------------------- what the page holds

    def incidents(self) -> list[Incident]:
        """Every incident, in the order they were opened."""
        with self._lock:
            return list(self._incidents)

    def incident(self, incident_id: str) -> Incident:
        """The incident ``incident_id``; KeyError when there is none."""
        with self._lock:
            for found in self._incidents:
                if found.id == incident_id:
                    return found
        raise KeyError(incident_id)

    def component_statuses(self) -> dict[str, str]:
        """Component id → its status now."""
        with self._lock:
            return {cid: c.status for cid, c in self._components.items()}

    # ======================================================================= request handling

    def _route(self, request: HttpRequest) -> tuple[str | None, Mapping[str, str]]:
        path = request.path.rstrip("/")
        for method, pattern, operation in _ROUTES:
            match = pattern.match(path)
            if match and method == request.method:
                return operation, match.groupdict()
        return None, {}

    def _unserved_operation(self, request: HttpRequest) -> str | None:
        return self._route(request)[0]

    def _fault_reply(self, fault: Fault) -> _Reply:
        status = cast(int, fault.status)
        if fault.body is None:
            body: Any = {"error": _PHRASES.get(status) or HTTPStatus(status).phrase}
        else:
            body = fault.body
        return _Reply(status, body, dict(fault.headers))

    def _render(self, reply: _Reply) -> Answer:
        if isinstance(reply.body, bytes | str):  # an injected stand-in, e.g. a proxy's HTML page
            headers = {"content-type": "text/html; charset=utf-8"}
            payload = reply.body.encode() if isinstance(reply.body, str) else reply.body
        else:
            headers = {"content-type": "application/json; charset=utf-8"}
            payload = json.dumps(reply.body).encode()
        headers.update({k.lower(): v for k, v in reply.headers.items()})
        headers["content-length"] = str(len(payload))
        return Answer(reply.status, headers, payload)

    def _serve(self, request: HttpRequest) -> tuple[str | None, _Reply]:
        operation, params = self._route(request)
        if operation is None:
            return None, _Reply(404, {"error": "The requested resource could not be found."})
        if request.headers.get("authorization", "") != f"OAuth {self._api_key}":
            return None, _Reply(401, {"error": "Couldn't authenticate you"})
        if params.get("page") != self.page_id:
            return operation, _Reply(404, {"error": "The requested resource could not be found."})
        with self._lock:
            try:
                return operation, self._handlers[operation](request, params)
            except _Refused as exc:
                return operation, _Reply(exc.status, {"error": exc.error})
            except Exception as exc:
                log.exception("Statuspage emulator failed on %s %s", request.method, request.path)
                self.internal_errors.append(exc)
                return operation, _Reply(500, {"error": type(exc).__name__})

    def _fields(self, request: HttpRequest, *, creating: bool) -> dict[str, Any]:
        body = request.json
        if not isinstance(body, dict) or not isinstance(body.get("incident"), dict):
            raise _Refused(400, "param is missing or the value is empty: incident")
        fields = cast(dict[str, Any], body["incident"])
        errors = _field_errors(fields, self._components, creating=creating)
        if errors:
            raise _Refused(422, errors)
        return fields

    def _create(self, request: HttpRequest, _params: Mapping[str, str]) -> _Reply:
        fields = self._fields(request, creating=True)
        now = self._now()
        incident = Incident(
            id=self._new_id(),
            name=fields["name"],
            status=fields.get("status", "investigating"),
            impact="none",
            impact_override=fields.get("impact_override"),
            component_ids=(),
            updates=(),
            created_at=now,
            updated_at=now,
            metadata=dict(fields.get("metadata") or {}),
        )
        incident = self._apply(incident, fields, now, new_update=True)
        self._incidents.append(incident)
        return _Reply(201, self._incident_json(incident))

    def _update(self, request: HttpRequest, params: Mapping[str, str]) -> _Reply:
        index = self._index(params["incident"])
        fields = self._fields(request, creating=False)
        now = self._now()
        incident = self._incidents[index]
        if "name" in fields:
            incident = replace(incident, name=fields["name"])
        if "impact_override" in fields:
            incident = replace(incident, impact_override=fields["impact_override"])
        incident = replace(incident, status=fields.get("status", incident.status), updated_at=now)
        incident = self._apply(incident, fields, now, new_update="status" in fields or "body" in fields)
        self._incidents[index] = incident
        return _Reply(200, self._incident_json(incident))

    def _apply(
        self, incident: Incident, fields: Mapping[str, Any], now: float, *, new_update: bool
    ) -> Incident:
        """Move the components, stamp the status times, add the timeline entry, derive the impact."""
        moved: list[Mapping[str, str]] = []
        for cid, status in cast(Mapping[str, str], fields.get("components") or {}).items():
            component = self._components[cid]
            if component.status != status:
                moved.append(
                    {
                        "code": cid,
                        "name": component.name,
                        "old_status": component.status,
                        "new_status": status,
                    }
                )
                component.status, component.updated_at = status, now
        ids = list(incident.component_ids)
        for cid in [
            *fields.get("component_ids", ()),
            *cast(Mapping[str, str], fields.get("components") or {}),
        ]:
            if cid not in ids:
                ids.append(cid)
        if incident.status == "monitoring" and incident.monitoring_at is None:
            incident = replace(incident, monitoring_at=now)
        resolved = incident.status == "resolved"
        incident = replace(incident, resolved_at=(incident.resolved_at or now) if resolved else None)
        worst = max(
            (self._components[cid].status for cid in ids), key=COMPONENT_STATUSES.index, default="operational"
        )
        impact = incident.impact_override or _DERIVED_IMPACT[worst]
        if new_update:
            update = IncidentUpdate(
                id=self._new_id(),
                status=incident.status,
                body=str(fields.get("body") or ""),
                affected_components=tuple(moved),
                created_at=now,
            )
            incident = replace(incident, updates=(*incident.updates, update))
        return replace(incident, component_ids=tuple(ids), impact=impact)

    def _index(self, incident_id: str) -> int:
        for i, found in enumerate(self._incidents):
            if found.id == incident_id:
                return i
        raise _Refused(404, "The requested resource could not be found.")

    def _get(self, _request: HttpRequest, params: Mapping[str, str]) -> _Reply:
        return _Reply(200, self._incident_json(self._incidents[self._index(params["incident"])]))

    def _list(self, *, unresolved: bool) -> _Reply:
        shown = [i for i in reversed(self._incidents) if not unresolved or i.status != "resolved"]
        return _Reply(200, [self._incident_json(i) for i in shown])

    # ----------------------------------------------------------------------- Statuspage's JSON

    def _component_json(self, component: _Component) -> dict[str, Any]:
        return {
            "id": component.id,
            "page_id": self.page_id,
            "name": component.name,
            "status": component.status,
            "updated_at": _iso(component.updated_at),
        }

    def _incident_json(self, incident: Incident) -> dict[str, Any]:
        return {
            "id": incident.id,
            "page_id": self.page_id,
            "name": incident.name,
            "status": incident.status,
            "impact": incident.impact,
            "impact_override": incident.impact_override,
            "created_at": _iso(incident.created_at),
            "updated_at": _iso(incident.updated_at),
            "monitoring_at": _iso(incident.monitoring_at),
            "resolved_at": _iso(incident.resolved_at),
            "shortlink": f"https://stspg.io/{incident.id}",
            "metadata": dict(incident.metadata),
            "components": [self._component_json(self._components[cid]) for cid in incident.component_ids],
            "incident_updates": [
                {
                    "id": u.id,
                    "incident_id": incident.id,
                    "status": u.status,
                    "body": u.body,
                    "affected_components": [dict(c) for c in u.affected_components] or None,
                    "created_at": _iso(u.created_at),
                    "display_at": _iso(u.created_at),
                }
                for u in reversed(incident.updates)
            ],
        }


# --------------------------------------------------------------------------- standalone


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator as a server until interrupted (for the demo and Docker)."""
    parser = argparse.ArgumentParser(
        prog="python -m watchdog.emulator.statuspage",
        description="Serve an emulated Atlassian Statuspage REST API (one page's incidents and components).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=8094)
    parser.add_argument("--page-id", default=PAGE_ID)
    parser.add_argument(
        "--api-key", help="the key to accept (default $STATUSPAGE_API_KEY or the built-in one)"
    )
    parser.add_argument(
        "--component",
        action="append",
        metavar="ID=NAME",
        help="a component of the page (repeatable; default the built-in 'stamps')",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    components = None
    if args.component:
        pairs = [c.partition("=") for c in args.component]
        if any(not cid or not name for cid, _, name in pairs):
            parser.error("--component takes ID=NAME")
        components = {cid: name for cid, _, name in pairs}
    emulator = StatuspageEmulator(
        page_id=args.page_id,
        api_key=args.api_key or os.environ.get("STATUSPAGE_API_KEY", API_KEY),
        components=components,
        host=args.host,
        port=args.port,
    )
    emulator.serve_until_terminated(f"for page {args.page_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
