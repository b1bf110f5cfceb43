"""An emulator of the GitHub REST API subset the watchdog uses, served over real HTTP.

GitHub cannot be reached from CI or the demo, and a mocked client would only test our own
assumptions about GitHub. This server speaks the operations of
``shared/specs/github-rest.subset.openapi.json`` with GitHub's response shapes, headers, error
bodies and rate-limit accounting (with conditional requests: every GET answer carries an ``ETag``,
and a request whose ``If-None-Match`` holds it is answered ``304`` at no rate-limit cost), and
runs a real workflow-run lifecycle (queued → in_progress → waiting for environment reviewers →
completed) whose outcome a Python hook decides. Runs progress
in the injected clock's time, lazily, when someone looks: on a simulated clock a test moves a run
by advancing the clock, and what a request sees never depends on thread scheduling. Tests of the
callers inject faults (5xx, rate limits, delays, dropped connections) and read the request log;
how faults apply and what the log records is shared with the other emulators, in
:mod:`watchdog.emulator.base`. Rate-limit faults answer as GitHub does.

Use it in-process (``with GitHubEmulator(...) as gh: Github(base_url=gh.url, ...)``) or standalone:
``python -m watchdog.emulator.github --port 8091 --token T --repo acme/stamps``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib
import itertools
import json
import logging
import math
import operator
import os
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import quote, unquote, urlencode, urlsplit

from watchdog.clock import Clock
from watchdog.emulator.base import Answer, EmulatorHandler, HttpEmulator, HttpRequest
from watchdog.emulator.base import Exchange as Exchange
from watchdog.emulator.base import ExchangeListener as ExchangeListener
from watchdog.emulator.base import Fault as Fault
from watchdog.emulator.github_apps import AppRegistry, JwtRefused, app_slug, bot_login

log = logging.getLogger(__name__)

DOCS_URL = "https://docs.github.com/rest"
RATE_LIMIT_DOCS_URL = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
SECONDARY_RATE_LIMIT_DOCS_URL = RATE_LIMIT_DOCS_URL + "#about-secondary-rate-limits"
DISPATCH_DOCS_URL = "https://docs.github.com/rest/actions/workflows#create-a-workflow-dispatch-event"
API_VERSION = "2022-11-28"

_CONCLUSIONS = frozenset(
    {"success", "failure", "neutral", "cancelled", "skipped", "timed_out", "action_required", "stale"}
)
_DEPLOYMENT_STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")
_SHA_RE = re.compile(r"[0-9a-f]{40}")
_REPO_FLAGS = (
    "private",
    "has_issues",
    "has_projects",
    "has_wiki",
    "has_discussions",
    "is_template",
    "allow_squash_merge",
    "allow_merge_commit",
    "allow_rebase_merge",
    "allow_auto_merge",
    "delete_branch_on_merge",
    "allow_update_branch",
    "archived",
    "allow_forking",
    "web_commit_signoff_required",
)


# --------------------------------------------------------------------------- seeds and public types


@dataclass(frozen=True)
class WorkflowInput:
    """A declared ``workflow_dispatch`` input; dispatch checks what callers send against these."""

    required: bool = False
    default: str | None = None
    type: Literal["string", "choice", "boolean", "number", "environment"] = "string"
    options: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class WorkflowDef:
    """A workflow file of the emulated repository.

    ``run_name`` is the ``run-name:`` of the workflow as a :meth:`str.format` template over the
    dispatch inputs (defaults filled in) plus ``ref``, ``sha``, ``workflow``, ``actor`` and
    ``run_number``; unknown placeholders render empty. It lets clients find their run by an input
    (e.g. a correlation id) when the dispatch answer is lost. ``environment_input`` names the input
    whose value is the GitHub environment the workflow's job deploys to.
    """

    name: str = "deploy"
    path: str = ".github/workflows/deploy.yml"
    id: int | None = None
    inputs: Mapping[str, WorkflowInput] = field(default_factory=dict)
    run_name: str | None = None
    environment_input: str = "environment"
    job_name: str = "deploy"


def deploy_workflow(workflow_id: int | None = None) -> WorkflowDef:
    """The team's ``deploy`` workflow: inputs environment, tag, correlation_id, reason and
    migrate_down; the tag as the ref."""
    return WorkflowDef(
        name="deploy",
        path=".github/workflows/deploy.yml",
        id=workflow_id,
        inputs={
            "environment": WorkflowInput(required=True, type="choice", options=("dev", "stage", "prod")),
            "tag": WorkflowInput(default="", description="release tag being deployed (also the ref)"),
            "correlation_id": WorkflowInput(default="", description="shown in the run name"),
            "reason": WorkflowInput(default=""),
            "migrate_down": WorkflowInput(default="", description="migrations to roll back, newest first"),
        },
        run_name="deploy {environment} {ref} [{correlation_id}]",
    )


#: ``run_name`` placeholders that are not inputs, as a workflow file writes them.
_CONTEXT_EXPRESSIONS = {
    "ref": "github.ref_name",
    "sha": "github.sha",
    "workflow": "github.workflow",
    "actor": "github.actor",
    "run_number": "github.run_number",
}


def _expression(inner: str) -> str:
    return "${{ " + inner + " }}"


def workflow_yaml(spec: WorkflowDef) -> str:
    """The workflow file that behaves as ``spec`` does, as the repository holds it (served by the
    contents API at the workflow's path, so what a client reads matches how runs are named)."""
    inputs: dict[str, Any] = {}
    for name, decl in spec.inputs.items():
        entry: dict[str, Any] = {"type": decl.type, "required": decl.required}
        if decl.description:
            entry["description"] = decl.description
        if decl.default is not None:
            entry["default"] = decl.default
        if decl.options:
            entry["options"] = list(decl.options)
        inputs[name] = entry
    doc: dict[str, Any] = {"name": spec.name}
    if spec.run_name is not None:
        parts = []
        for text, field_name, _spec, _conv in string.Formatter().parse(spec.run_name):
            parts.append(text)
            if field_name is not None:
                parts.append(_expression(_CONTEXT_EXPRESSIONS.get(field_name, f"inputs.{field_name}")))
        doc["run-name"] = "".join(parts)
    doc["on"] = {"workflow_dispatch": {"inputs": inputs} if inputs else None}
    doc["jobs"] = {
        spec.job_name: {
            "runs-on": "ubuntu-latest",
            "environment": _expression(f"inputs.{spec.environment_input}"),
            "steps": [{"run": "./deploy.sh"}],
        }
    }
    return json.dumps(doc, indent=2) + "\n"  # JSON is YAML, and needs no YAML writer here


@dataclass(frozen=True)
class EnvironmentDef:
    """A deployment environment; ``reviewers`` (logins) become a ``required_reviewers`` rule.

    ``wait_timer`` (minutes) is reported in the protection rules but not waited for: tests and the
    demo cannot wait minutes, and the reviewers gate is what the watchdog has to handle.
    """

    name: str
    reviewers: Sequence[str] = ()
    wait_timer: int = 0
    prevent_self_review: bool = False


@dataclass(frozen=True)
class ReleaseDef:
    """A release seeded at start; its tag is created at ``target_commitish`` when missing."""

    tag_name: str
    name: str | None = None
    body: str = ""
    draft: bool = False
    prerelease: bool = False
    target_commitish: str | None = None


@dataclass(frozen=True)
class RunContext:
    """What a workflow run hands its hook, like a runner gets the workflow context.

    ``inputs`` are the dispatch inputs with declared defaults filled in, as strings. ``cancelled``
    is set when someone cancels the run, so a long hook can stop early.
    """

    run_id: int
    run_number: int
    run_attempt: int
    workflow_id: int
    workflow_name: str
    workflow_path: str
    ref: str
    sha: str
    inputs: Mapping[str, str]
    environment: str | None
    actor: str
    deployment_id: int | None
    cancelled: threading.Event


RunHook = Callable[[RunContext], bool]


# --------------------------------------------------------------------------- internal state


class _HttpError(Exception):
    """Raised by operation handlers to answer with a GitHub error body."""

    def __init__(self, status: int, message: str, *, doc: str = DOCS_URL, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {
            "message": message,
            "documentation_url": doc,
            **extra,
            "status": str(status),
        }


def _invalid(detail: str, doc: str = DOCS_URL) -> _HttpError:
    return _HttpError(422, f"Invalid request.\n\n{detail}", doc=doc)


def _validation_failed(resource: str, code: str, field_name: str, message: str | None = None) -> _HttpError:
    error: dict[str, Any] = {"resource": resource, "code": code, "field": field_name}
    if message:
        error["message"] = message
    return _HttpError(422, "Validation Failed", errors=[error])


@dataclass
class _Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    empty: bool = False


@dataclass
class _Request:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, list[str]]
    body: Any
    login: str
    #: The app whose JWT authenticated the request (the ``/app`` operations), else None.
    app_id: int | None = None

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def int_arg(self, name: str, default: int) -> int:
        raw = self.arg(name)
        try:
            return int(raw) if raw is not None else default
        except ValueError:
            return default


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    operation: str
    handler: Callable[[_Request], _Reply]


@dataclass
class _User:
    login: str
    id: int
    type: str = "User"


@dataclass
class _Workflow:
    spec: WorkflowDef
    id: int
    created_at: float
    runs_started: int = 0


@dataclass
class _Environment:
    id: int
    name: str
    reviewers: list[str]
    wait_timer: int
    prevent_self_review: bool
    created_at: float
    updated_at: float
    branch_policy: dict[str, bool] | None = None


@dataclass
class _DeploymentStatus:
    id: int
    state: str
    creator: str
    description: str
    environment: str
    target_url: str
    log_url: str
    environment_url: str
    created_at: float


@dataclass
class _Deployment:
    id: int
    sha: str
    ref: str
    task: str
    payload: Any
    environment: str
    original_environment: str
    description: str | None
    creator: str
    transient: bool
    production: bool
    by_actions: bool
    created_at: float
    updated_at: float
    statuses: list[_DeploymentStatus] = field(default_factory=list)


@dataclass
class _Run:
    id: int
    workflow: _Workflow
    run_number: int
    ref: str
    head_branch: str
    sha: str
    inputs: dict[str, str]
    environment: str | None
    display_title: str
    actor: str
    check_suite_id: int
    created_at: float
    updated_at: float
    queued_at: float
    job_id: int
    status: str = "queued"
    conclusion: str | None = None
    attempt: int = 1
    run_started_at: float | None = None
    job_started_at: float | None = None
    job_completed_at: float | None = None
    waiting_since: float | None = None
    deployment_id: int | None = None
    cancel_requested: bool = False
    hook_running: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Release:
    id: int
    tag_name: str
    target_commitish: str
    name: str | None
    body: str
    draft: bool
    prerelease: bool
    author: str
    created_at: float
    published_at: float | None


@dataclass
class _Label:
    id: int
    name: str
    color: str = "ededed"
    description: str | None = None


@dataclass
class _Comment:
    id: int
    issue_number: int
    body: str
    user: str
    created_at: float
    updated_at: float


@dataclass
class _Issue:
    id: int
    number: int
    title: str
    body: str | None
    user: str
    labels: list[str]
    assignees: list[str]
    created_at: float
    updated_at: float
    state: str = "open"
    state_reason: str | None = None
    closed_at: float | None = None
    closed_by: str | None = None
    comments: list[_Comment] = field(default_factory=list)


class _BlankMissing(dict[str, str]):
    """Renders unknown ``run_name`` placeholders as empty, like an unset input in ``run-name:``."""

    def __missing__(self, key: str) -> str:
        return ""


# --------------------------------------------------------------------------- small helpers


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node_id(prefix: str, number: int) -> str:
    packed = base64.b64encode(f"{prefix}:{number}".encode()).decode().rstrip("=")
    return f"{prefix}_kwDO{packed}"


def _fake_sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _short_ref(ref: str) -> str:
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


def _version_key(name: str) -> list[tuple[int, int | str]]:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part]


_TYPE_NAMES: dict[type, str] = {str: "string", bool: "boolean", int: "integer", list: "array", dict: "object"}


