"""Deploys detected from GitHub's deployments, for teams that add nothing to their workflow.

A deploy reaches the watchdog three ways: the workflow announces it (``POST /v1/deploys``), someone
runs ``rollback-watchdog announce``, or this poller sees it in GitHub's deployments. The store keeps
one deploy event per (env, service, tag, run id) whichever way it came (``Store.add_deploy_event``).

Each environment's deployments and the newest status of each are read with conditional requests
(``If-None-Match`` with the ``ETag`` of the last answer to that URL, kept in memory): GitHub
answers ``304 Not Modified`` when nothing changed, and such an answer costs no rate limit. A
restart only makes each URL's first request unconditional. A deployment whose newest status is
``success`` is announced once; one that succeeded before the poller started, or before the newest
deploy the store knows for its environment and service, is history and never replayed into a
watch. The watchdog's own rollback runs (their payload carries an incident's correlation id) are
not deploys. GitHub failing (down, rate limited) leaves that environment blind for the round,
logged; the next round asks again.

Wiring (``watchdog.app.run_daemon``, after the tick job; only the leader polls)::

    polling = cfg.github.deployments
    if polling.poll and app.pipeline.deployer is not None:
        poller = DeploymentPoller(cfg, app.pipeline.deployer, app.store, clock, app.engine.announce)
        scheduler.add_job(
            poller.job(lambda: leadership.leading),
            "interval",
            seconds=polling.interval_s,
            id="deployments",
            max_instances=1,
            coalesce=True,
        )

The poller is built once at the daemon's start (that moment is its "start"); it talks to GitHub on
a requester of its own, with the workflow client's settings, so a poll and a tick's GitHub calls
never share PyGithub's connection, which is not safe across threads.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlencode

import structlog
from github.Requester import Requester

from actions.github import DeployWorkflow, github_error
from watchdog.clock import Clock
from watchdog.config import EnvName, WatchdogConfig
from watchdog.errors import InputError
from watchdog.observability import report_exception
from watchdog.store import Incident, ReleaseRef, Store

log = structlog.get_logger("watchdog.deploys")

#: The ``source`` of the deploy events the poller announces.
SOURCE = "github-deployments"
#: A workflow run's id in a status's ``log_url``/``target_url``.
_RUN_URL = re.compile(r"/actions/runs/(\d+)")
#: Newest statuses after which a deployment is over (a later status is not waited for).
_FINAL_STATES = frozenset({"success", "failure", "error", "inactive"})
#: How long a deployment without a final status is read again at every poll, even when its
#: listing did not change: GitHub does not promise that a new status moves the deployment's
#: ``updated_at``. Six hours is GitHub Actions' limit on a job's run time.
FOLLOW_OPEN_S = 6 * 3600.0
#: Deployments listed per environment and poll: the newest, GitHub's default page.
PER_PAGE = 30


class Announce(Protocol):
    """``watchdog.engine.Engine.announce``: queues the deploy, returns its deploy event's id."""

    def __call__(
        self, env: str, service: str, ref: ReleaseRef, *, deployed_at: float, source: str, actor: str
    ) -> int: ...


@dataclass(frozen=True)
class Detected:
    """A deploy the poller announced: GitHub's deployment and the deploy event it became (an
    event already stored for the same deploy, announced another way, when there was one)."""

    env: str
    service: str
    ref: ReleaseRef
    deployment_id: int
    deployed_at: float
    event_id: int


@dataclass
class _Cached:
    etag: str
    body: Any


def _timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _payload(deployment: dict[str, Any]) -> dict[str, Any]:
    """A deployment's payload: an object, or a string holding one (GitHub takes both)."""
    raw = deployment.get("payload")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return raw if isinstance(raw, dict) else {}


def _build(status: dict[str, Any]) -> tuple[int | None, str | None]:
    """The run id and build URL a status points at: its ``log_url`` or ``target_url``."""
    urls = [u for u in (status.get("log_url"), status.get("target_url")) if isinstance(u, str) and u]
    for url in urls:
        found = _RUN_URL.search(url)
        if found:
            return int(found.group(1)), url
    return None, urls[0] if urls else None


