"""An emulator of Grafana's HTTP annotations API (``/api/annotations``), served over real HTTP.

Grafana is where engineers see a deploy or a rollback next to the graphs it changed; this server
lets the notifier be tested against Grafana's behaviour instead of our assumptions. It checks a
service account token (``Authorization: Bearer <token>``, else 401 ``{"message": "Unauthorized"}``),
the fields as Grafana's API documents them (``time``/``timeEnd`` integers of epoch milliseconds,
``tags`` a list of strings, ``text`` a non-empty string, ``dashboardUID`` a dashboard it knows —
400 or 404 with Grafana's ``{"message": ...}`` otherwise), stores the annotations, finds them by
tags (every tag must match unless ``matchAny=true``, as in Grafana), and patches them (a point
becomes a region when ``timeEnd`` is set).

Faults and the request log come from :mod:`watchdog.emulator.base`; injected errors answer in
Grafana's shape. Use it in-process (``with GrafanaEmulator() as g: ...``, base URL ``g.url``) or
standalone: ``python -m watchdog.emulator.grafana --port 8095``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
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

__all__ = ["DASHBOARD_UID", "TOKEN", "Annotation", "GrafanaEmulator"]

#: The service account token the emulator accepts unless told otherwise (``glsa_`` like Grafana's).
TOKEN = "glsa_5ecretToken0000000000000000000_0a1b2c3d"
#: The dashboard it knows unless told otherwise.
DASHBOARD_UID = "rw-stamps"

_ANNOTATIONS = "/api/annotations"
#: (method, path pattern, Grafana's operationId); the first match serves.
_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(rf"^{_ANNOTATIONS}$"), "postAnnotation"),
    ("GET", re.compile(rf"^{_ANNOTATIONS}$"), "getAnnotations"),
    ("GET", re.compile(rf"^{_ANNOTATIONS}/(?P<id>[^/]+)$"), "getAnnotationByID"),
    ("PATCH", re.compile(rf"^{_ANNOTATIONS}/(?P<id>[^/]+)$"), "patchAnnotation"),
    ("DELETE", re.compile(rf"^{_ANNOTATIONS}/(?P<id>[^/]+)$"), "deleteAnnotationByID"),
)
_FIELDS = frozenset({"dashboardUID", "dashboardId", "panelId", "time", "timeEnd", "tags", "text", "data"})


@dataclass(frozen=True)
class Annotation:
    """An annotation as Grafana keeps it: a point at ``time`` or a region to ``time_end`` (ms)."""

    id: int
    time: int
    time_end: int
    text: str
    tags: tuple[str, ...]
    dashboard_uid: str | None
    panel_id: int | None
    created: int
    updated: int

    @property
    def is_region(self) -> bool:
        return self.time_end != self.time


@dataclass
class _Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field_errors(fields: Mapping[str, Any], *, creating: bool) -> str | None:
    """Grafana's 400 message for the first field it cannot bind, or None."""
    unknown = sorted(set(fields) - _FIELDS)
    if unknown:
        return f"bad request data: unknown field {unknown[0]}"
    for name in ("time", "timeEnd", "dashboardId", "panelId"):
        if name in fields and not _is_int(fields[name]):
            return f"bad request data: {name} must be an integer (epoch milliseconds for times)"
    tags = fields.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return "bad request data: tags must be a list of strings"
    if "dashboardUID" in fields and not isinstance(fields["dashboardUID"], str):
        return "bad request data: dashboardUID must be a string"
    text = fields.get("text")
    if creating and (not isinstance(text, str) or not text):
        return "Failed to save annotation: text field should not be empty"
    if text is not None and not isinstance(text, str):
        return "bad request data: text must be a string"
    return None


class _Handler(EmulatorHandler):
    """Keep-alive like Grafana."""

    server_version = "Grafana"
    sys_version = ""
    do_GET = do_POST = do_PATCH = do_DELETE = EmulatorHandler.serve