def _field(
    body: Mapping[str, Any], key: str, kind: type, *, required: bool = False, nullable: bool = False
) -> Any:
    """Read one body field, answering 422 like GitHub's schema validation when it is wrong."""
    if key not in body or (body[key] is None and not nullable):
        if required:
            raise _invalid(f'"{key}" wasn\'t supplied.')
        return None
    value = body[key]
    if value is None:
        return None
    wrong_bool = kind is int and isinstance(value, bool)
    if not isinstance(value, kind) or wrong_bool:
        raise _invalid(f"For 'properties/{key}', {json.dumps(value)} is not {_article(_TYPE_NAMES[kind])}.")
    return value


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _body_object(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise _invalid(f"{json.dumps(body)} is not an object.")
    return body


def _payload(body: Any) -> bytes:
    """A reply's body as it goes on the wire."""
    if isinstance(body, bytes | str):
        return body.encode() if isinstance(body, str) else body
    return json.dumps(body).encode()


def _etag_matches(if_none_match: str, etag: str) -> bool:
    """``If-None-Match`` holds ``*`` or a list of entity tags, compared weakly (RFC 9110 13.1.2)."""
    wanted = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in wanted or etag in wanted


def _with_etag(reply: _Reply, if_none_match: str | None) -> _Reply:
    """A GET's answer with its strong ``ETag`` (a hash of what it sends), or ``304 Not Modified``
    without a body when the client already holds that version: GitHub's conditional requests,
    which cost no rate limit when answered 304."""
    digest = hashlib.sha256(_payload(reply.body))
    digest.update(reply.headers.get("link", "").encode())  # another page count is another answer
    etag = f'"{digest.hexdigest()}"'
    if if_none_match is not None and _etag_matches(if_none_match, etag):
        return _Reply(304, None, {"etag": etag}, empty=True)
    return _Reply(reply.status, reply.body, {**reply.headers, "etag": etag}, reply.empty)


def _time_filter(expr: str) -> Callable[[float], bool]:
    """GitHub's ``created`` search syntax: a date, ``>=``/``<=``/``>``/``<`` or a ``a..b`` range."""

    def bound(text: str, end: bool) -> float:
        if text == "*":
            return math.inf if end else -math.inf
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        if len(text) == 10 and end:
            return (moment + timedelta(days=1)).timestamp() - 1
        return moment.timestamp()

    expr = expr.strip()
    op = next((o for o in (">=", "<=", ">", "<") if expr.startswith(o)), "")
    try:
        if op:
            at = bound(expr[len(op) :], op in (">", "<="))
            compare = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}[op]
            return lambda t: bool(compare(t, at))
        low_text, _, high_text = expr.partition("..") if ".." in expr else (expr, "", expr)
        low, high = bound(low_text, False), bound(high_text, True)
    except ValueError as exc:
        raise _invalid(f"For 'created', {json.dumps(expr)} is not a valid date-time filter.") from exc
    return lambda t: low <= t <= high


def _github_actions_app(html_base: str) -> dict[str, Any]:
    owner = {
        "login": "github",
        "id": 9919,
        "node_id": "MDEyOk9yZ2FuaXphdGlvbjk5MTk=",
        "avatar_url": "https://avatars.githubusercontent.com/u/9919?v=4",
        "gravatar_id": "",
        "url": "https://api.github.com/users/github",
        "html_url": f"{html_base}/github",
        "followers_url": "https://api.github.com/users/github/followers",
        "following_url": "https://api.github.com/users/github/following{/other_user}",
        "gists_url": "https://api.github.com/users/github/gists{/gist_id}",
        "starred_url": "https://api.github.com/users/github/starred{/owner}{/repo}",
        "subscriptions_url": "https://api.github.com/users/github/subscriptions",
        "organizations_url": "https://api.github.com/users/github/orgs",
        "repos_url": "https://api.github.com/users/github/repos",
        "events_url": "https://api.github.com/users/github/events{/privacy}",
        "received_events_url": "https://api.github.com/users/github/received_events",
        "type": "Organization",
        "user_view_type": "public",
        "site_admin": False,
    }
    return {
        "id": 15368,
        "slug": "github-actions",
        "node_id": "MDM6QXBwMTUzNjg=",
        "client_id": "Iv1.05c79e9ad1f6bdfa",
        "owner": owner,
        "name": "GitHub Actions",
        "description": "Automate your workflow from idea to production",
        "external_url": "https://help.github.com/en/actions",
        "html_url": f"{html_base}/apps/github-actions",
        "created_at": "2018-07-30T09:30:17Z",
        "updated_at": "2019-12-10T19:04:12Z",
        "permissions": {"actions": "write", "contents": "write", "deployments": "write", "metadata": "read"},
        "events": ["check_run", "check_suite", "deployment", "deployment_status", "workflow_dispatch"],
    }


def _always_succeeds(run: RunContext) -> bool:
    return True


# --------------------------------------------------------------------------- the emulator


class _Handler(EmulatorHandler):
    """Keep-alive and the ``Server`` header like api.github.com."""

    server_version = "GitHub.com"
    sys_version = ""
    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = EmulatorHandler.serve


