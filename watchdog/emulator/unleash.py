"""An emulator of the Unleash admin API subset the watchdog uses, served over real HTTP.

Unleash cannot be reached from CI or the demo. This server speaks the feature operations the
dampening step needs — ``getFeature``, ``getFeatureEnvironment``, ``toggleFeatureEnvironmentOn``
and ``toggleFeatureEnvironmentOff`` under ``/api/admin/projects/{projectId}/features/…`` — with
Unleash's status codes and error bodies (``{id, name, message, details}``): 401 without or with
an unknown token, 403 for a client token on the admin API or a viewer's write, 404 for a feature
not in the project or an environment the feature does not have. A toggle answers 200 with an
empty body, as Unleash does. Tests inject faults (5xx, delays, dropped connections), read the
request log and the toggle events, and read or set flag states directly.

Use it in-process: ``with UnleashEmulator(features=[FeatureDef("checkout", {"production"})]) as u:``.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, cast
from urllib.parse import parse_qs, unquote, urlsplit

from watchdog.emulator.github import Exchange, Fault

log = logging.getLogger(__name__)

#: What a token may do. ``admin``: an admin API token, everything. ``viewer``: a personal access
#: token of a user with the Viewer role, reads only (writes get 403 ``PermissionError``).
#: ``client``: a backend SDK token, refused on the whole admin API (403).
TokenRole = Literal["admin", "viewer", "client"]

DEFAULT_ADMIN_TOKEN = "*:*.emulator-admin-token"
TOKEN_TYPE_ERROR_MESSAGE = "invalid token: expected a different token type for this endpoint"
UPDATE_FEATURE_ENVIRONMENT = "UPDATE_FEATURE_ENVIRONMENT"

_FEATURE = r"/api/admin/projects/(?P<project>[^/]+)/features/(?P<feature>[^/]+)"
_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("GET", re.compile(_FEATURE), "getFeature"),
    ("GET", re.compile(_FEATURE + r"/environments/(?P<environment>[^/]+)"), "getFeatureEnvironment"),
    ("POST", re.compile(_FEATURE + r"/environments/(?P<environment>[^/]+)/on"), "toggleFeatureEnvironmentOn"),
    (
        "POST",
        re.compile(_FEATURE + r"/environments/(?P<environment>[^/]+)/off"),
        "toggleFeatureEnvironmentOff",
    ),
)


@dataclass(frozen=True)
class FeatureDef:
    """A feature flag seeded at start: enabled in ``enabled_in``, disabled in its project's other
    environments."""

    name: str
    enabled_in: Collection[str] = ()
    project: str = "default"
    type: str = "release"
    description: str | None = None


@dataclass(frozen=True)
class ToggleEvent:
    """A change of a flag's state through the API, as Unleash's event log records it.

    Like Unleash, a toggle to the state the flag already has changes nothing and is not logged
    here (the request is still in :meth:`UnleashEmulator.exchanges`).
    """

    seq: int
    type: Literal["feature-environment-enabled", "feature-environment-disabled"]
    project: str
    feature: str
    environment: str
    role: TokenRole
    at: float

    @property
    def enabled(self) -> bool:
        return self.type == "feature-environment-enabled"


@dataclass
class _Feature:
    name: str
    project: str
    type: str
    description: str | None
    created_at: float
    environments: dict[str, bool]


@dataclass
class _Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class _UnleashError(Exception):
    """Raised by handlers to answer with Unleash's error body."""

    def __init__(self, status: int, name: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.reply = _Reply(
            status,
            {"id": str(uuid.uuid4()), "name": name, "message": message, "details": [{"message": message}]}
            | extra,
        )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class UnleashEmulator:
    """In-memory Unleash admin API on ``127.0.0.1`` (port 0 = a free port).

    ``environments`` maps environment names to their types; ``projects`` maps project ids to the
    environments enabled in them (default: one ``default`` project with every environment);
    ``tokens`` maps each accepted token to its :data:`TokenRole`. All state sits behind one lock.
    """

    def __init__(
        self,
        *,
        features: Sequence[FeatureDef] = (),
        environments: Mapping[str, str] | None = None,
        projects: Mapping[str, Sequence[str]] | None = None,
        tokens: Mapping[str, TokenRole] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._now = now
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._env_types = dict(environments or {"development": "development", "production": "production"})
        self._projects = {
            p: list(envs) for p, envs in (projects or {"default": list(self._env_types)}).items()
        }
        for project, envs in self._projects.items():
            unknown = sorted(set(envs) - set(self._env_types))
            if unknown:
                raise ValueError(f"project {project!r} names unknown environments: {', '.join(unknown)}")
        self._tokens: dict[str, TokenRole] = dict(tokens or {DEFAULT_ADMIN_TOKEN: "admin"})
        self._features: dict[str, _Feature] = {}
        for spec in features:
            self.add_feature(spec)
        self._faults: list[Fault] = []
        self._log: list[Exchange] = []
        self._events: list[ToggleEvent] = []
        self._seq = itertools.count(1)
        self._event_seq = itertools.count(1)
        self.internal_errors: list[BaseException] = []

    # ----------------------------------------------------------------------- lifecycle

    def start(self) -> UnleashEmulator:
        """Bind and serve in a background thread; returns self."""
        if self._server is not None:
            raise RuntimeError("the Unleash emulator is already running")
        self._stopping.clear()
        self._server = _Server((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="unleash-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; requests held by an injected delay are released at once."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> UnleashEmulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL of the Unleash instance: ``http://127.0.0.1:<port>`` (the API is under /api)."""
        if self._server is None:
            raise RuntimeError("the Unleash emulator is not running; call start() first")
        host, port = self._server.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else str(host)
        return f"http://{shown}:{port}"

    # ----------------------------------------------------------------------- state

    def add_feature(self, spec: FeatureDef) -> None:
        """Create a feature flag in its project's environments."""
        with self._lock:
            if spec.project not in self._projects:
                raise ValueError(f"no project {spec.project!r}")
            if spec.name in self._features:
                raise ValueError(f"a feature named {spec.name!r} exists already")
            envs = self._projects[spec.project]
            unknown = sorted(set(spec.enabled_in) - set(envs))
            if unknown:
                raise ValueError(f"{spec.name}: project {spec.project!r} has no environment {unknown[0]!r}")
            self._features[spec.name] = _Feature(
                name=spec.name,
                project=spec.project,
                type=spec.type,
                description=spec.description,
                created_at=self._now(),
                environments={env: env in spec.enabled_in for env in envs},
            )

    def enabled(self, project: str, feature: str, environment: str) -> bool:
        """The flag's state in one environment; KeyError when the project has no such flag there."""
        with self._lock:
            return self._feature_env(project, feature, environment).environments[environment]

    def set_enabled(self, project: str, feature: str, environment: str, enabled: bool) -> None:
        """Change a flag behind the API's back, like a human in the Unleash UI (not in :meth:`toggles`)."""
        with self._lock:
            self._feature_env(project, feature, environment).environments[environment] = enabled

    def toggles(self) -> list[ToggleEvent]:
        """Every change of a flag's state made through the API, oldest first."""
        with self._lock:
            return list(self._events)

    def _feature_env(self, project: str, feature: str, environment: str) -> _Feature:
        found = self._features.get(feature)
        if found is None or found.project != project or environment not in found.environments:
            raise KeyError((project, feature, environment))
        return found

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
        """Queue a fault for requests whose method matches (``*`` = any) and path matches the regex.

        Effects in order: wait ``delay`` seconds; ``drop="before"`` closes the connection without
        processing; a ``status`` answers with it (default body: Unleash's error shape) without
        processing; ``drop="after"`` processes the request, then closes without answering.
        """
        if times < 1:
            raise ValueError("a fault fires at least once")
        re.compile(path)
        fault = Fault(method, path, status, body, dict(headers or {}), delay, drop, times)
        with self._lock:
            self._faults.append(fault)
        return fault

    def inject_error(self, method: str, path: str, status: int = 503, *, times: int = 1) -> Fault:
        """Answer with an error status (503 by default) without processing."""
        return self.inject(method, path, status=status, times=times)

    def inject_delay(self, method: str, path: str, seconds: float, *, times: int = 1) -> Fault:
        """Serve matching requests normally, but only after ``seconds`` (to make clients time out)."""
        return self.inject(method, path, delay=seconds, times=times)

    def inject_drop(self, method: str, path: str, *, times: int = 1) -> Fault:
        """Close the connection of matching requests without processing them."""
        return self.inject(method, path, drop="before", times=times)

    def inject_accept_then_drop(self, method: str, path: str, *, times: int = 1) -> Fault:
        """Process matching requests for real, then close the connection without an answer."""
        return self.inject(method, path, drop="after", times=times)

    # ----------------------------------------------------------------------- request log

    def exchanges(self, method: str | None = None, path: str | None = None) -> list[Exchange]:
        """Logged exchanges, oldest first, filtered by method and/or path regex."""
        with self._lock:
            logged = list(self._log)
        return [
            ex
            for ex in logged
            if (method is None or ex.method == method.upper()) and (path is None or re.search(path, ex.path))
        ]

    # ======================================================================= request handling

    def _handle(self, method: str, target: str, raw_headers: Mapping[str, str], body: bytes) -> Exchange:
        """Serve one request end to end (fault, auth, routing) and log it."""
        parts = urlsplit(target)
        path = parts.path or "/"
        headers = {k.lower(): v for k, v in raw_headers.items()}
        fault = self._take_fault(method, path)
        if fault is not None and fault.delay > 0:
            self._stopping.wait(fault.delay)
        operation: str | None = None
        reply: _Reply | None = None
        if fault is not None and fault.status is not None:
            reply = self._fault_reply(fault)
        elif fault is None or fault.drop != "before":
            operation, reply = self._serve(method.upper(), path, headers)
        payload = b""
        response_headers: dict[str, str] = {}
        if reply is not None:
            response_headers.update(reply.headers)
            if reply.body is not None:
                payload = json.dumps(reply.body).encode()
                response_headers["content-type"] = "application/json; charset=utf-8"
            response_headers["content-length"] = str(len(payload))
        try:
            request_json: Any = json.loads(body) if body else None
        except ValueError:
            request_json = None
        with self._lock:
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
                response_json=reply.body if reply else None,
                operation=operation,
                fault=fault,
                dropped=reply is None or (fault is not None and fault.drop == "after"),
                at=self._now(),
            )
            self._log.append(exchange)
        return exchange

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
        if fault.body is not None:
            return _Reply(status, fault.body, {k.lower(): v for k, v in fault.headers.items()})
        phrase = HTTPStatus(status).phrase
        reply = _UnleashError(status, "InternalError" if status >= 500 else "UnknownError", phrase).reply
        reply.headers.update({k.lower(): v for k, v in fault.headers.items()})
        return reply

    def _serve(self, method: str, path: str, headers: Mapping[str, str]) -> tuple[str | None, _Reply]:
        """Unleash's middleware order: token type, authentication, route, permission, handler."""
        authorization = headers.get("authorization", "").strip()
        token = (
            authorization[len("bearer ") :].strip()
            if authorization.lower().startswith("bearer ")
            else authorization
        )
        role = self._tokens.get(token) if token else None
        if role == "client":
            return None, _Reply(403, {"message": TOKEN_TYPE_ERROR_MESSAGE})
        if role is None:
            if authorization:
                return None, _UnleashError(401, "UnauthorizedError", "You must log in to use Unleash.").reply
            login = "/auth/simple/login"
            return None, _UnleashError(
                401,
                "AuthenticationRequired",
                "You must log in to use Unleash. Your request had no authorization header, so we could "
                f"not authorize you. Try logging in at {login}.",
                path=login,
                type="password",
                defaultHidden=False,
            ).reply
        for route_method, pattern, operation in _ROUTES:
            found = pattern.fullmatch(path.rstrip("/"))
            if route_method == method and found:
                params = {k: unquote(v) for k, v in found.groupdict().items()}
                try:
                    with self._lock:
                        return operation, self._operation(operation, params, role)
                except _UnleashError as exc:
                    return operation, exc.reply
                except Exception as exc:
                    log.exception("Unleash emulator failed on %s %s", method, path)
                    self.internal_errors.append(exc)
                    return operation, _UnleashError(
                        500, "InternalError", f"{type(exc).__name__}: {exc}"
                    ).reply
        return None, _UnleashError(404, "NotFoundError", f"Cannot {method} {path}").reply

    def _operation(self, operation: str, params: dict[str, str], role: TokenRole) -> _Reply:
        project, name = params["project"], params["feature"]
        environment = params.get("environment")
        toggle = operation.startswith("toggle")
        if toggle and role != "admin":
            raise _UnleashError(
                403,
                "PermissionError",
                "You don't have the required permissions to perform this operation. To perform this "
                f'action, you need the "{UPDATE_FEATURE_ENVIRONMENT}" permission in the "{environment}" '
                "environment.",
                permissions=[UPDATE_FEATURE_ENVIRONMENT],
            )
        feature = self._features.get(name)
        if feature is None or feature.project != project:
            elsewhere = (
                f', but there\'s a feature with that name in project "{feature.project}"' if feature else "."
            )
            raise _UnleashError(
                404, "NotFoundError", f'There\'s no feature named "{name}" in project "{project}"{elsewhere}'
            )
        if environment is None:
            return _Reply(200, self._feature_json(feature))
        if environment not in feature.environments:
            raise _UnleashError(
                404, "NotFoundError", f"Could not find environment {environment} for feature: {name}"
            )
        if not toggle:
            return _Reply(200, self._environment_json(feature, environment))
        enabled = operation == "toggleFeatureEnvironmentOn"
        if feature.environments[environment] != enabled:
            feature.environments[environment] = enabled
            self._events.append(
                ToggleEvent(
                    seq=next(self._event_seq),
                    type="feature-environment-enabled" if enabled else "feature-environment-disabled",
                    project=project,
                    feature=name,
                    environment=environment,
                    role=role,
                    at=self._now(),
                )
            )
        return _Reply(200)

    def _environment_json(self, feature: _Feature, environment: str) -> dict[str, Any]:
        return {
            "name": environment,
            "environment": environment,
            "featureName": feature.name,
            "type": self._env_types[environment],
            "enabled": feature.environments[environment],
            "sortOrder": list(self._env_types).index(environment) + 1,
            "variantCount": 0,
            "strategies": [],
            "variants": [],
            "hasStrategies": False,
            "hasEnabledStrategies": False,
            "lastSeenAt": None,
        }

    def _feature_json(self, feature: _Feature) -> dict[str, Any]:
        return {
            "name": feature.name,
            "type": feature.type,
            "description": feature.description,
            "project": feature.project,
            "archived": False,
            "archivedAt": None,
            "stale": False,
            "favorite": False,
            "impressionData": False,
            "createdAt": _iso(feature.created_at),
            "lastSeenAt": None,
            "environments": [self._environment_json(feature, env) for env in feature.environments],
            "variants": [],
            "tags": [],
            "children": [],
            "dependencies": [],
        }


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: UnleashEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    """Turns HTTP into :meth:`UnleashEmulator._handle` calls, with keep-alive like Unleash's Express."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        emulator = cast(_Server, self.server).emulator
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        exchange = emulator._handle(self.command, self.path, dict(self.headers.items()), body)
        if exchange.dropped or exchange.status is None:
            self.close_connection = True
            with suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            self.send_response(exchange.status)
            for name, value in exchange.response_headers.items():
                self.send_header(name, value)
            self.end_headers()
            if exchange.response_body:
                self.wfile.write(exchange.response_body)
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)