class GrafanaEmulator(HttpEmulator[_Reply]):
    """In-memory Grafana annotations API, served on ``127.0.0.1`` (port 0 = a free port).

    ``tokens`` are the service account tokens accepted; ``dashboards`` the dashboard UIDs that
    exist (None: any). ``url`` is Grafana's base URL (no ``/api``).
    """

    service = "Grafana"
    handler = _Handler

    def __init__(
        self,
        *,
        tokens: Collection[str] = (TOKEN,),
        dashboards: Collection[str] | None = (DASHBOARD_UID,),
        host: str = "127.0.0.1",
        port: int = 0,
        on_exchange: ExchangeListener | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(host=host, port=port, now=now, on_exchange=on_exchange)
        self._tokens = set(tokens)
        self._dashboards = None if dashboards is None else set(dashboards)
        self._annotations: dict[int, Annotation] = {}
        self._ids = itertools.count(1)
        self._handlers: dict[str, Callable[[HttpRequest, Mapping[str, str]], _Reply]] = {
            "postAnnotation": self._create,
            "getAnnotations": self._find,
            "getAnnotationByID": lambda _r, p: _Reply(200, self._json(self._annotations[self._id(p)])),
            "patchAnnotation": self._patch,
            "deleteAnnotationByID": self._delete,
        }

    def __repr__(self) -> str:
        return "GrafanaEmulator()"

    # ----------------------------------------------------------------------- what Grafana holds

    def annotations(self) -> list[Annotation]:
        """Every stored annotation, oldest first."""
        with self._lock:
            return sorted(self._annotations.values(), key=lambda a: a.id)

    def annotation(self, annotation_id: int) -> Annotation:
        """The annotation ``annotation_id``; KeyError when there is none."""
        with self._lock:
            return self._annotations[annotation_id]

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
        body = {"message": HTTPStatus(status).phrase} if fault.body is None else fault.body
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
        operation, params = self._route(request)
        if operation is None:
            return None, _Reply(404, {"message": "Not found"})
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token not in self._tokens:
            return None, _Reply(401, {"message": "Unauthorized"})
        with self._lock:
            try:
                return operation, self._handlers[operation](request, params)
            except _Refused as exc:
                return operation, _Reply(exc.status, {"message": exc.message})
            except Exception as exc:
                log.exception("Grafana emulator failed on %s %s", request.method, request.path)
                self.internal_errors.append(exc)
                return operation, _Reply(500, {"message": "Internal Server Error"})

    def _fields(self, request: HttpRequest, *, creating: bool) -> dict[str, Any]:
        if not isinstance(request.json, dict):
            raise _Refused(400, "bad request data")
        fields = cast(dict[str, Any], request.json)
        problem = _field_errors(fields, creating=creating)
        if problem:
            raise _Refused(400, problem)
        return fields

    def _id(self, params: Mapping[str, str]) -> int:
        try:
            annotation_id = int(params["id"])
        except ValueError:
            raise _Refused(400, "annotationId is invalid") from None
        if annotation_id not in self._annotations:
            raise _Refused(404, "Annotation not found")
        return annotation_id

    def _create(self, request: HttpRequest, _params: Mapping[str, str]) -> _Reply:
        fields = self._fields(request, creating=True)
        uid = fields.get("dashboardUID")
        if uid and self._dashboards is not None and uid not in self._dashboards:
            raise _Refused(404, "Dashboard not found")
        now = int(self._now() * 1000)
        at = int(fields.get("time") or now)
        annotation = Annotation(
            id=next(self._ids),
            time=at,
            time_end=int(fields.get("timeEnd") or at),
            text=fields["text"],
            tags=tuple(dict.fromkeys(fields.get("tags", []))),
            dashboard_uid=uid or None,
            panel_id=fields.get("panelId"),
            created=now,
            updated=now,
        )
        self._annotations[annotation.id] = annotation
        return _Reply(200, {"message": "Annotation added", "id": annotation.id})

    def _patch(self, request: HttpRequest, params: Mapping[str, str]) -> _Reply:
        annotation_id = self._id(params)
        fields = self._fields(request, creating=False)
        old = self._annotations[annotation_id]
        self._annotations[annotation_id] = replace(
            old,
            time=fields.get("time") or old.time,
            time_end=fields.get("timeEnd") or old.time_end,
            text=fields.get("text") or old.text,
            tags=tuple(fields["tags"]) if "tags" in fields else old.tags,
            updated=int(self._now() * 1000),
        )
        return _Reply(200, {"message": "Annotation patched"})

    def _delete(self, _request: HttpRequest, params: Mapping[str, str]) -> _Reply:
        del self._annotations[self._id(params)]
        return _Reply(200, {"message": "Annotation deleted"})

    def _find(self, request: HttpRequest, _params: Mapping[str, str]) -> _Reply:
        query = request.query
        tags = query.get("tags", [])
        match_any = query.get("matchAny", ["false"])[-1] == "true"
        kind = query.get("type", [""])[-1]
        if kind == "alert":
            return _Reply(200, [])  # the emulator keeps no alert annotations
        try:
            limit = int(query.get("limit", ["100"])[-1])
            start = int(query["from"][-1]) if "from" in query else None
            end = int(query["to"][-1]) if "to" in query else None
        except ValueError:
            raise _Refused(400, "bad request data") from None
        uid = query.get("dashboardUID", [None])[-1]

        def wanted(a: Annotation) -> bool:
            tagged = not tags or (any if match_any else all)(t in a.tags for t in tags)
            in_time = (start is None or a.time_end >= start) and (end is None or a.time <= end)
            return tagged and in_time and (uid is None or a.dashboard_uid == uid)

        found = sorted((a for a in self._annotations.values() if wanted(a)), key=lambda a: (-a.time, -a.id))
        return _Reply(200, [self._json(a) for a in found[:limit]])

    @staticmethod
    def _json(a: Annotation) -> dict[str, Any]:
        return {
            "id": a.id,
            "alertId": 0,
            "dashboardId": 0,
            "dashboardUID": a.dashboard_uid or "",
            "panelId": a.panel_id or 0,
            "userId": 1,
            "newState": "",
            "prevState": "",
            "created": a.created,
            "updated": a.updated,
            "time": a.time,
            "timeEnd": a.time_end,
            "text": a.text,
            "tags": list(a.tags),
            "login": "sa-rollback-watchdog",
            "email": "",
            "avatarUrl": "",
            "data": {},
        }


# --------------------------------------------------------------------------- standalone


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator as a server until interrupted (for the demo and Docker)."""
    parser = argparse.ArgumentParser(
        prog="python -m watchdog.emulator.grafana",
        description="Serve an emulated Grafana annotations HTTP API.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=8095)
    parser.add_argument(
        "--token",
        action="append",
        help="a token to accept (repeatable; default $GRAFANA_TOKEN or the built-in one)",
    )
    parser.add_argument("--dashboard", action="append", help="a dashboard UID that exists (default: any)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    tokens = args.token or [os.environ.get("GRAFANA_TOKEN", TOKEN)]
    emulator = GrafanaEmulator(tokens=tokens, dashboards=args.dashboard, host=args.host, port=args.port)
    emulator.serve_until_terminated(f"for {len(tokens)} token(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