class GitHubEmulator(HttpEmulator[_Reply]):
    """In-memory GitHub for one repository, served on ``127.0.0.1`` (port 0 = a free port).

    All state sits behind one lock. Time is the injected clock's (``clock``, or a ``now`` callable;
    wall time by default), and runs move in it: a dispatched run is queued until ``queue_delay``
    has passed on that clock, then in progress (or waiting for its environment's reviewers until
    approved), and its job's hook runs ``step_delay`` after the job started. The moves are made
    when someone looks (every request, :meth:`get_run`, :meth:`wait_for_run` ...) and stamped with
    the clock time they were due, so a test on a :class:`~watchdog.clock.SimClock` moves runs by
    advancing it. A hook runs on a thread of its own: a caller that made it start waits up to
    ``hook_grace`` wall seconds for it to return, so a quick hook's run is completed in the same
    look; a slower one leaves its run in progress until it returns, at the clock time it returns.
    ``url`` is the base URL to hand PyGithub (``Github(base_url=emu.url, auth=Auth.Token(token))``).
    ``run_details=False`` answers every dispatch with 204 and no run, as GitHub did before
    ``return_run_details`` (and a GitHub Enterprise Server may still): the client must find its run.
    ``apps`` (app id → public key PEM) and ``installations`` (installation id → (app id,
    ``owner/repo``)) add GitHub Apps: the ``/app`` operations take their JWTs (checked on the
    emulator's clock, within ``jwt_leeway_s``), and the installation tokens they mint are accepted
    like personal tokens, as the app's bot (:func:`~watchdog.emulator.github_apps.bot_login`),
    until they expire an hour later.
    """

    #: The operations that take a GitHub App's JWT, and nothing else.
    jwt_operations = frozenset(
        {"apps/get-authenticated", "apps/create-installation-access-token", "apps/get-repo-installation"}
    )

    service = "GitHub"
    handler = _Handler

    def __init__(
        self,
        *,
        token: str = "emulator-token",
        owner: str = "acme",
        repo: str = "stamps",
        login: str = "watchdog-bot",
        extra_tokens: Mapping[str, str] | None = None,
        default_branch: str = "main",
        branches: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        workflows: Sequence[WorkflowDef] | None = None,
        environments: Sequence[EnvironmentDef | str] | None = None,
        releases: Sequence[ReleaseDef] | None = None,
        files: Mapping[str, Mapping[str, str | bytes]] | None = None,
        hook: RunHook | None = None,
        queue_delay: float = 0.2,
        step_delay: float = 0.2,
        rate_limit: int = 5000,
        host: str = "127.0.0.1",
        port: int = 0,
        public_url: str | None = None,
        html_base: str = "https://github.com",
        on_exchange: ExchangeListener | None = None,
        now: Callable[[], float] | None = None,
        clock: Clock | None = None,
        run_details: bool = True,
        hook_grace: float = 2.0,
        apps: Mapping[int, str] | None = None,
        installations: Mapping[int, tuple[int, str]] | None = None,
        jwt_leeway_s: float = 30.0,
    ) -> None:
        if now is not None and clock is not None:
            raise ValueError("pass the clock or its now, not both")
        if now is None:
            now = clock.now if clock is not None else time.time
        super().__init__(host=host, port=port, now=now, on_exchange=on_exchange)
        #: The clock it was given (None when it got a ``now`` callable or runs on wall time), for
        #: a client under test to share.
        self.clock = clock
        self._changed = threading.Condition(self._lock)
        self._public_url = public_url.rstrip("/") if public_url else None
        self._html_base = html_base.rstrip("/")
        #: each running hook's thread → the wall-clock moment (monotonic) callers stop waiting for it
        self._hook_threads: dict[threading.Thread, float] = {}
        self._runs: dict[int, _Run] = {}
        self.queue_delay = queue_delay
        self.step_delay = step_delay
        self.hook_grace = hook_grace
        self.run_details = run_details
        self._hook: RunHook = hook or _always_succeeds

        self._owner = owner
        self._repo = repo
        self._repo_id = 700_000_001
        self._tokens: dict[str, str] = {token: login, **(extra_tokens or {})}
        self._counters: dict[str, itertools.count[int]] = {}
        self._users: dict[str, _User] = {}
        self._user(owner, kind="Organization")
        self._user(login)
        self._apps = AppRegistry(apps or {}, installations or {}, leeway_s=jwt_leeway_s)
        for app_id in self._apps.app_ids:
            self._user(bot_login(app_id), kind="Bot")
        created = self._now()
        self._repo_created = created - 86_400 * 400
        self._settings: dict[str, Any] = {
            "description": f"{repo} service",
            "homepage": None,
            "private": True,
            "visibility": "private",
            "default_branch": default_branch,
            "has_issues": True,
            "has_projects": False,
            "has_wiki": False,
            "has_pages": False,
            "has_discussions": False,
            "has_downloads": True,
            "archived": False,
            "disabled": False,
            "is_template": False,
            "allow_squash_merge": True,
            "allow_merge_commit": False,
            "allow_rebase_merge": False,
            "allow_auto_merge": False,
            "delete_branch_on_merge": True,
            "allow_update_branch": True,
            "allow_forking": False,
            "web_commit_signoff_required": False,
            "updated_at": created,
        }
        self._branches: dict[str, str] = dict(branches or {})
        self._branches.setdefault(default_branch, _fake_sha(f"{owner}/{repo}@{default_branch}"))
        self._tags: dict[str, str] = dict(tags or {})
        self._files: dict[str, dict[str, bytes]] = {
            ref: {
                path.strip("/"): (data.encode() if isinstance(data, str) else data)
                for path, data in tree.items()
            }
            for ref, tree in (files or {}).items()
        }
        self._workflows: dict[int, _Workflow] = {}
        for spec in [deploy_workflow()] if workflows is None else workflows:
            self.add_workflow(spec)
        self._environments: dict[str, _Environment] = {}
        for env in ("dev", "stage", "prod") if environments is None else environments:
            self._put_environment(env if isinstance(env, EnvironmentDef) else EnvironmentDef(env))
        self._deployments: dict[int, _Deployment] = {}
        self._releases: dict[int, _Release] = {}
        self._latest_release: int | None = None
        for release in releases or ():
            self.add_release(release)
        self._issues: dict[int, _Issue] = {}
        self._labels: dict[str, _Label] = {}

        self._rate_limit = rate_limit
        self._rate_used = 0
        self._rate_reset = int(created) + 3600

        self.hook_errors: list[BaseException] = []
        self._routes = self._build_routes()

    # ----------------------------------------------------------------------- lifecycle

    def stop(self) -> None:
        """Stop serving; runs stay as they are, except that a running hook completes its run."""
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
            hooks = list(self._hook_threads)
        super().stop()
        for thread in hooks:
            thread.join(timeout=2)

    @property
    def url(self) -> str:
        """Base URL of the API (no path prefix): ``http://127.0.0.1:<port>``."""
        return self._public_url or super().url

    @property
    def owner(self) -> str:
        return self._owner

    @property
    def repo(self) -> str:
        return self._repo

    @property
    def full_name(self) -> str:
        return f"{self._owner}/{self._repo}"

    # ----------------------------------------------------------------------- seeding at runtime

    def set_hook(self, hook: RunHook) -> None:
        """Replace the hook that decides the outcome of runs whose job is due from now on."""
        self._catch_up()  # a hook due before now is the old one's
        with self._lock:
            self._hook = hook

    def add_workflow(self, spec: WorkflowDef) -> int:
        """Add a workflow file; returns its id."""
        with self._lock:
            workflow_id = spec.id if spec.id is not None else self._next_id("workflow", 101_000_001)
            self._workflows[workflow_id] = _Workflow(spec=spec, id=workflow_id, created_at=self._repo_created)
            return workflow_id

    def add_environment(self, spec: EnvironmentDef) -> int:
        """Create or replace an environment; returns its id."""
        self._catch_up()  # runs that left the queue before now met the old reviewers
        return self._put_environment(spec)

    def _put_environment(self, spec: EnvironmentDef) -> int:
        with self._lock:
            for reviewer in spec.reviewers:
                self._user(reviewer)
            existing = self._environments.get(spec.name)
            env = _Environment(
                id=existing.id if existing else self._next_id("environment", 1_800_000_001),
                name=spec.name,
                reviewers=list(spec.reviewers),
                wait_timer=spec.wait_timer,
                prevent_self_review=spec.prevent_self_review,
                created_at=existing.created_at if existing else self._now(),
                updated_at=self._now(),
            )
            self._environments[spec.name] = env
            return env.id

    def add_tag(self, name: str, sha: str | None = None) -> str:
        """Create a tag (at ``sha`` or a fresh commit); returns the sha."""
        with self._lock:
            self._tags[name] = sha or _fake_sha(f"{self.full_name}@{name}")
            return self._tags[name]

    def add_release(self, spec: ReleaseDef) -> int:
        """Create a release (and its tag when missing); returns the release id."""
        with self._lock:
            try:
                return self._create_release(spec, author=self._owner, make_latest="true").id
            except _HttpError as exc:
                raise ValueError(f"release {spec.tag_name}: {exc.body['message']}") from exc

    def set_files(self, ref: str, files: Mapping[str, str | bytes]) -> None:
        """Set the files the contents API serves at ``ref`` (a tag, branch or sha)."""
        with self._lock:
            self._files[_short_ref(ref)] = {
                path.strip("/"): (data.encode() if isinstance(data, str) else data)
                for path, data in files.items()
            }

    # ----------------------------------------------------------------------- faults

    def inject_rate_limit(self, method: str, path: str, *, reset_in: float = 60.0, times: int = 1) -> Fault:
        """Answer 403 as an exhausted primary rate limit (``x-ratelimit-remaining: 0``)."""
        uid = self._user(self._tokens_login()).id
        return self.inject(
            method,
            path,
            status=403,
            body={
                "message": f"API rate limit exceeded for user ID {uid}.",
                "documentation_url": RATE_LIMIT_DOCS_URL,
            },
            headers={
                "x-ratelimit-remaining": "0",
                "x-ratelimit-used": str(self._rate_limit),
                "x-ratelimit-reset": str(int(self._now() + reset_in)),
            },
            times=times,
        )

    def inject_secondary_rate_limit(
        self, method: str, path: str, *, retry_after: int = 1, status: int = 403, times: int = 1
    ) -> Fault:
        """Answer 403 (or 429) as a secondary rate limit with ``retry-after``."""
        return self.inject(
            method,
            path,
            status=status,
            body={
                "message": "You have exceeded a secondary rate limit. "
                "Please wait a few minutes before you try again.",
                "documentation_url": SECONDARY_RATE_LIMIT_DOCS_URL,
            },
            headers={"retry-after": str(retry_after)},
            times=times,
        )

    # ----------------------------------------------------------------------- request log

    @property
    def exchanges(self) -> list[Exchange]:
        """Every logged exchange, oldest first (filter with :meth:`requests`)."""
        return self.requests()

    def installation_tokens(self) -> list[str]:
        """Every installation token minted, oldest first (expired ones too)."""
        with self._lock:
            return [m.token for m in self._apps.minted()]

    # ----------------------------------------------------------------------- rate limit

    @property
    def rate_limit(self) -> dict[str, int]:
        with self._lock:
            self._roll_rate_window()
            return {
                "limit": self._rate_limit,
                "remaining": max(self._rate_limit - self._rate_used, 0),
                "used": self._rate_used,
                "reset": self._rate_reset,
            }

    def set_rate_limit(
        self, *, remaining: int | None = None, limit: int | None = None, reset_in: float | None = None
    ) -> None:
        """Move the core rate-limit window, e.g. to make the next request hit an exhausted limit."""
        with self._lock:
            if limit is not None:
                self._rate_limit = limit
            if remaining is not None:
                self._rate_used = max(self._rate_limit - remaining, 0)
            if reset_in is not None:
                self._rate_reset = int(self._now() + reset_in)

    # ----------------------------------------------------------------------- runs from Python

    def get_run(self, run_id: int) -> dict[str, Any]:
        """The run as ``GET /actions/runs/{id}`` would return it now."""
        self._catch_up()
        with self._lock:
            return self._run_json(self._find_run(run_id))

    def list_runs(self) -> list[dict[str, Any]]:
        self._catch_up()
        with self._lock:
            return [self._run_json(r) for r in sorted(self._runs.values(), key=lambda r: -r.id)]

    def wait_for_run(
        self, run_id: int, statuses: Sequence[str] = ("completed",), timeout: float = 10.0
    ) -> dict[str, Any]:
        """Look at the run until it reaches one of ``statuses``; its JSON, or TimeoutError after
        ``timeout`` wall seconds. Looking moves it in the clock's time: on a simulated clock only
        advancing the clock (or a hook returning, a review, a cancel) moves it."""
        deadline = time.monotonic() + timeout
        while True:
            self._catch_up()
            with self._changed:
                run = self._runs.get(run_id)
                if run is not None and run.status in statuses:
                    return self._run_json(run)
                left = deadline - time.monotonic()
                if left <= 0:
                    state = run.status if run is not None else "missing"
                    raise TimeoutError(f"run {run_id} is {state}, not in {list(statuses)} after {timeout}s")
                self._changed.wait(timeout=min(left, 0.02))

    def review(self, run_id: int, state: Literal["approved", "rejected"], *, login: str) -> None:
        """Approve or reject a waiting run as ``login``, like a reviewer clicking in the web UI."""
        self._catch_up()
        with self._changed:
            run = self._runs.get(run_id)
            if run is None:
                raise KeyError(run_id)
            try:
                self._review(run, login, state, None)
            except _HttpError as exc:
                raise ValueError(exc.body["message"]) from exc

    # ======================================================================= request handling

    def _fault_reply(self, fault: Fault) -> _Reply:
        status = cast(int, fault.status)
        if fault.body is None:
            body: Any = {"message": HTTPStatus(status).phrase, "documentation_url": DOCS_URL}
        else:
            body = fault.body
        headers = {k.lower(): v for k, v in fault.headers.items()}
        return _Reply(status, body, headers, empty=status in (204, 304))

    def _render(self, reply: _Reply) -> Answer:
        request_id = "{:04X}:{:04X}:{:06X}:{:06X}:{:08X}".format(
            *(secrets.randbits(n) for n in (16, 16, 24, 24, 32))
        )
        headers = self._standard_headers(request_id)
        headers.update(reply.headers)
        if reply.empty:
            headers.pop("content-type", None)
            return Answer(reply.status, headers)
        payload = _payload(reply.body)
        headers["content-length"] = str(len(payload))
        return Answer(reply.status, headers, payload)

    def _serve(self, http: HttpRequest) -> tuple[str | None, _Reply]:
        self._catch_up()
        method, path, headers = http.method, http.path, http.headers
        route, params = self._match(method, path)
        app_id: int | None = None
        if route is not None and route.operation in self.jwt_operations:
            try:
                with self._lock:
                    app_id = self._apps.verify(headers.get("authorization", ""), self._now())
            except JwtRefused as exc:
                return None, self._error_reply(_HttpError(401, str(exc)))
            login: str | None = bot_login(app_id)
        else:
            login = self._authenticate(headers.get("authorization", ""))
        if login is None:
            message = "Bad credentials" if headers.get("authorization") else "Requires authentication"
            return None, self._error_reply(_HttpError(401, message))
        counted = route is None or route.operation != "rate-limit/get"
        # a conditional GET counts only once it is known not to be answered 304
        conditional = method == "GET" and "if-none-match" in headers
        with self._lock:
            if counted and not (self._rate_left() if conditional else self._consume_rate_limit()):
                uid = self._user(login).id
                return None, self._error_reply(
                    _HttpError(403, f"API rate limit exceeded for user ID {uid}.", doc=RATE_LIMIT_DOCS_URL)
                )
        operation, reply = self._answer(http, login, route, params, app_id)
        if method == "GET" and reply.status == 200:
            reply = _with_etag(reply, headers.get("if-none-match"))
        if counted and conditional and reply.status != 304:
            with self._lock:
                self._rate_used += 1
        return operation, reply

    def _answer(
        self,
        http: HttpRequest,
        login: str,
        route: _Route | None,
        params: dict[str, str],
        app_id: int | None = None,
    ) -> tuple[str | None, _Reply]:
        method, path = http.method, http.path
        if route is None:
            return None, self._error_reply(_HttpError(404, "Not Found"))
        try:
            parsed: Any = json.loads(http.body) if http.body.strip() else None
        except ValueError:
            return route.operation, self._error_reply(_HttpError(400, "Problems parsing JSON"))
        request = _Request(method, path, params, http.query, parsed, login, app_id)
        with self._changed:
            try:
                if "owner" in params and (
                    params["owner"].lower() != self._owner.lower()
                    or params["repo"].lower() != self._repo.lower()
                ):
                    raise _HttpError(404, "Not Found")
                reply = route.handler(request)
            except _HttpError as exc:
                reply = self._error_reply(exc)
            except Exception as exc:
                log.exception("GitHub emulator failed on %s %s", method, path)
                self.internal_errors.append(exc)
                reply = self._error_reply(
                    _HttpError(500, f"GitHub emulator error: {type(exc).__name__}: {exc}")
                )
            self._changed.notify_all()
        return route.operation, reply

    @staticmethod
    def _error_reply(exc: _HttpError) -> _Reply:
        return _Reply(exc.status, exc.body)

    def _authenticate(self, authorization: str) -> str | None:
        scheme, _, credential = authorization.strip().partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return None
        with self._lock:
            installation_login = self._apps.login_for(credential.strip(), self._now())
        return self._tokens.get(credential.strip()) or installation_login

    def _tokens_login(self) -> str:
        return next(iter(self._tokens.values()))

    def _match(self, method: str, path: str) -> tuple[_Route | None, dict[str, str]]:
        for route in self._routes:
            if route.method == method.upper():
                found = route.pattern.fullmatch(path.rstrip("/") or "/")
                if found:
                    return route, {k: unquote(v) for k, v in found.groupdict().items()}
        return None, {}

    def _standard_headers(self, request_id: str) -> dict[str, str]:
        limits = self.rate_limit
        return {
            "content-type": "application/json; charset=utf-8",
            "x-github-api-version-selected": API_VERSION,
            "x-github-media-type": "github.v3; format=json",
            "x-github-request-id": request_id,
            "x-ratelimit-limit": str(limits["limit"]),
            "x-ratelimit-remaining": str(limits["remaining"]),
            "x-ratelimit-reset": str(limits["reset"]),
            "x-ratelimit-used": str(limits["used"]),
            "x-ratelimit-resource": "core",
            "x-oauth-scopes": "repo, workflow",
            "x-accepted-oauth-scopes": "",
            "x-content-type-options": "nosniff",
            "cache-control": "private, max-age=60, s-maxage=60",
            "vary": "Accept, Authorization, Cookie, X-GitHub-OTP",
        }

    def _roll_rate_window(self) -> None:
        if self._now() >= self._rate_reset:
            self._rate_used = 0
            self._rate_reset = int(self._now()) + 3600

    def _rate_left(self) -> bool:
        self._roll_rate_window()
        return self._rate_used < self._rate_limit

    def _consume_rate_limit(self) -> bool:
        self._roll_rate_window()
        if self._rate_used >= self._rate_limit:
            return False
        self._rate_used += 1
        return True

    def _build_routes(self) -> list[_Route]:
        repo = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
        run = repo + r"/actions/runs/(?P<run_id>\d+)"
        table: list[tuple[str, str, str, Callable[[_Request], _Reply]]] = [
            ("GET", r"/rate_limit", "rate-limit/get", self._op_rate_limit),
            ("GET", r"/app", "apps/get-authenticated", self._op_get_app),
            (
                "POST",
                r"/app/installations/(?P<installation_id>\d+)/access_tokens",
                "apps/create-installation-access-token",
                self._op_create_installation_token,
            ),
            ("GET", repo + "/installation", "apps/get-repo-installation", self._op_get_repo_installation),
            ("GET", repo, "repos/get", self._op_get_repo),
            ("PATCH", repo, "repos/update", self._op_update_repo),
            (
                "GET",
                repo + r"/actions/workflows/(?P<workflow_id>[^/]+)",
                "actions/get-workflow",
                self._op_get_workflow,
            ),
            (
                "POST",
                repo + r"/actions/workflows/(?P<workflow_id>[^/]+)/dispatches",
                "actions/create-workflow-dispatch",
                self._op_dispatch,
            ),
            (
                "GET",
                repo + r"/actions/workflows/(?P<workflow_id>[^/]+)/runs",
                "actions/list-workflow-runs",
                self._op_list_runs,
            ),
            ("GET", repo + r"/actions/runs", "actions/list-workflow-runs-for-repo", self._op_list_runs),
            ("GET", run, "actions/get-workflow-run", self._op_get_run),
            ("GET", run + "/jobs", "actions/list-jobs-for-workflow-run", self._op_list_jobs),
            ("POST", run + "/cancel", "actions/cancel-workflow-run", self._op_cancel_run),
            ("POST", run + "/force-cancel", "actions/force-cancel-workflow-run", self._op_cancel_run),
            ("POST", run + "/rerun", "actions/re-run-workflow", self._op_rerun),
            (
                "GET",
                run + "/pending_deployments",
                "actions/get-pending-deployments-for-run",
                self._op_get_pending,
            ),
            (
                "POST",
                run + "/pending_deployments",
                "actions/review-pending-deployments-for-run",
                self._op_review_pending,
            ),
            ("GET", repo + "/deployments", "repos/list-deployments", self._op_list_deployments),
            ("POST", repo + "/deployments", "repos/create-deployment", self._op_create_deployment),
            (
                "GET",
                repo + r"/deployments/(?P<deployment_id>\d+)",
                "repos/get-deployment",
                self._op_get_deployment,
            ),
            (
                "GET",
                repo + r"/deployments/(?P<deployment_id>\d+)/statuses",
                "repos/list-deployment-statuses",
                self._op_list_deployment_statuses,
            ),
            (
                "POST",
                repo + r"/deployments/(?P<deployment_id>\d+)/statuses",
                "repos/create-deployment-status",
                self._op_create_deployment_status,
            ),
            ("GET", repo + "/environments", "repos/get-all-environments", self._op_list_environments),
            (
                "GET",
                repo + r"/environments/(?P<environment_name>[^/]+)",
                "repos/get-environment",
                self._op_get_environment,
            ),
            (
                "PUT",
                repo + r"/environments/(?P<environment_name>[^/]+)",
                "repos/create-or-update-environment",
                self._op_put_environment,
            ),
            ("GET", repo + "/releases", "repos/list-releases", self._op_list_releases),
            ("POST", repo + "/releases", "repos/create-release", self._op_create_release),
            ("GET", repo + "/releases/latest", "repos/get-latest-release", self._op_latest_release),
            (
                "GET",
                repo + r"/releases/tags/(?P<tag>.+)",
                "repos/get-release-by-tag",
                self._op_release_by_tag,
            ),
            ("GET", repo + "/tags", "repos/list-tags", self._op_list_tags),
            ("GET", repo + r"/contents/(?P<path>.+)", "repos/get-content", self._op_get_content),
            ("GET", repo + "/issues", "issues/list-for-repo", self._op_list_issues),
            ("POST", repo + "/issues", "issues/create", self._op_create_issue),
            ("GET", repo + r"/issues/(?P<issue_number>\d+)", "issues/get", self._op_get_issue),
            ("PATCH", repo + r"/issues/(?P<issue_number>\d+)", "issues/update", self._op_update_issue),
            (
                "GET",
                repo + r"/issues/(?P<issue_number>\d+)/comments",
                "issues/list-comments",
                self._op_list_comments,
            ),
            (
                "POST",
                repo + r"/issues/(?P<issue_number>\d+)/comments",
                "issues/create-comment",
                self._op_create_comment,
            ),
        ]
        return [_Route(m, re.compile(p), op, h) for m, p, op, h in table]

    # ----------------------------------------------------------------------- shared pieces

    def _next_id(self, kind: str, start: int) -> int:
        counter = self._counters.setdefault(kind, itertools.count(start))
        return next(counter)

    def _user(self, login: str, *, kind: str = "User") -> _User:
        with self._lock:
            user = self._users.get(login.lower())
            if user is None:
                user = _User(login=login, id=self._next_id("user", 5_000_001), type=kind)
                self._users[login.lower()] = user
            return user

    @property
    def _api(self) -> str:
        return self.url

    @property
    def _api_repo(self) -> str:
        return f"{self.url}/repos/{self._owner}/{self._repo}"

    @property
    def _html_repo(self) -> str:
        return f"{self._html_base}/{self._owner}/{self._repo}"

    def _paginate(self, request: _Request, items: Sequence[Any]) -> tuple[list[Any], dict[str, str]]:
        per_page = min(max(request.int_arg("per_page", 30), 1), 100)
        page = max(request.int_arg("page", 1), 1)
        last = max(math.ceil(len(items) / per_page), 1)
        chunk = list(items[(page - 1) * per_page : page * per_page])

        def link(target: int, rel: str) -> str:
            query = {k: v[0] for k, v in request.query.items()}
            query.update({"per_page": str(per_page), "page": str(target)})
            return f'<{self.url}{request.path}?{urlencode(query)}>; rel="{rel}"'

        links = []
        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        return chunk, ({"link": ", ".join(links)} if links else {})

    def _resolve_ref(self, ref: str) -> str | None:
        name = _short_ref(ref)
        if ref.startswith("refs/tags/"):
            return self._tags.get(name)
        if ref.startswith("refs/heads/"):
            return self._branches.get(name)
        return self._branches.get(name) or self._tags.get(name)

    def _user_json(self, login: str) -> dict[str, Any]:
        user = self._user(login)
        api = f"{self._api}/users/{quote(user.login)}"
        return {
            "login": user.login,
            "id": user.id,
            "node_id": _node_id("U", user.id),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{user.id}?v=4",
            "gravatar_id": "",
            "url": api,
            "html_url": f"{self._html_base}/{quote(user.login)}",
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": user.type,
            "user_view_type": "public",
            "site_admin": False,
        }

    def _reactions(self, url: str) -> dict[str, Any]:
        counts = dict.fromkeys(("+1", "-1", "laugh", "confused", "heart", "hooray", "eyes", "rocket"), 0)
        return {"url": f"{url}/reactions", "total_count": 0, **counts}

    # ----------------------------------------------------------------------- repository

    def _minimal_repo_json(self) -> dict[str, Any]:
        a = self._api_repo
        s = self._settings
        return {
            "id": self._repo_id,
            "node_id": _node_id("R", self._repo_id),
            "name": self._repo,
            "full_name": self.full_name,
            "private": s["private"],
            "owner": self._user_json(self._owner),
            "html_url": self._html_repo,
            "description": s["description"],
            "fork": False,
            "url": a,
            "archive_url": f"{a}/{{archive_format}}{{/ref}}",
            "assignees_url": f"{a}/assignees{{/user}}",
            "blobs_url": f"{a}/git/blobs{{/sha}}",
            "branches_url": f"{a}/branches{{/branch}}",
            "collaborators_url": f"{a}/collaborators{{/collaborator}}",
            "comments_url": f"{a}/comments{{/number}}",
            "commits_url": f"{a}/commits{{/sha}}",
            "compare_url": f"{a}/compare/{{base}}...{{head}}",
            "contents_url": f"{a}/contents/{{+path}}",
            "contributors_url": f"{a}/contributors",
            "deployments_url": f"{a}/deployments",
            "downloads_url": f"{a}/downloads",
            "events_url": f"{a}/events",
            "forks_url": f"{a}/forks",
            "git_commits_url": f"{a}/git/commits{{/sha}}",
            "git_refs_url": f"{a}/git/refs{{/sha}}",
            "git_tags_url": f"{a}/git/tags{{/sha}}",
            "hooks_url": f"{a}/hooks",
            "issue_comment_url": f"{a}/issues/comments{{/number}}",
            "issue_events_url": f"{a}/issues/events{{/number}}",
            "issues_url": f"{a}/issues{{/number}}",
            "keys_url": f"{a}/keys{{/key_id}}",
            "labels_url": f"{a}/labels{{/name}}",
            "languages_url": f"{a}/languages",
            "merges_url": f"{a}/merges",
            "milestones_url": f"{a}/milestones{{/number}}",
            "notifications_url": f"{a}/notifications{{?since,all,participating}}",
            "pulls_url": f"{a}/pulls{{/number}}",
            "releases_url": f"{a}/releases{{/id}}",
            "stargazers_url": f"{a}/stargazers",
            "statuses_url": f"{a}/statuses/{{sha}}",
            "subscribers_url": f"{a}/subscribers",
            "subscription_url": f"{a}/subscription",
            "tags_url": f"{a}/tags",
            "teams_url": f"{a}/teams",
            "trees_url": f"{a}/git/trees{{/sha}}",
        }

    def _full_repo_json(self) -> dict[str, Any]:
        s = self._settings
        host = urlsplit(self._html_base).hostname or "github.com"
        open_issues = sum(1 for i in self._issues.values() if i.state == "open")
        data = self._minimal_repo_json()
        data.update(
            {
                "git_url": f"git://{host}/{self.full_name}.git",
                "ssh_url": f"git@{host}:{self.full_name}.git",
                "clone_url": f"{self._html_repo}.git",
                "svn_url": self._html_repo,
                "mirror_url": None,
                "homepage": s["homepage"],
                "language": "Python",
                "forks": 0,
                "forks_count": 0,
                "stargazers_count": 0,
                "watchers": 0,
                "watchers_count": 0,
                "size": 4096,
                "default_branch": s["default_branch"],
                "open_issues": open_issues,
                "open_issues_count": open_issues,
                "is_template": s["is_template"],
                "topics": [],
                "has_issues": s["has_issues"],
                "has_projects": s["has_projects"],
                "has_wiki": s["has_wiki"],
                "has_pages": s["has_pages"],
                "has_downloads": s["has_downloads"],
                "has_discussions": s["has_discussions"],
                "archived": s["archived"],
                "disabled": s["disabled"],
                "visibility": s["visibility"],
                "pushed_at": _iso(s["updated_at"]),
                "created_at": _iso(self._repo_created),
                "updated_at": _iso(s["updated_at"]),
                "permissions": {"admin": True, "maintain": True, "push": True, "triage": True, "pull": True},
                "allow_rebase_merge": s["allow_rebase_merge"],
                "allow_squash_merge": s["allow_squash_merge"],
                "allow_merge_commit": s["allow_merge_commit"],
                "allow_auto_merge": s["allow_auto_merge"],
                "delete_branch_on_merge": s["delete_branch_on_merge"],
                "allow_update_branch": s["allow_update_branch"],
                "allow_forking": s["allow_forking"],
                "web_commit_signoff_required": s["web_commit_signoff_required"],
                "temp_clone_token": None,
                "license": None,
                "organization": self._user_json(self._owner),
                "network_count": 0,
                "subscribers_count": 1,
            }
        )
        return data

    def _op_get_repo(self, request: _Request) -> _Reply:
        return _Reply(200, self._full_repo_json())

    def _op_update_repo(self, request: _Request) -> _Reply:
        body = _body_object(request.body)
        changes: dict[str, Any] = {}
        for key in _REPO_FLAGS:
            value = _field(body, key, bool)
            if value is not None:
                changes[key] = value
        for key in ("description", "homepage"):
            if key in body:
                changes[key] = _field(body, key, str, nullable=True)
        visibility = _field(body, "visibility", str)
        if visibility is not None:
            if visibility not in ("public", "private"):
                raise _invalid(
                    f"For 'properties/visibility', {json.dumps(visibility)} is not a member of enum."
                )
            changes["visibility"] = visibility
            changes["private"] = visibility == "private"
        elif "private" in changes:
            changes["visibility"] = "private" if changes["private"] else "public"
        branch = _field(body, "default_branch", str)
        if branch is not None:
            if branch not in self._branches:
                raise _validation_failed(
                    "Repository", "invalid", "default_branch", f"Branch {branch} not found"
                )
            changes["default_branch"] = branch
        name = _field(body, "name", str)
        if name is not None:
            if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
                raise _validation_failed("Repository", "custom", "name", "name is invalid")
            self._repo = name
        self._settings.update(changes)
        self._settings["updated_at"] = self._now()
        return _Reply(200, self._full_repo_json())

    # ----------------------------------------------------------------------- workflows and runs

    def _find_workflow(self, workflow_id: str) -> _Workflow:
        if workflow_id.isdigit() and int(workflow_id) in self._workflows:
            return self._workflows[int(workflow_id)]
        for workflow in self._workflows.values():
            if workflow.spec.path.rsplit("/", 1)[-1] == workflow_id:
                return workflow
        raise _HttpError(404, "Not Found")

    def _workflow_json(self, workflow: _Workflow) -> dict[str, Any]:
        spec = workflow.spec
        return {
            "id": workflow.id,
            "node_id": _node_id("W", workflow.id),
            "name": spec.name,
            "path": spec.path,
            "state": "active",
            "created_at": _iso(workflow.created_at),
            "updated_at": _iso(workflow.created_at),
            "url": f"{self._api_repo}/actions/workflows/{workflow.id}",
            "html_url": f"{self._html_repo}/blob/{self._settings['default_branch']}/{spec.path}",
            "badge_url": f"{self._html_repo}/workflows/{quote(spec.name)}/badge.svg",
        }

    def _op_get_workflow(self, request: _Request) -> _Reply:
        return _Reply(200, self._workflow_json(self._find_workflow(request.params["workflow_id"])))

    def _op_dispatch(self, request: _Request) -> _Reply:
        workflow = self._find_workflow(request.params["workflow_id"])
        body = _body_object(request.body)
        ref = _field(body, "ref", str, required=True)
        raw_inputs = _field(body, "inputs", dict) or {}
        details = _field(body, "return_run_details", bool) or False
        if len(raw_inputs) > 25:
            raise _invalid("For 'properties/inputs', the object has too many properties (maximum 25).")
        sha = self._resolve_ref(ref)
        if sha is None:
            raise _HttpError(422, f"No ref found for: {ref}", doc=DISPATCH_DOCS_URL)
        inputs = self._check_inputs(workflow.spec, raw_inputs)
        run = self._create_run(workflow, ref, sha, inputs, request.login)
        if not (details and self.run_details):
            return _Reply(204, empty=True)
        return _Reply(
            200,
            {
                "workflow_run_id": run.id,
                "run_url": f"{self._api_repo}/actions/runs/{run.id}",
                "html_url": f"{self._html_repo}/actions/runs/{run.id}",
            },
        )

    def _check_inputs(self, spec: WorkflowDef, raw: Mapping[str, Any]) -> dict[str, str]:
        unexpected = [name for name in raw if name not in spec.inputs]
        if unexpected:
            raise _HttpError(
                422, f"Unexpected inputs provided: {json.dumps(unexpected)}", doc=DISPATCH_DOCS_URL
            )
        inputs: dict[str, str] = {}
        for name, declared in spec.inputs.items():
            value = raw.get(name)
            if value is None:
                if declared.required and declared.default is None:
                    raise _HttpError(422, f"Required input '{name}' not provided", doc=DISPATCH_DOCS_URL)
                value = declared.default if declared.default is not None else ""
            inputs[name] = self._input_text(name, declared, value)
        return inputs

    @staticmethod
    def _input_text(name: str, declared: WorkflowInput, value: Any) -> str:
        if declared.type == "boolean" and isinstance(value, bool):
            return "true" if value else "false"
        if declared.type == "number" and isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise _invalid(
                f"For 'properties/{name}', {json.dumps(value)} is not a string.", DISPATCH_DOCS_URL
            )
        if declared.type == "choice" and declared.options and value not in declared.options:
            raise _HttpError(
                422,
                f"Provided value '{value}' for input '{name}' not in the list of allowed values",
                doc=DISPATCH_DOCS_URL,
            )
        if declared.type == "boolean" and value not in ("true", "false"):
            raise _HttpError(
                422, f"Provided value '{value}' for input '{name}' is not a boolean", doc=DISPATCH_DOCS_URL
            )
        return value

    def _create_run(
        self, workflow: _Workflow, ref: str, sha: str, inputs: dict[str, str], actor: str
    ) -> _Run:
        spec = workflow.spec
        workflow.runs_started += 1
        environment = inputs.get(spec.environment_input) or None
        if environment and environment not in self._environments:
            self._put_environment(EnvironmentDef(environment))
        head_branch = _short_ref(ref)
        title = spec.name
        if spec.run_name:
            values = _BlankMissing(inputs)
            values.update(
                ref=head_branch,
                sha=sha,
                workflow=spec.name,
                actor=actor,
                run_number=str(workflow.runs_started),
            )
            with suppress(ValueError, IndexError):
                title = spec.run_name.format_map(values)
        now = self._now()
        run = _Run(
            id=self._next_id("run", 9_100_000_001),
            workflow=workflow,
            run_number=workflow.runs_started,
            ref=ref,
            head_branch=head_branch,
            sha=sha,
            inputs=inputs,
            environment=environment,
            display_title=title,
            actor=actor,
            check_suite_id=self._next_id("check_suite", 28_000_000_001),
            created_at=now,
            updated_at=now,
            queued_at=now,
            job_id=self._next_id("job", 33_000_000_001),
        )
        self._runs[run.id] = run
        return run

    def _find_run(self, run_id: int | str) -> _Run:
        run = self._runs.get(int(run_id))
        if run is None:
            raise _HttpError(404, "Not Found")
        return run

    def _run_json(self, run: _Run) -> dict[str, Any]:
        url = f"{self._api_repo}/actions/runs/{run.id}"
        actor = self._user_json(run.actor)
        repo = self._minimal_repo_json()
        return {
            "id": run.id,
            "name": run.workflow.spec.name,
            "node_id": _node_id("WFR", run.id),
            "head_branch": run.head_branch,
            "head_sha": run.sha,
            "path": run.workflow.spec.path,
            "display_title": run.display_title,
            "run_number": run.run_number,
            "event": "workflow_dispatch",
            "status": run.status,
            "conclusion": run.conclusion,
            "workflow_id": run.workflow.id,
            "check_suite_id": run.check_suite_id,
            "check_suite_node_id": _node_id("CS", run.check_suite_id),
            "url": url,
            "html_url": f"{self._html_repo}/actions/runs/{run.id}",
            "pull_requests": [],
            "created_at": _iso(run.created_at),
            "updated_at": _iso(run.updated_at),
            "actor": actor,
            "run_attempt": run.attempt,
            "referenced_workflows": [],
            "run_started_at": _iso(run.run_started_at or run.created_at),
            "triggering_actor": actor,
            "jobs_url": f"{url}/jobs",
            "logs_url": f"{url}/logs",
            "check_suite_url": f"{self._api_repo}/check-suites/{run.check_suite_id}",
            "artifacts_url": f"{url}/artifacts",
            "cancel_url": f"{url}/cancel",
            "rerun_url": f"{url}/rerun",
            "previous_attempt_url": f"{url}/attempts/{run.attempt - 1}" if run.attempt > 1 else None,
            "workflow_url": f"{self._api_repo}/actions/workflows/{run.workflow.id}",
            "head_commit": {
                "id": run.sha,
                "tree_id": _fake_sha(f"tree:{run.sha}"),
                "message": f"Release {run.head_branch}",
                "timestamp": _iso(self._repo_created),
                "author": {"name": "Release Bot", "email": "release-bot@users.noreply.github.com"},
                "committer": {"name": "GitHub", "email": "noreply@github.com"},
            },
            "repository": repo,
            "head_repository": repo,
        }

    def _op_get_run(self, request: _Request) -> _Reply:
        return _Reply(200, self._run_json(self._find_run(request.params["run_id"])))

    def _op_list_runs(self, request: _Request) -> _Reply:
        runs = sorted(self._runs.values(), key=lambda r: -r.id)
        if "workflow_id" in request.params:
            workflow = self._find_workflow(request.params["workflow_id"])
            runs = [r for r in runs if r.workflow is workflow]
        status = request.arg("status")
        if status:
            runs = [r for r in runs if (r.conclusion if status in _CONCLUSIONS else r.status) == status]
        event = request.arg("event")
        if event and event != "workflow_dispatch":
            runs = []
        for name, attribute in (("branch", "head_branch"), ("actor", "actor"), ("head_sha", "sha")):
            wanted = request.arg(name)
            if wanted:
                runs = [r for r in runs if getattr(r, attribute) == wanted]
        suite = request.arg("check_suite_id")
        if suite:
            runs = [r for r in runs if str(r.check_suite_id) == suite]
        created = request.arg("created")
        if created:
            keep = _time_filter(created)
            runs = [r for r in runs if keep(math.floor(r.created_at))]
        page, headers = self._paginate(request, runs)
        body = {"total_count": len(runs), "workflow_runs": [self._run_json(r) for r in page]}
        return _Reply(200, body, headers)

    def _job_json(self, run: _Run) -> dict[str, Any]:
        done = run.status == "completed"
        started = run.job_started_at
        step_names = ["Set up job", f"Deploy {run.head_branch}", "Complete job"] if started else []
        steps = []
        for number, name in enumerate(step_names, start=1):
            if done:
                step_status, step_conclusion = "completed", run.conclusion if number == 2 else "success"
            elif started is not None and number == 1:
                step_status, step_conclusion = "completed", "success"
            elif started is not None and number == 2:
                step_status, step_conclusion = "in_progress", None
            else:
                step_status, step_conclusion = "queued", None
            steps.append(
                {
                    "name": name,
                    "status": step_status,
                    "conclusion": step_conclusion,
                    "number": number,
                    "started_at": _iso(started) if step_status != "queued" else None,
                    "completed_at": _iso(run.job_completed_at or run.updated_at)
                    if step_status == "completed"
                    else None,
                }
            )
        ran = started is not None
        return {
            "id": run.job_id,
            "run_id": run.id,
            "workflow_name": run.workflow.spec.name,
            "head_branch": run.head_branch,
            "run_url": f"{self._api_repo}/actions/runs/{run.id}",
            "run_attempt": run.attempt,
            "node_id": _node_id("CR", run.job_id),
            "head_sha": run.sha,
            "url": f"{self._api_repo}/actions/jobs/{run.job_id}",
            "html_url": f"{self._html_repo}/actions/runs/{run.id}/job/{run.job_id}",
            "status": run.status,
            "conclusion": run.conclusion if done else None,
            "created_at": _iso(run.created_at),
            "started_at": _iso(started or run.created_at),
            "completed_at": _iso(run.job_completed_at) if done else None,
            "name": run.workflow.spec.job_name,
            "steps": steps,
            "check_run_url": f"{self._api_repo}/check-runs/{run.job_id}",
            "labels": ["ubuntu-latest"],
            "runner_id": 7 if ran else None,
            "runner_name": "GitHub Actions 7" if ran else None,
            "runner_group_id": 2 if ran else None,
            "runner_group_name": "GitHub Actions" if ran else None,
        }

    def _op_list_jobs(self, request: _Request) -> _Reply:
        run = self._find_run(request.params["run_id"])
        page, headers = self._paginate(request, [run])
        return _Reply(200, {"total_count": 1, "jobs": [self._job_json(r) for r in page]}, headers)

    def _op_cancel_run(self, request: _Request) -> _Reply:
        run = self._find_run(request.params["run_id"])
        if run.status == "completed":
            raise _HttpError(409, "Cannot cancel a workflow run that is completed.")
        run.cancel_requested = True
        run.cancelled.set()
        if not run.hook_running:  # a running hook is told; the run ends when it returns
            self._finish(run, "cancelled", self._now())
        return _Reply(202, {})

    def _op_rerun(self, request: _Request) -> _Reply:
        run = self._find_run(request.params["run_id"])
        if run.status != "completed":
            raise _HttpError(403, "This workflow is already running")
        run.attempt += 1
        run.status, run.conclusion, run.deployment_id = "queued", None, None
        run.cancel_requested, run.cancelled = False, threading.Event()
        run.run_started_at = run.job_started_at = run.job_completed_at = run.waiting_since = None
        run.job_id = self._next_id("job", 33_000_000_001)
        run.updated_at = run.queued_at = self._now()
        return _Reply(201, {})

    # ----------------------------------------------------------------------- run lifecycle

    def _catch_up(self) -> None:
        """Bring every run up to the clock's time: make the moves due by now, start the hooks due.

        What a caller then sees depends only on the clock and on what happened before, never on
        thread scheduling. Hooks start one at a time, earliest due first, each on its own thread;
        the caller waits (outside the lock, up to ``hook_grace`` wall seconds from the hook's start)
        for every running hook before it goes on, except a hook's own thread calling back. Never
        call it holding the lock.
        """
        while True:
            with self._lock:
                started = None if self._stopping.is_set() else self._advance_runs(self._now())
                in_hook = threading.current_thread() in self._hook_threads
                running = [(t, until) for t, until in self._hook_threads.items() if t.is_alive()]
            if not in_hook:
                for thread, until in running:
                    thread.join(timeout=max(0.0, until - time.monotonic()))
            if started is None:
                return

    def _advance_runs(self, now: float) -> threading.Thread | None:
        """Make every timed move due by ``now``; start the hook due first, if one is (its thread)."""
        due: list[tuple[float, int, _Run]] = []
        for run in self._runs.values():
            self._leave_queue(run, now)
            hook_at = self._hook_due(run)
            if hook_at is not None and hook_at <= now:
                due.append((hook_at, run.id, run))
        if not due:
            return None
        hook_at, _, run = min(due)
        return self._start_hook(run, hook_at, now)

    def _leave_queue(self, run: _Run, now: float) -> None:
        """A runner picks the run up ``queue_delay`` after it was queued; a job for an environment
        with reviewers waits for one of them."""
        at = run.queued_at + self.queue_delay
        if run.status != "queued" or now < at:
            return
        run.run_started_at = at
        env = self._environments.get(run.environment) if run.environment else None
        if env is not None and env.reviewers:
            run.waiting_since = at
            self._set_status(run, "waiting", at)
        else:
            self._start_job(run, at)

    def _start_job(self, run: _Run, at: float) -> _Deployment | None:
        """The job starts (on leaving the queue, or when approved) and creates its deployment."""
        self._set_status(run, "in_progress", at)
        run.job_started_at = at
        return self._ensure_deployment(run, at)

    def _hook_due(self, run: _Run) -> float | None:
        """When the job's hook is due; None when the run is not waiting for its hook."""
        if run.status != "in_progress" or run.hook_running or run.job_started_at is None:
            return None
        return run.job_started_at + self.step_delay

    def _start_hook(self, run: _Run, due: float, now: float) -> threading.Thread:
        run.hook_running = True
        context = RunContext(
            run_id=run.id,
            run_number=run.run_number,
            run_attempt=run.attempt,
            workflow_id=run.workflow.id,
            workflow_name=run.workflow.spec.name,
            workflow_path=run.workflow.spec.path,
            ref=run.ref,
            sha=run.sha,
            inputs=dict(run.inputs),
            environment=run.environment,
            actor=run.actor,
            deployment_id=run.deployment_id,
            cancelled=run.cancelled,
        )
        thread = threading.Thread(
            target=self._execute,
            args=(run, context, self._hook, due, now),
            name=f"github-emulator-run-{run.id}",
            daemon=True,
        )
        self._hook_threads = {t: until for t, until in self._hook_threads.items() if t.is_alive()}
        self._hook_threads[thread] = time.monotonic() + self.hook_grace
        thread.start()
        return thread

    def _execute(self, run: _Run, context: RunContext, hook: RunHook, due: float, started: float) -> None:
        """The runner: the hook decides the job's outcome; the run completes when it returns.

        A hook that returns while the look that started it still waits was seen by nobody as
        running late: it is taken to have started when it was due (``due``, on the clock, rather
        than ``started``, when someone looked). One that outlasts that wait may have been seen in
        progress, so its run completes at the clock time it returns.
        """
        try:
            ok = bool(hook(context))
        except Exception as exc:
            log.exception("run hook failed for run %s", run.id)
            self.hook_errors.append(exc)
            ok = False
        with self._changed:
            run.hook_running = False
            now = self._now()
            held = time.monotonic() < self._hook_threads.get(threading.current_thread(), 0.0)
            if run.attempt == context.run_attempt and run.status != "completed":
                conclusion = "cancelled" if run.cancel_requested else ("success" if ok else "failure")
                self._finish(run, conclusion, due + (now - started) if held else now)

    def _set_status(self, run: _Run, status: str, at: float) -> None:
        run.status = status
        run.updated_at = at
        self._changed.notify_all()

    def _finish(self, run: _Run, conclusion: str, at: float) -> None:
        run.status, run.conclusion = "completed", conclusion
        run.updated_at = run.job_completed_at = at
        deployment = self._deployments.get(run.deployment_id) if run.deployment_id else None
        if deployment is not None:
            state = "success" if conclusion == "success" else "failure"
            description = {"success": "Deployed", "cancelled": "Run cancelled"}.get(
                conclusion, "Deployment failed"
            )
            self._add_deployment_status(
                deployment, run.actor, state, description, self._html_run(run), "", True, at=at
            )
        self._changed.notify_all()

    def _html_run(self, run: _Run) -> str:
        return f"{self._html_repo}/actions/runs/{run.id}/job/{run.job_id}"

    def _ensure_deployment(self, run: _Run, at: float) -> _Deployment | None:
        """The deployment an environment-targeting job creates when it starts (once per attempt)."""
        if run.environment is None:
            return None
        if run.deployment_id is not None:
            return self._deployments[run.deployment_id]
        deployment = self._new_deployment(
            ref=run.head_branch,
            sha=run.sha,
            task="deploy",
            payload=dict(run.inputs),
            environment=run.environment,
            description=None,
            creator=run.actor,
            transient=False,
            production=None,
            by_actions=True,
            at=at,
        )
        run.deployment_id = deployment.id
        self._add_deployment_status(
            deployment, run.actor, "in_progress", "", self._html_run(run), "", True, at=at
        )
        return deployment

    # ----------------------------------------------------------------------- environment approvals

    def _pending_json(self, run: _Run, login: str) -> list[dict[str, Any]]:
        if run.status != "waiting" or run.environment is None:
            return []
        env = self._environments[run.environment]
        can_approve = login in env.reviewers and not (env.prevent_self_review and login == run.actor)
        return [
            {
                "environment": {
                    "id": env.id,
                    "node_id": _node_id("EN", env.id),
                    "name": env.name,
                    "url": f"{self._api_repo}/environments/{quote(env.name)}",
                    "html_url": self._env_html(env),
                },
                "wait_timer": env.wait_timer,
                "wait_timer_started_at": _iso(run.waiting_since),
                "current_user_can_approve": can_approve,
                "reviewers": [{"type": "User", "reviewer": self._user_json(r)} for r in env.reviewers],
            }
        ]

    def _op_get_pending(self, request: _Request) -> _Reply:
        return _Reply(200, self._pending_json(self._find_run(request.params["run_id"]), request.login))

    def _op_review_pending(self, request: _Request) -> _Reply:
        run = self._find_run(request.params["run_id"])
        body = _body_object(request.body)
        ids = _field(body, "environment_ids", list, required=True)
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise _invalid("For 'items', the environment ids are not all integers.")
        state = _field(body, "state", str, required=True)
        if state not in ("approved", "rejected"):
            raise _invalid(f"For 'properties/state', {json.dumps(state)} is not a member of enum.")
        _field(body, "comment", str, required=True)
        deployments = self._review(run, request.login, state, ids)
        return _Reply(200, [self._deployment_json(d) for d in deployments])

    def _review(
        self, run: _Run, login: str, state: str, environment_ids: Sequence[int] | None
    ) -> list[_Deployment]:
        env = self._environments.get(run.environment) if run.environment else None
        if (
            run.status != "waiting"
            or env is None
            or (environment_ids is not None and env.id not in environment_ids)
        ):
            raise _HttpError(422, "No pending deployment requests to approve or reject")
        if login not in env.reviewers:
            raise _HttpError(422, f"{login} is not a required reviewer for environment '{env.name}'")
        if env.prevent_self_review and login == run.actor:
            raise _HttpError(422, f"Self-review is not allowed for environment '{env.name}'")
        if state != "approved":
            self._finish(run, "failure", self._now())
            return []
        deployment = self._start_job(run, self._now())
        return [deployment] if deployment else []

    # ----------------------------------------------------------------------- deployments

    def _new_deployment(
        self,
        *,
        ref: str,
        sha: str,
        task: str,
        payload: Any,
        environment: str,
        description: str | None,
        creator: str,
        transient: bool,
        production: bool | None,
        by_actions: bool,
        at: float | None = None,
    ) -> _Deployment:
        if environment not in self._environments:
            self._put_environment(EnvironmentDef(environment))
        now = self._now() if at is None else at
        deployment = _Deployment(
            id=self._next_id("deployment", 2_400_000_001),
            sha=sha,
            ref=ref,
            task=task,
            payload=payload,
            environment=environment,
            original_environment=environment,
            description=description,
            creator=creator,
            transient=transient,
            production=environment in ("production", "prod") if production is None else production,
            by_actions=by_actions,
            created_at=now,
            updated_at=now,
        )
        self._deployments[deployment.id] = deployment
        return deployment

    def _add_deployment_status(
        self,
        deployment: _Deployment,
        creator: str,
        state: str,
        description: str,
        log_url: str,
        environment_url: str,
        auto_inactive: bool,
        *,
        at: float | None = None,
    ) -> _DeploymentStatus:
        status = _DeploymentStatus(
            id=self._next_id("deployment_status", 3_100_000_001),
            state=state,
            creator=creator,
            description=description,
            environment=deployment.environment,
            target_url=log_url,
            log_url=log_url,
            environment_url=environment_url,
            created_at=self._now() if at is None else at,
        )
        deployment.statuses.append(status)
        deployment.updated_at = status.created_at
        if state == "success" and auto_inactive and not deployment.transient:
            for other in self._deployments.values():
                latest = other.statuses[-1].state if other.statuses else None
                if (
                    other.id != deployment.id
                    and other.environment == deployment.environment
                    and latest == "success"
                ):
                    self._add_deployment_status(other, creator, "inactive", "", "", "", False, at=at)
        return status

    def _deployment_json(self, deployment: _Deployment) -> dict[str, Any]:
        url = f"{self._api_repo}/deployments/{deployment.id}"
        return {
            "url": url,
            "id": deployment.id,
            "node_id": _node_id("DE", deployment.id),
            "sha": deployment.sha,
            "ref": deployment.ref,
            "task": deployment.task,
            "payload": deployment.payload,
            "original_environment": deployment.original_environment,
            "environment": deployment.environment,
            "description": deployment.description,
            "creator": self._user_json(deployment.creator),
            "created_at": _iso(deployment.created_at),
            "updated_at": _iso(deployment.updated_at),
            "statuses_url": f"{url}/statuses",
            "repository_url": self._api_repo,
            "transient_environment": deployment.transient,
            "production_environment": deployment.production,
            "performed_via_github_app": _github_actions_app(self._html_base)
            if deployment.by_actions
            else None,
        }

    def _status_json(self, deployment: _Deployment, status: _DeploymentStatus) -> dict[str, Any]:
        url = f"{self._api_repo}/deployments/{deployment.id}"
        return {
            "url": f"{url}/statuses/{status.id}",
            "id": status.id,
            "node_id": _node_id("DES", status.id),
            "state": status.state,
            "creator": self._user_json(status.creator),
            "description": status.description,
            "environment": status.environment,
            "target_url": status.target_url,
            "created_at": _iso(status.created_at),
            "updated_at": _iso(status.created_at),
            "deployment_url": url,
            "repository_url": self._api_repo,
            "environment_url": status.environment_url,
            "log_url": status.log_url,
            "performed_via_github_app": _github_actions_app(self._html_base)
            if deployment.by_actions
            else None,
        }

    def _find_deployment(self, deployment_id: str) -> _Deployment:
        deployment = self._deployments.get(int(deployment_id))
        if deployment is None:
            raise _HttpError(404, "Not Found")
        return deployment

    def _op_list_deployments(self, request: _Request) -> _Reply:
        found = sorted(self._deployments.values(), key=lambda d: -d.id)
        for name in ("environment", "ref", "sha", "task"):
            wanted = request.arg(name)
            if wanted and wanted != "none":
                found = [d for d in found if getattr(d, name) == wanted]
        page, headers = self._paginate(request, found)
        return _Reply(200, [self._deployment_json(d) for d in page], headers)

    def _op_create_deployment(self, request: _Request) -> _Reply:
        body = _body_object(request.body)
        ref = _field(body, "ref", str, required=True)
        sha = self._resolve_ref(ref) or (ref if _SHA_RE.fullmatch(ref) else None)
        if sha is None:
            raise _HttpError(422, f"No ref found for: {ref}")
        payload = body.get("payload", {})
        if not isinstance(payload, dict | str):
            raise _invalid(f"For 'properties/payload', {json.dumps(payload)} is not an object or a string.")
        _field(body, "required_contexts", list)
        _field(body, "auto_merge", bool)
        production = _field(body, "production_environment", bool)
        deployment = self._new_deployment(
            ref=ref,
            sha=sha,
            task=_field(body, "task", str) or "deploy",
            payload=payload,
            environment=_field(body, "environment", str) or "production",
            description=_field(body, "description", str, nullable=True),
            creator=request.login,
            transient=bool(_field(body, "transient_environment", bool)),
            production=production,
            by_actions=False,
        )
        return _Reply(
            201,
            self._deployment_json(deployment),
            {"location": f"{self._api_repo}/deployments/{deployment.id}"},
        )

    def _op_get_deployment(self, request: _Request) -> _Reply:
        return _Reply(200, self._deployment_json(self._find_deployment(request.params["deployment_id"])))

    def _op_list_deployment_statuses(self, request: _Request) -> _Reply:
        deployment = self._find_deployment(request.params["deployment_id"])
        page, headers = self._paginate(request, list(reversed(deployment.statuses)))
        return _Reply(200, [self._status_json(deployment, s) for s in page], headers)

    def _op_create_deployment_status(self, request: _Request) -> _Reply:
        deployment = self._find_deployment(request.params["deployment_id"])
        body = _body_object(request.body)
        state = _field(body, "state", str, required=True)
        if state not in _DEPLOYMENT_STATES:
            raise _invalid(f"For 'properties/state', {json.dumps(state)} is not a member of enum.")
        description = _field(body, "description", str) or ""
        if len(description) > 140:
            raise _validation_failed("DeploymentStatus", "custom", "description", "description is too long")
        environment = _field(body, "environment", str)
        if environment:
            deployment.environment = environment
        target_url = _field(body, "target_url", str) or ""
        log_url = _field(body, "log_url", str) or target_url
        auto_inactive = _field(body, "auto_inactive", bool)
        status = self._add_deployment_status(
            deployment,
            request.login,
            state,
            description,
            log_url,
            _field(body, "environment_url", str) or "",
            True if auto_inactive is None else auto_inactive,
        )
        status.target_url = target_url
        location = f"{self._api_repo}/deployments/{deployment.id}/statuses/{status.id}"
        return _Reply(201, self._status_json(deployment, status), {"location": location})

    # ----------------------------------------------------------------------- environments

    def _env_html(self, env: _Environment) -> str:
        return f"{self._html_repo}/deployments/activity_log?environments_filter={quote(env.name)}"

    def _environment_json(self, env: _Environment) -> dict[str, Any]:
        rules: list[dict[str, Any]] = []
        if env.wait_timer:
            rule_id = env.id * 10 + 1
            rules.append(
                {
                    "id": rule_id,
                    "node_id": _node_id("GA", rule_id),
                    "type": "wait_timer",
                    "wait_timer": env.wait_timer,
                }
            )
        if env.reviewers:
            rule_id = env.id * 10 + 2
            rules.append(
                {
                    "id": rule_id,
                    "node_id": _node_id("GA", rule_id),
                    "type": "required_reviewers",
                    "prevent_self_review": env.prevent_self_review,
                    "reviewers": [{"type": "User", "reviewer": self._user_json(r)} for r in env.reviewers],
                }
            )
        if env.branch_policy is not None:
            rule_id = env.id * 10 + 3
            rules.append({"id": rule_id, "node_id": _node_id("GA", rule_id), "type": "branch_policy"})
        return {
            "id": env.id,
            "node_id": _node_id("EN", env.id),
            "name": env.name,
            "url": f"{self._api_repo}/environments/{quote(env.name)}",
            "html_url": self._env_html(env),
            "created_at": _iso(env.created_at),
            "updated_at": _iso(env.updated_at),
            "can_admins_bypass": True,
            "protection_rules": rules,
            "deployment_branch_policy": env.branch_policy,
        }

    def _op_list_environments(self, request: _Request) -> _Reply:
        envs = sorted(self._environments.values(), key=lambda e: e.name)
        page, headers = self._paginate(request, envs)
        return _Reply(
            200,
            {"total_count": len(envs), "environments": [self._environment_json(e) for e in page]},
            headers,
        )

    def _op_get_environment(self, request: _Request) -> _Reply:
        env = self._environments.get(request.params["environment_name"])
        if env is None:
            raise _HttpError(404, "Not Found")
        return _Reply(200, self._environment_json(env))

    def _op_put_environment(self, request: _Request) -> _Reply:
        name = request.params["environment_name"]
        body = _body_object(request.body)
        allowed = {"wait_timer", "prevent_self_review", "reviewers", "deployment_branch_policy"}
        for key in body:
            if key not in allowed:
                raise _invalid(f'"{key}" is not a permitted key.')
        wait_timer = _field(body, "wait_timer", int)
        if wait_timer is not None and not 0 <= wait_timer <= 43_200:
            raise _validation_failed("Environment", "custom", "wait_timer", "wait_timer must be 0..43200")
        reviewers: list[str] | None = None
        raw_reviewers = _field(body, "reviewers", list, nullable=True)
        if raw_reviewers is not None:
            by_id = {u.id: u.login for u in self._users.values() if u.type == "User"}
            reviewers = []
            for entry in raw_reviewers:
                if not isinstance(entry, dict) or entry.get("type") not in ("User", "Team"):
                    raise _invalid("For 'items', the reviewer is not a {type, id} object.")
                if entry["type"] != "User" or entry.get("id") not in by_id:
                    raise _validation_failed(
                        "Environment", "invalid", "reviewers", f"Reviewer {entry.get('id')} not found"
                    )
                reviewers.append(by_id[entry["id"]])
        existing = self._environments.get(name)
        self._put_environment(
            EnvironmentDef(
                name=name,
                reviewers=reviewers if reviewers is not None else (existing.reviewers if existing else ()),
                wait_timer=wait_timer if wait_timer is not None else (existing.wait_timer if existing else 0),
                prevent_self_review=bool(
                    _field(body, "prevent_self_review", bool)
                    if "prevent_self_review" in body
                    else (existing.prevent_self_review if existing else False)
                ),
            )
        )
        env = self._environments[name]
        if "deployment_branch_policy" in body:
            policy = _field(body, "deployment_branch_policy", dict, nullable=True)
            env.branch_policy = (
                None
                if policy is None
                else {
                    "protected_branches": bool(policy.get("protected_branches")),
                    "custom_branch_policies": bool(policy.get("custom_branch_policies")),
                }
            )
        elif existing is not None:
            env.branch_policy = existing.branch_policy
        return _Reply(200, self._environment_json(env))

    # ----------------------------------------------------------------------- releases and tags

    def _create_release(self, spec: ReleaseDef, *, author: str, make_latest: str) -> _Release:
        if any(r.tag_name == spec.tag_name for r in self._releases.values()):
            raise _validation_failed("Release", "already_exists", "tag_name")
        target = spec.target_commitish or self._settings["default_branch"]
        if spec.tag_name not in self._tags and not spec.draft:
            sha = self._resolve_ref(target) or (target if _SHA_RE.fullmatch(target) else None)
            if sha is None:
                raise _validation_failed("Release", "invalid", "target_commitish")
            self._tags[spec.tag_name] = sha
        now = self._now()
        release = _Release(
            id=self._next_id("release", 150_000_001),
            tag_name=spec.tag_name,
            target_commitish=target,
            name=spec.name if spec.name is not None else spec.tag_name,
            body=spec.body,
            draft=spec.draft,
            prerelease=spec.prerelease,
            author=author,
            created_at=now,
            published_at=None if spec.draft else now,
        )
        self._releases[release.id] = release
        if not release.draft and not release.prerelease and make_latest != "false":
            self._latest_release = release.id
        return release

    def _release_json(self, release: _Release) -> dict[str, Any]:
        url = f"{self._api_repo}/releases/{release.id}"
        return {
            "url": url,
            "html_url": f"{self._html_repo}/releases/tag/{quote(release.tag_name)}",
            "assets_url": f"{url}/assets",
            "upload_url": f"https://uploads.github.com/repos/{self.full_name}/releases/{release.id}/assets{{?name,label}}",
            "tarball_url": f"{self._api_repo}/tarball/{quote(release.tag_name)}",
            "zipball_url": f"{self._api_repo}/zipball/{quote(release.tag_name)}",
            "id": release.id,
            "node_id": _node_id("RE", release.id),
            "tag_name": release.tag_name,
            "target_commitish": release.target_commitish,
            "name": release.name,
            "body": release.body,
            "draft": release.draft,
            "prerelease": release.prerelease,
            "immutable": False,
            "created_at": _iso(release.created_at),
            "updated_at": _iso(release.created_at),
            "published_at": _iso(release.published_at),
            "author": self._user_json(release.author),
            "assets": [],
            "reactions": self._reactions(url),
        }

    def _op_list_releases(self, request: _Request) -> _Reply:
        releases = sorted(self._releases.values(), key=lambda r: -r.id)
        page, headers = self._paginate(request, releases)
        return _Reply(200, [self._release_json(r) for r in page], headers)

    def _op_create_release(self, request: _Request) -> _Reply:
        body = _body_object(request.body)
        make_latest = _field(body, "make_latest", str) or "true"
        if make_latest not in ("true", "false", "legacy"):
            raise _invalid(
                f"For 'properties/make_latest', {json.dumps(make_latest)} is not a member of enum."
            )
        spec = ReleaseDef(
            tag_name=_field(body, "tag_name", str, required=True),
            name=_field(body, "name", str),
            body=_field(body, "body", str) or "",
            draft=bool(_field(body, "draft", bool)),
            prerelease=bool(_field(body, "prerelease", bool)),
            target_commitish=_field(body, "target_commitish", str),
        )
        release = self._create_release(spec, author=request.login, make_latest=make_latest)
        return _Reply(
            201, self._release_json(release), {"location": f"{self._api_repo}/releases/{release.id}"}
        )

    def _op_latest_release(self, request: _Request) -> _Reply:
        if self._latest_release is None:
            raise _HttpError(404, "Not Found")
        return _Reply(200, self._release_json(self._releases[self._latest_release]))

    def _op_release_by_tag(self, request: _Request) -> _Reply:
        for release in self._releases.values():
            if release.tag_name == request.params["tag"] and not release.draft:
                return _Reply(200, self._release_json(release))
        raise _HttpError(404, "Not Found")

    def _op_list_tags(self, request: _Request) -> _Reply:
        names = sorted(self._tags, key=_version_key, reverse=True)
        page, headers = self._paginate(request, names)
        return _Reply(
            200,
            [
                {
                    "name": name,
                    "commit": {
                        "sha": self._tags[name],
                        "url": f"{self._api_repo}/commits/{self._tags[name]}",
                    },
                    "zipball_url": f"{self._api_repo}/zipball/refs/tags/{quote(name)}",
                    "tarball_url": f"{self._api_repo}/tarball/refs/tags/{quote(name)}",
                    "node_id": _node_id("REF", int(self._tags[name][:8], 16)),
                }
                for name in page
            ],
            headers,
        )

    # ----------------------------------------------------------------------- contents

    def _tree_at(self, ref: str) -> dict[str, bytes]:
        """The files at ``ref``: those given for it, over the workflow files (at every ref)."""
        workflows = {w.spec.path: workflow_yaml(w.spec).encode() for w in self._workflows.values()}
        key = _short_ref(ref)
        if key in self._files:
            return {**workflows, **self._files[key]}
        sha = self._resolve_ref(ref) or (ref if _SHA_RE.fullmatch(ref) else None)
        if sha is None:
            raise _HttpError(404, f"No commit found for the ref {ref}")
        for name, tree in self._files.items():
            if name == sha or self._resolve_ref(name) == sha:
                return {**workflows, **tree}
        return workflows

    def _content_entry(self, path: str, ref: str, data: bytes | None) -> dict[str, Any]:
        kind = "dir" if data is None else "file"
        sha = _blob_sha(data) if data is not None else _fake_sha(f"tree:{ref}:{path}")
        url = f"{self._api_repo}/contents/{quote(path)}?ref={quote(ref)}"
        git_url = f"{self._api_repo}/git/{'trees' if data is None else 'blobs'}/{sha}"
        html_url = f"{self._html_repo}/{'tree' if data is None else 'blob'}/{quote(ref)}/{quote(path)}"
        return {
            "type": kind,
            "size": 0 if data is None else len(data),
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": sha,
            "url": url,
            "git_url": git_url,
            "html_url": html_url,
            "download_url": (
                None
                if data is None
                else f"https://raw.githubusercontent.com/{self.full_name}/{quote(ref)}/{quote(path)}"
            ),
            "_links": {"self": url, "git": git_url, "html": html_url},
        }

    def _op_get_content(self, request: _Request) -> _Reply:
        ref = request.arg("ref") or self._settings["default_branch"]
        tree = self._tree_at(ref)
        path = request.params["path"].strip("/")
        if path in tree:
            data = tree[path]
            entry = self._content_entry(path, ref, data)
            encoded = base64.b64encode(data).decode()
            entry["content"] = "\n".join(encoded[i : i + 60] for i in range(0, len(encoded), 60)) + "\n"
            entry["encoding"] = "base64"
            return _Reply(200, entry)
        children: dict[str, bytes | None] = {}
        for name, data in tree.items():
            if name.startswith(path + "/"):
                rest = name[len(path) + 1 :]
                child = rest.split("/", 1)[0]
                children[f"{path}/{child}"] = data if "/" not in rest else None
        if not children:
            raise _HttpError(404, "Not Found")
        return _Reply(200, [self._content_entry(p, ref, d) for p, d in sorted(children.items())])

    # ----------------------------------------------------------------------- issues

    def _label(self, name: str) -> _Label:
        label = self._labels.get(name.lower())
        if label is None:
            label = _Label(id=self._next_id("label", 6_100_000_001), name=name)
            self._labels[name.lower()] = label
        return label

    def _issue_json(self, issue: _Issue) -> dict[str, Any]:
        url = f"{self._api_repo}/issues/{issue.number}"
        return {
            "id": issue.id,
            "node_id": _node_id("I", issue.id),
            "url": url,
            "repository_url": self._api_repo,
            "labels_url": f"{url}/labels{{/name}}",
            "comments_url": f"{url}/comments",
            "events_url": f"{url}/events",
            "html_url": f"{self._html_repo}/issues/{issue.number}",
            "number": issue.number,
            "state": issue.state,
            "state_reason": issue.state_reason,
            "title": issue.title,
            "body": issue.body,
            "user": self._user_json(issue.user),
            "labels": [
                {
                    "id": label.id,
                    "node_id": _node_id("LA", label.id),
                    "url": f"{self._api_repo}/labels/{quote(label.name)}",
                    "name": label.name,
                    "description": label.description,
                    "color": label.color,
                    "default": False,
                }
                for label in (self._label(n) for n in issue.labels)
            ],
            "assignee": self._user_json(issue.assignees[0]) if issue.assignees else None,
            "assignees": [self._user_json(a) for a in issue.assignees],
            "milestone": None,
            "locked": False,
            "active_lock_reason": None,
            "comments": len(issue.comments),
            "closed_at": _iso(issue.closed_at),
            "created_at": _iso(issue.created_at),
            "updated_at": _iso(issue.updated_at),
            "closed_by": self._user_json(issue.closed_by) if issue.closed_by else None,
            "author_association": "MEMBER",
            "timeline_url": f"{url}/timeline",
            "performed_via_github_app": None,
            "reactions": self._reactions(url),
            "sub_issues_summary": {"total": 0, "completed": 0, "percent_completed": 0},
        }

    def _find_issue(self, number: str) -> _Issue:
        issue = self._issues.get(int(number))
        if issue is None:
            raise _HttpError(404, "Not Found")
        return issue

    @staticmethod
    def _label_names(raw: list[Any]) -> list[str]:
        names = []
        for item in raw:
            name = item.get("name") if isinstance(item, dict) else item
            if not isinstance(name, str):
                raise _invalid(f"For 'items', {json.dumps(item)} is not a string.")
            names.append(name)
        return names

    @staticmethod
    def _logins(raw: list[Any]) -> list[str]:
        logins = []
        for item in raw:
            login = item.get("login") if isinstance(item, dict) else item
            if not isinstance(login, str):
                raise _invalid(f"For 'items', {json.dumps(item)} is not a string.")
            logins.append(login)
        return logins

    def _op_list_issues(self, request: _Request) -> _Reply:
        state = request.arg("state") or "open"
        issues = [i for i in self._issues.values() if state == "all" or i.state == state]
        labels = [n.strip().lower() for n in (request.arg("labels") or "").split(",") if n.strip()]
        if labels:
            issues = [i for i in issues if set(labels) <= {n.lower() for n in i.labels}]
        creator = request.arg("creator")
        if creator:
            issues = [i for i in issues if i.user.lower() == creator.lower()]
        assignee = request.arg("assignee")
        if assignee == "none":
            issues = [i for i in issues if not i.assignees]
        elif assignee == "*":
            issues = [i for i in issues if i.assignees]
        elif assignee:
            issues = [i for i in issues if assignee.lower() in (a.lower() for a in i.assignees)]
        since = request.arg("since")
        if since:
            keep = _time_filter(">=" + since)
            issues = [i for i in issues if keep(math.floor(i.updated_at))]
        sort = request.arg("sort") or "created"
        keys: dict[str, Callable[[_Issue], float]] = {
            "created": lambda i: i.created_at + i.number * 1e-9,
            "updated": lambda i: i.updated_at + i.number * 1e-9,
            "comments": lambda i: len(i.comments) + i.number * 1e-9,
        }
        issues.sort(
            key=keys.get(sort, keys["created"]), reverse=(request.arg("direction") or "desc") == "desc"
        )
        page, headers = self._paginate(request, issues)
        return _Reply(200, [self._issue_json(i) for i in page], headers)

    def _op_create_issue(self, request: _Request) -> _Reply:
        body = _body_object(request.body)
        if body.get("title") is None:
            raise _invalid('"title" wasn\'t supplied.')
        title = body["title"]
        if not isinstance(title, str | int) or isinstance(title, bool):
            raise _invalid(f"For 'properties/title', {json.dumps(title)} is not a string or an integer.")
        assignees = self._logins(_field(body, "assignees", list) or [])
        single = _field(body, "assignee", str, nullable=True)
        if single and single not in assignees:
            assignees.insert(0, single)
        now = self._now()
        number = self._next_id("issue_number", 1)
        issue = _Issue(
            id=self._next_id("issue", 2_600_000_001),
            number=number,
            title=str(title),
            body=_field(body, "body", str),
            user=request.login,
            labels=self._label_names(_field(body, "labels", list) or []),
            assignees=assignees,
            created_at=now,
            updated_at=now,
        )
        for login in issue.assignees:
            self._user(login)
        self._issues[number] = issue
        return _Reply(201, self._issue_json(issue), {"location": f"{self._api_repo}/issues/{number}"})

    def _op_get_issue(self, request: _Request) -> _Reply:
        return _Reply(200, self._issue_json(self._find_issue(request.params["issue_number"])))

    def _op_update_issue(self, request: _Request) -> _Reply:
        issue = self._find_issue(request.params["issue_number"])
        body = _body_object(request.body)
        if body.get("title") is not None:
            title = body["title"]
            if not isinstance(title, str | int) or isinstance(title, bool):
                raise _invalid(f"For 'properties/title', {json.dumps(title)} is not a string or an integer.")
            issue.title = str(title)
        if "body" in body:
            issue.body = _field(body, "body", str, nullable=True)
        labels = _field(body, "labels", list)
        if labels is not None:
            issue.labels = self._label_names(labels)
        assignees = _field(body, "assignees", list)
        if assignees is not None:
            issue.assignees = self._logins(assignees)
        if "assignee" in body:
            single = _field(body, "assignee", str, nullable=True)
            issue.assignees = [single] if single else []
        state = _field(body, "state", str)
        reason = _field(body, "state_reason", str, nullable=True)
        if state is not None and state not in ("open", "closed"):
            raise _invalid(f"For 'properties/state', {json.dumps(state)} is not a member of enum.")
        if reason is not None and reason not in ("completed", "not_planned", "duplicate", "reopened"):
            raise _invalid(f"For 'properties/state_reason', {json.dumps(reason)} is not a member of enum.")
        now = self._now()
        if state == "closed" and issue.state != "closed":
            issue.state, issue.closed_at, issue.closed_by = "closed", now, request.login
            issue.state_reason = reason or "completed"
        elif state == "open" and issue.state != "open":
            issue.state, issue.closed_at, issue.closed_by = "open", None, None
            issue.state_reason = "reopened"
        elif reason is not None:
            issue.state_reason = reason
        issue.updated_at = now
        return _Reply(200, self._issue_json(issue))

    def _comment_json(self, comment: _Comment) -> dict[str, Any]:
        url = f"{self._api_repo}/issues/comments/{comment.id}"
        return {
            "id": comment.id,
            "node_id": _node_id("IC", comment.id),
            "url": url,
            "html_url": f"{self._html_repo}/issues/{comment.issue_number}#issuecomment-{comment.id}",
            "body": comment.body,
            "user": self._user_json(comment.user),
            "created_at": _iso(comment.created_at),
            "updated_at": _iso(comment.updated_at),
            "issue_url": f"{self._api_repo}/issues/{comment.issue_number}",
            "author_association": "MEMBER",
            "performed_via_github_app": None,
            "reactions": self._reactions(url),
        }

    def _op_list_comments(self, request: _Request) -> _Reply:
        issue = self._find_issue(request.params["issue_number"])
        comments = issue.comments
        since = request.arg("since")
        if since:
            keep = _time_filter(">=" + since)
            comments = [c for c in comments if keep(math.floor(c.updated_at))]
        page, headers = self._paginate(request, comments)
        return _Reply(200, [self._comment_json(c) for c in page], headers)

    def _op_create_comment(self, request: _Request) -> _Reply:
        issue = self._find_issue(request.params["issue_number"])
        body = _body_object(request.body)
        text = _field(body, "body", str, required=True)
        now = self._now()
        comment = _Comment(
            id=self._next_id("comment", 2_700_000_001),
            issue_number=issue.number,
            body=text,
            user=request.login,
            created_at=now,
            updated_at=now,
        )
        issue.comments.append(comment)
        issue.updated_at = now
        return _Reply(
            201, self._comment_json(comment), {"location": f"{self._api_repo}/issues/comments/{comment.id}"}
        )

    # ----------------------------------------------------------------------- GitHub Apps (JWT)

    def _op_get_app(self, request: _Request) -> _Reply:
        assert request.app_id is not None  # a JWT operation: _serve verified it
        app_id, slug = request.app_id, app_slug(request.app_id)
        return _Reply(
            200,
            {
                "id": app_id,
                "slug": slug,
                "node_id": _node_id("A", app_id),
                "client_id": f"Iv23li{app_id:014d}",
                "owner": self._user_json(self._owner),
                "name": slug,
                "description": "The rollback watchdog (emulated)",
                "external_url": f"{self._html_base}/{self._owner}",
                "html_url": f"{self._html_base}/apps/{slug}",
                "created_at": _iso(self._repo_created),
                "updated_at": _iso(self._repo_created),
                "permissions": dict(self._apps.permissions),
                "events": [],
                "installations_count": sum(
                    1 for i in self._apps.installations.values() if i.app_id == app_id
                ),
            },
        )

    def _installation_json(self, installation_id: int) -> dict[str, Any]:
        installation = self._apps.installations[installation_id]
        owner = self._user(self._owner)
        return {
            "id": installation.id,
            "account": self._user_json(self._owner),
            "repository_selection": "selected",
            "access_tokens_url": f"{self._api}/app/installations/{installation.id}/access_tokens",
            "repositories_url": f"{self._api}/installation/repositories",
            "html_url": f"{self._html_base}/organizations/{self._owner}/settings/installations/"
            f"{installation.id}",
            "app_id": installation.app_id,
            "app_slug": app_slug(installation.app_id),
            "target_id": owner.id,
            "target_type": owner.type,
            "permissions": dict(self._apps.permissions),
            "events": [],
            "created_at": _iso(self._repo_created),
            "updated_at": _iso(self._repo_created),
            "single_file_name": None,
            "suspended_by": None,
            "suspended_at": None,
        }

    def _op_get_repo_installation(self, request: _Request) -> _Reply:
        assert request.app_id is not None
        installation = self._apps.installation_of(request.app_id, self.full_name)
        if installation is None:
            raise _HttpError(404, "Not Found")
        return _Reply(200, self._installation_json(installation.id))

    def _op_create_installation_token(self, request: _Request) -> _Reply:
        installation = self._apps.installations.get(int(request.params["installation_id"]))
        if installation is None or installation.app_id != request.app_id:
            raise _HttpError(404, "Not Found")
        asked = _body_object(request.body).get("permissions") or {}
        granted = self._apps.permissions
        levels = {"read": 1, "write": 2, "admin": 3}
        if not isinstance(asked, dict) or any(
            levels.get(str(level), 9) > levels.get(granted.get(name, ""), 0) for name, level in asked.items()
        ):
            raise _HttpError(422, "The permissions requested are not granted to this installation.")
        minted = self._apps.mint(installation, self._now())
        return _Reply(
            201,
            {
                "token": minted.token,
                "expires_at": _iso(minted.expires_at),
                "permissions": dict(asked) or dict(granted),
                "repository_selection": "selected",
            },
        )

    # ----------------------------------------------------------------------- rate limit endpoint

    def _op_rate_limit(self, request: _Request) -> _Reply:
        core = self.rate_limit
        reset = int(self._now()) + 3600

        def idle(limit: int) -> dict[str, int]:
            return {"limit": limit, "remaining": limit, "reset": reset, "used": 0}

        resources = {
            "core": core,
            "search": idle(30),
            "graphql": idle(5000),
            "integration_manifest": idle(5000),
            "source_import": idle(100),
            "code_scanning_upload": idle(1000),
            "actions_runner_registration": idle(10000),
            "scim": idle(15000),
            "dependency_snapshots": idle(100),
            "code_search": idle(10),
        }
        return _Reply(200, {"resources": resources, "rate": core})


