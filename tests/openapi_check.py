"""Check recorded HTTP exchanges against an OpenAPI description (GitHub's by default).

Every test that talks to an emulator through its fixture (``github_emulator``,
``pagerduty_emulator``) validates each request the client sent and each response the emulator gave
against the real API's own OpenAPI description, so neither our client code nor the emulator can
drift from the real API unnoticed. Paths are matched below the description's server URL
(``/v2/enqueue`` for ``https://events.pagerduty.com/v2``), as the emulators serve them.

Import it as ``from tests.openapi_check import ...`` when the repository root is on ``sys.path``
(``python -m pytest`` from the root) and as ``from openapi_check import ...`` when only ``tests/``
is (plain ``pytest`` without ``tests/__init__.py``); ``tests/emulator/conftest.py`` tries both.

Special cases, each for a real behaviour the description or the validator gets wrong:

- ``nullable: true`` with an ``enum`` that lacks ``null`` (e.g. an open issue's ``state_reason``):
  OpenAPI 3.0.3 clarified that such a schema only admits null when the enum lists it; GitHub's
  description omits it and GitHub sends null. ``null`` is added to those enums, nothing else.
- ``GET .../contents/{path}``: GitHub's ``{path}`` spans slashes (``migrations/manifest.json``);
  openapi-core's templating matches one segment. The slashes of that one parameter are
  percent-encoded before matching.
- The ``created`` filter of the workflow-run lists is typed ``date-time``, but GitHub takes its
  search syntax (``>=2024-05-01T00:00:00Z``, ``a..b``, bare dates). Such values are checked for
  valid dates here and replaced by a plain date-time for the rest of the validation.
- Error statuses an operation does not document: GitHub's description lists errors per
  operation incompletely, yet any endpoint answers 401 (bad credentials), 403/429 (rate limits),
  404, 422 (e.g. a dispatch with an unknown input) and 5xx. Such responses are checked against
  the description's own ``Basic Error`` schema (``Validation Error`` for 422) instead of being
  reported as unknown.
- A non-JSON body of an *injected* fault (a proxy's HTML 502) stands in for a proxy or load
  balancer, not the API, and is not checked against the description.
- Error statuses documented without a body: PagerDuty's 400 and 429 carry what was meant as a
  reference in their description (``"description": "#/components/responses/ArgumentError"``, a
  component that does not exist) and no content, yet PagerDuty answers a bad event with its
  ``Error`` body (``status``, ``message``, ``errors``). A JSON body of such a response is checked
  against the API's error schema (:class:`ErrorBodies`); an empty one is accepted.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_schema_validator import OAS30Validator
from werkzeug.datastructures import MultiDict

SPECS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "specs"
GITHUB_SPEC = SPECS_DIR / "github-rest.subset.openapi.json"
PAGERDUTY_SPEC = SPECS_DIR / "pagerduty-events-v2.openapi.json"

_CONTENTS_PATH = re.compile(r"^(/repos/[^/]+/[^/]+/contents/)(.+)$")
_RUN_LISTS = re.compile(r"^/repos/[^/]+/[^/]+/actions/(?:workflows/[^/]+/)?runs$")
_CREATED = re.compile(r"^(?:>=|<=|>|<)?(?P<one>[^.]+)$|^(?P<low>[^.]+)\.\.(?P<high>[^.]+)$")


@dataclass(frozen=True)
class ErrorBodies:
    """The schema of an API's error bodies, for error statuses its description gives none for.

    ``schemas`` maps a status (``"422"``) or ``"default"`` to a JSON pointer into the description
    (``#/components/...``) or the ``title`` of an object schema. ``required`` names fields every
    error body of the API carries although that schema leaves them optional.
    """

    schemas: Mapping[str, str]
    required: tuple[str, ...] = ()


GITHUB_ERRORS = ErrorBodies({"default": "Basic Error", "422": "Validation Error"}, required=("message",))
PAGERDUTY_ERRORS = ErrorBodies({"default": "#/components/responses/Error/content/application~1json/schema"})


class RecordedExchange(Protocol):
    """What the validator needs of an exchange; ``watchdog.emulator.github.Exchange`` has it."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def query(self) -> Mapping[str, list[str]]: ...
    @property
    def request_headers(self) -> Mapping[str, str]: ...
    @property
    def request_body(self) -> bytes: ...
    @property
    def status(self) -> int | None: ...
    @property
    def response_headers(self) -> Mapping[str, str]: ...
    @property
    def response_body(self) -> bytes: ...
    @property
    def fault(self) -> Any: ...


@dataclass(frozen=True)
class Violation:
    """One way an exchange departs from the description."""

    side: Literal["request", "response"]
    method: str
    path: str
    status: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}: {self.side}: {self.message}"