class DeploymentPoller:
    """Polls GitHub's deployments of each configured environment and announces the successful ones."""

    def __init__(
        self,
        cfg: WatchdogConfig,
        workflow: DeployWorkflow,
        store: Store,
        clock: Clock,
        announce: Announce,
    ) -> None:
        polling = cfg.github.deployments
        names: list[EnvName] = list(polling.environments or cfg.environments)
        for name in names:
            cfg.env(name)  # an environment that is not configured is a mistake in the config
        self.environments = names
        self.services = [s.name for s in cfg.services]
        self.correlation_input = cfg.github.correlation_input
        self.repo = workflow.repo_name
        self.store = store
        self.clock = clock
        self.announce = announce
        #: Deployments that succeeded before this second are history, never announced (GitHub's
        #: times are whole seconds).
        self.started = float(math.floor(clock.now()))
        # the workflow client's settings and its Auth object: a GitHub App's installation token
        # is the same one, refreshed for both (``actions.github_app.InstallationTokenAuth``)
        self._requester = Requester(**workflow.github.requester.kwargs)
        self._etags: dict[str, _Cached] = {}
        #: deployment id → its ``updated_at`` when its statuses were last read (still open)
        self._open: dict[int, str] = {}
        #: deployments decided for good: announced, failed, history, not one of ours
        self._done: set[int] = set()

    # ------------------------------------------------------------------ the daemon's job

    def job(self, leading: Callable[[], bool] = lambda: True) -> Callable[[], None]:
        """The scheduler's job: a poll while ``leading()`` (the leader's), which never raises."""

        def poll() -> None:
            if not leading():
                return
            try:
                self.poll_once()
            except Exception as exc:  # a poll must never kill the daemon; the next one tries again
                report_exception(log, "deployment poll failed", exc)

        return poll

    def poll_once(self) -> list[Detected]:
        """One round over the environments; what it announced. An environment GitHub did not
        answer for is logged and blind for this round."""
        detected: list[Detected] = []
        for env in self.environments:
            try:
                detected += self._poll_env(env)
            except Exception as exc:
                report_exception(log, "deployment poll failed", exc, env=env, repo=self.repo)
        return detected

    # ------------------------------------------------------------------ one environment

    def _poll_env(self, env: str) -> list[Detected]:
        url = f"/repos/{self.repo}/deployments"
        listed = self._get(url, {"environment": env, "per_page": PER_PAGE}, f"list deployments to {env}")
        now = self.clock.now()
        detected = []
        for deployment in reversed(listed or []):  # oldest first: the newest deploy's watch is the last
            found = self._consider(env, deployment, now)
            if found is not None:
                detected.append(found)
        return detected

    def _consider(self, env: str, deployment: dict[str, Any], now: float) -> Detected | None:
        dep_id = int(deployment["id"])
        if dep_id in self._done:
            return None
        updated = str(deployment.get("updated_at"))
        created = _timestamp(str(deployment["created_at"]))
        if created < self.started - FOLLOW_OPEN_S:  # over long before the start, whatever it became
            self._done.add(dep_id)
            return None
        if self._open.get(dep_id) == updated and created < now - FOLLOW_OPEN_S:
            return None  # unchanged, and too old to be still running
        service = self._service(env, deployment)
        if service is None:
            self._done.add(dep_id)
            return None
        statuses = self._get(
            f"/repos/{self.repo}/deployments/{dep_id}/statuses",
            {"per_page": 1},
            f"read the statuses of deployment {dep_id}",
        )
        newest = statuses[0] if statuses else None
        if newest is None or newest.get("state") not in _FINAL_STATES:
            self._open[dep_id] = updated
            return None
        detected = self._announce(env, service, deployment, newest) if newest["state"] == "success" else None
        self._open.pop(dep_id, None)
        self._done.add(dep_id)
        return detected

    def _service(self, env: str, deployment: dict[str, Any]) -> str | None:
        """The configured service a deployment deployed, or None (logged) when it is not one of
        ours: another service's, the watchdog's own rollback, or one it cannot tell."""
        payload = _payload(deployment)
        context = {"env": env, "deployment": deployment["id"], "ref": deployment.get("ref")}
        correlation = payload.get(self.correlation_input)
        if isinstance(correlation, str) and correlation and self._is_rollback(correlation):
            log.info("deployment is the watchdog's own rollback: not a deploy", **context)
            return None
        named = payload.get("service")
        if isinstance(named, str) and named:
            if named in self.services:
                return named
            log.info("deployment of a service the watchdog does not watch", service=named, **context)
            return None
        if len(self.services) == 1:
            return self.services[0]
        log.warning(
            "deployment names no service (payload.service) and several are configured: not announced",
            services=self.services,
            **context,
        )
        return None

    def _is_rollback(self, correlation_id: str) -> bool:
        return bool(self.store.page(Incident, limit=1, correlation_id=correlation_id))

    def _known_until(self, env: str, service: str) -> float:
        """Deploys before this are history: the poller's start, or the newest deploy the store
        knows for the service there (a watch's deploy time, a queued event's), if that is later."""
        times = [self.started]
        watch = self.store.last_deploy_watch(env, service)
        if watch is not None:
            times.append(watch.started_at)
        times += [
            e.deployed_at for e in self.store.pending_deploy_events() if (e.env, e.service) == (env, service)
        ]
        return max(times)

    def _announce(
        self, env: str, service: str, deployment: dict[str, Any], status: dict[str, Any]
    ) -> Detected | None:
        """Announce a successful deployment: the deploy it became, or None when it is history or
        refused. Any other failure (the store) propagates: the deployment stays undecided, and
        the next poll (with the answers it already has, at no rate-limit cost) tries again."""
        deployed_at = _timestamp(str(status["created_at"]))
        run_id, build_url = _build(status)
        ref = ReleaseRef(str(deployment["ref"]), deployment.get("sha"), run_id, build_url)
        context = {"env": env, "service": service, "deployment": deployment["id"], "tag": ref.tag}
        if deployed_at < self._known_until(env, service):
            log.debug("deployment succeeded before the newest known deploy: history", **context)
            return None
        creator = (deployment.get("creator") or {}).get("login") or "unknown"
        try:
            event_id = self.announce(
                env, service, ref, deployed_at=deployed_at, source=SOURCE, actor=f"github:{creator}"
            )
        except InputError as exc:
            log.warning("deployment cannot be announced", problem=str(exc), **context)
            return None
        log.info("deploy detected from GitHub's deployments", run_id=run_id, deploy_event=event_id, **context)
        return Detected(env, service, ref, int(deployment["id"]), deployed_at, event_id)

    # ------------------------------------------------------------------ conditional requests

    def _get(self, url: str, parameters: dict[str, Any], what: str) -> Any:
        """GET with ``If-None-Match`` of the last answer's ``ETag``: on 304 that answer's body
        again (nothing changed, no rate limit spent). GitHub's failures as the watchdog's errors."""
        key = f"{url}?{urlencode(sorted(parameters.items()))}"
        cached = self._etags.get(key)
        headers = {"If-None-Match": cached.etag} if cached is not None else {}
        try:
            status, answer_headers, body = self._requester.requestJson(
                "GET", url, parameters=parameters, headers=headers
            )
            if status == 304 and cached is not None:
                return cached.body
            data = json.loads(body) if body else None
            if status >= 300:
                raise Requester.createException(
                    status, answer_headers, data if isinstance(data, dict) else {}
                )
        except Exception as exc:  # GitHub's answer, no answer (requests), a body that is not JSON
            raise github_error(exc, what, self.clock.now()) from exc
        etag = answer_headers.get("etag")
        if etag:
            self._etags[key] = _Cached(etag, data)
        return data