# --------------------------------------------------------------------------- standalone


def seed_kwargs(seed: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments from a JSON seed (the ``--seed`` file of the standalone server).

    Keys: ``default_branch``, ``branches`` and ``tags`` (name → sha), ``workflows`` (objects with
    the :class:`WorkflowDef` fields; ``inputs`` maps names to :class:`WorkflowInput` fields),
    ``environments`` (names or objects with ``name``, ``reviewers``, ``wait_timer``,
    ``prevent_self_review``), ``releases`` (:class:`ReleaseDef` fields), ``files``
    (ref → path → text) and ``extra_tokens`` (token → login).
    """
    kwargs: dict[str, Any] = {}
    for key in ("default_branch", "branches", "tags", "files", "extra_tokens"):
        if key in seed:
            kwargs[key] = seed[key]
    if "workflows" in seed:
        kwargs["workflows"] = [
            WorkflowDef(
                **{k: v for k, v in w.items() if k != "inputs"},
                inputs={
                    name: WorkflowInput(**{**spec, "options": tuple(spec.get("options", ()))})
                    for name, spec in w.get("inputs", {}).items()
                },
            )
            for w in seed["workflows"]
        ]
    if "environments" in seed:
        kwargs["environments"] = [
            e if isinstance(e, str) else EnvironmentDef(**{**e, "reviewers": tuple(e.get("reviewers", ()))})
            for e in seed["environments"]
        ]
    if "releases" in seed:
        kwargs["releases"] = [ReleaseDef(**r) for r in seed["releases"]]
    return kwargs


def _load_hook(target: str) -> RunHook:
    module_name, _, attribute = target.partition(":")
    if not attribute:
        raise SystemExit(f"--hook must look like module:function, got {target!r}")
    return cast(RunHook, getattr(importlib.import_module(module_name), attribute))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator as a server until interrupted (for the demo and Docker)."""
    parser = argparse.ArgumentParser(
        prog="python -m watchdog.emulator.github",
        description="Serve an emulated GitHub REST API for one repository.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--token", default=os.environ.get("GITHUB_EMULATOR_TOKEN", "emulator-token"))
    parser.add_argument("--login", default="watchdog-bot", help="the user the token authenticates as")
    parser.add_argument("--repo", default="acme/stamps", help="owner/name of the emulated repository")
    parser.add_argument("--public-url", help="base URL to put in `url` fields, if clients reach us elsewhere")
    parser.add_argument(
        "--seed", type=Path, help="JSON file with tags, environments, workflows, releases, files"
    )
    parser.add_argument("--hook", help="module:function deciding each run's outcome (default: all succeed)")
    parser.add_argument("--queue-delay", type=float, default=1.0, help="seconds a run stays queued")
    parser.add_argument(
        "--step-delay", type=float, default=2.0, help="seconds a run is in progress before its hook"
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    owner, _, name = args.repo.partition("/")
    if not owner or not name:
        parser.error("--repo must be owner/name")
    seed = json.loads(args.seed.read_text()) if args.seed else {}
    emulator = GitHubEmulator(
        token=args.token,
        owner=owner,
        repo=name,
        login=args.login,
        host=args.host,
        port=args.port,
        public_url=args.public_url,
        hook=_load_hook(args.hook) if args.hook else None,
        queue_delay=args.queue_delay,
        step_delay=args.step_delay,
        **seed_kwargs(seed),
    )
    emulator.serve_until_terminated(f"for {emulator.full_name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