def _admit_null_in_nullable_enums(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("nullable") is True and isinstance(node.get("enum"), list) and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
        for value in node.values():
            _admit_null_in_nullable_enums(value)
    elif isinstance(node, list):
        for value in node:
            _admit_null_in_nullable_enums(value)


def _find_schema(node: Any, title: str) -> dict[str, Any] | None:
    if isinstance(node, dict):
        if node.get("title") == title and node.get("type") == "object":
            return node
        children: Iterator[Any] = iter(node.values())
    elif isinstance(node, list):
        children = iter(node)
    else:
        return None
    for child in children:
        found = _find_schema(child, title)
        if found is not None:
            return found
    return None


def _locate(spec: dict[str, Any], where: str) -> dict[str, Any] | None:
    """A schema by JSON pointer (``#/components/...``) or by the title of an object schema."""
    if not where.startswith("#/"):
        return _find_schema(spec, where)
    node: Any = spec
    for part in where[2:].split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, dict) else None


def _describe(error: Exception) -> str:
    """openapi-core wraps the useful schema errors; pull them out so the message says what is wrong."""
    details: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for schema_error in getattr(current, "schema_errors", None) or ():
            where = "/".join(str(p) for p in schema_error.absolute_path) or "<root>"
            details.append(f"{where}: {schema_error.message}")
        current = current.__cause__ or current.__context__
    head = f"{type(error).__name__}: {error}".splitlines()[0][:300]
    return head if not details else f"{head} [{'; '.join(details[:8])}]"


