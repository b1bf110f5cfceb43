"""An emulator of the Unleash admin API subset the watchdog uses, served over real HTTP.

Unleash cannot be reached from CI or the demo. This server speaks the feature operations the
dampening step needs — ``getFeature``, ``getFeatureEnvironment``, ``toggleFeatureEnvironmentOn``
and ``toggleFeatureEnvironmentOff`` under ``/api/admin/projects/{projectId}/features/…`` — with
Unleash's status codes and error bodies (``{id, name, message, details}``): 401 without or with
an unknown token, 403 for a client token on the admin API or a viewer's write, 404 for a feature
not in the project or an environment the feature does not have. A toggle answers 200 with an
empty body, as Unleash does. Tests inject faults (5xx, delays, dropped connections), read the
request log (both shared with the other emulators in :mod:`watchdog.emulator.base`) and the
toggle events, and read or set flag states directly.

Use it in-process: ``with UnleashEmulator(features=[FeatureDef("checkout", {"production"})]) as u:``.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Literal, cast
from urllib.parse import unquote

from watchdog.emulator.base import Answer, EmulatorHandler, Exchange, Fault, HttpEmulator, HttpRequest

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


class _Handler(EmulatorHandler):
    """Keep-alive like Unleash's Express server."""

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = EmulatorHandler.serve


class UnleashEmulator(HttpEmulator[_Reply]):
    """In-memory Unleash admin API on ``127.0.0.1`` (port 0 = a free port).

    ``url`` is the base URL of the instance (the API is under ``/api``). ``environments`` maps
    environment names to their types; ``projects`` maps project ids to the environments enabled
    in them (default: one ``default`` project with every environment); ``tokens`` maps each
    accepted token to its :data:`TokenRole`. All state sits behind one lock.
    """

    service = "Unleash"
    handler = _Handler

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
        super().__init__(host=host, port=port, now=now)
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
        self._events: list[ToggleEvent] = []
        self._event_seq = itertools.count(1)

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

    def inject_error(self, method: str, path: str, status: int = 503, *, times: int = 1) -> Fault:
        """Answer with an error status (503 by default) in Unleash's error shape, without processing."""
        return self.inject(method, path, status=status, times=times)

    # ----------------------------------------------------------------------- request log

    def exchanges(self, method: str | None = None, path: str | None = None) -> list[Exchange]:
        """Logged exchanges, oldest first, filtered by method and/or path regex."""
        return self.requests(method, path)

    # ======================================================================= request handling

    def _fault_reply(self, fault: Fault) -> _Reply:
        status = cast(int, fault.status)
        if fault.body is not None:
            return _Reply(status, fault.body, {k.lower(): v for k, v in fault.headers.items()})
        phrase = HTTPStatus(status).phrase
        reply = _UnleashError(status, "InternalError" if status >= 500 else "UnknownError", phrase).reply
        reply.headers.update({k.lower(): v for k, v in fault.headers.items()})
        return reply

    def _render(self, reply: _Reply) -> Answer:
        headers = dict(reply.headers)
        payload = b""
        if reply.body is not None:
            payload = json.dumps(reply.body).encode()
            headers["content-type"] = "application/json; charset=utf-8"
        headers["content-length"] = str(len(payload))
        return Answer(reply.status, headers, payload)

    def _serve(self, request: HttpRequest) -> tuple[str | None, _Reply]:
        """Unleash's middleware order: token type, authentication, route, permission, handler."""
        method, path = request.method, request.path
        authorization = request.headers.get("authorization", "").strip()
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