class ExchangeValidator:
    """Validates exchanges against one OpenAPI 3.0 description; build once, reuse everywhere."""

    def __init__(self, spec_path: Path = GITHUB_SPEC, errors: ErrorBodies = GITHUB_ERRORS) -> None:
        if not spec_path.is_file():
            raise FileNotFoundError(
                f"OpenAPI description not found at {spec_path}; the repository expects ../shared/specs "
                "next to it (as in CI)"
            )
        spec = json.loads(spec_path.read_text())
        _admit_null_in_nullable_enums(spec)
        self.spec: dict[str, Any] = spec
        self.title: str = spec["info"]["title"]
        self.server_url: str = spec["servers"][0]["url"].rstrip("/")
        server = urlsplit(self.server_url)
        self._host_url = f"{server.scheme}://{server.netloc}"
        self._base_path = server.path.rstrip("/")
        self._api = OpenAPI.from_dict(copy.deepcopy(spec))
        self._templates: list[tuple[re.Pattern[str], str]] = [
            (
                re.compile(
                    "^"
                    + re.escape(self._base_path)
                    + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
                    + "$"
                ),
                template,
            )
            for template in spec["paths"]
        ]
        self._error_schemas: dict[str, OAS30Validator] = {}
        for status, where in errors.schemas.items():
            schema = _locate(spec, where)
            if schema is None:
                raise ValueError(f"{spec_path} has no schema {where!r} to check error bodies with")
            self._error_schemas[status] = OAS30Validator(schema)
        self._required_in_errors = errors.required

    def check(self, exchange: RecordedExchange) -> list[Violation]:
        """All violations of the request and of the response (empty when both conform)."""
        violations: list[Violation] = []

        def add(side: Literal["request", "response"], message: str) -> None:
            violations.append(Violation(side, exchange.method, exchange.path, exchange.status, message))

        path = exchange.path
        contents = _CONTENTS_PATH.match(path)
        if contents:
            path = contents.group(1) + contents.group(2).strip("/").replace("/", "%2F")
        query = {k: list(v) for k, v in exchange.query.items()}
        if _RUN_LISTS.match(path) and query.get("created"):
            query["created"] = [self._normalise_created(v, add) for v in query["created"]]
        request = MockRequest(
            self._host_url,
            exchange.method,
            path,
            args=MultiDict([(k, v) for k, values in query.items() for v in values]),
            headers=dict(exchange.request_headers),
            data=exchange.request_body or None,
            content_type=exchange.request_headers.get("content-type", "application/json"),
        )
        for error in self._api.iter_request_errors(request):
            add("request", _describe(error))
        if exchange.status is None or self._from_a_proxy(exchange):
            return violations

        template = self._template(path)
        operation = self.spec["paths"].get(template, {}).get(exchange.method.lower()) if template else None
        if operation is not None and exchange.status >= 400:
            documented = self._documented_response(operation["responses"], exchange.status)
            if documented is None or "content" not in documented:
                for message in self._check_error_body(exchange, documented=documented is not None):
                    add("response", message)
                return violations
        if operation is None:
            return violations  # the request violation above already says the operation is unknown
        response = MockResponse(
            exchange.response_body,
            exchange.status,
            headers=dict(exchange.response_headers),
            content_type=exchange.response_headers.get("content-type", ""),
        )
        for error in self._api.iter_response_errors(request, response):
            add("response", _describe(error))
        return violations

    @staticmethod
    def _from_a_proxy(exchange: RecordedExchange) -> bool:
        if exchange.fault is None or not exchange.response_body:
            return False
        try:
            json.loads(exchange.response_body)
        except ValueError:
            return True
        return False

    def _documented_response(self, responses: Mapping[str, Any], status: int) -> dict[str, Any] | None:
        """The response the operation documents for ``status`` (exact, ``5XX`` range, ``default``)."""
        for key in (str(status), f"{str(status)[0]}XX", "default"):
            if key in responses:
                response = responses[key]
                if "$ref" in response:
                    response = _locate(self.spec, response["$ref"]) or {}
                return dict(response)
        return None

    def _template(self, path: str) -> str | None:
        for pattern, template in self._templates:
            if pattern.match(path):
                return template
        return None

    @staticmethod
    def _normalise_created(value: str, add: Any) -> str:
        found = _CREATED.match(value.strip())
        sides = [s for s in (found.groups() if found else ()) if s and s != "*"]
        if not found or not sides:
            return value  # leave it to the date-time check to report
        normalised = []
        for side in sides:
            try:
                datetime.fromisoformat(side)
            except ValueError:
                add("request", f"query parameter created: {side!r} is not a date or date-time")
                return value
            normalised.append(side if "T" in side else f"{side}T00:00:00Z")
        return normalised[0]

    def _check_error_body(self, exchange: RecordedExchange, *, documented: bool) -> list[str]:
        """An error body the operation gives no schema for, against the API's error schema."""
        which = "error status" if documented else "undocumented error status"
        try:
            body = json.loads(exchange.response_body) if exchange.response_body else None
        except ValueError:
            return [f"{which} {exchange.status} with a body that is not JSON"]
        if body is None:
            return [] if documented else [f"{which} {exchange.status} without the API's error body"]
        validator = self._error_schemas.get(str(exchange.status), self._error_schemas["default"])
        problems = [
            f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(body)
        ]
        for name in self._required_in_errors:
            if isinstance(body, dict) and not isinstance(body.get(name), str):
                problems.append(f"<root>: error bodies of this API carry a {name!r} string")
        return [f"error body (status {exchange.status}): {p}" for p in problems]


@functools.cache
def github_validator() -> ExchangeValidator:
    """The validator over GitHub's description, parsed once per process (it takes about a second)."""
    return ExchangeValidator(GITHUB_SPEC, GITHUB_ERRORS)


@functools.cache
def pagerduty_validator() -> ExchangeValidator:
    """The validator over PagerDuty's Events API v2 description, parsed once per process."""
    return ExchangeValidator(PAGERDUTY_SPEC, PAGERDUTY_ERRORS)


class SpecRecorder:
    """An ``on_exchange`` listener that validates every exchange and keeps the violations."""

    def __init__(self, validator: ExchangeValidator | None = None) -> None:
        self.validator = validator or github_validator()
        self.violations: list[Violation] = []
        self.checked = 0

    def __call__(self, exchange: RecordedExchange) -> None:
        self.violations.extend(self.validator.check(exchange))
        self.checked += 1

    def take(self) -> list[Violation]:
        """Hand over (and forget) the violations so far: for tests that send off-spec requests on purpose."""
        taken, self.violations = self.violations, []
        return taken

    def assert_clean(self) -> None:
        assert not self.violations, f"exchanges departing from {self.validator.title}:\n" + "\n".join(
            f"  {v}" for v in self.violations
        )
