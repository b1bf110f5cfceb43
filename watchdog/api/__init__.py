"""The daemon's HTTP API: probes, metrics, what the watchdog sees and did, and the human levers.

FastAPI on uvicorn, in the daemon process (ADR 0012). Reads come from the store, so a standby
answers them as well as the leader; writes go through the engine's own methods, so an API call
and a CLI call are the same transition with the same checks. Every answer is a pydantic model:
the OpenAPI document (``/openapi.json``, committed as ``docs/openapi.json``) says exactly what.
"""

import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

import httpx
import structlog
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from watchdog import __version__
from watchdog.api.auth import Principal, Tokens
from watchdog.api.dashboard import add_dashboard_routes
from watchdog.api.evidence_routes import add_evidence_routes
from watchdog.api.hooks import IncidentWriter, add_hook_routes, audit, audit_log
from watchdog.api.models import (
    ApiError,
    DecisionOut,
    DeployIn,
    DeployOut,
    EnvironmentOut,
    ExtendIn,
    Health,
    IncidentDetail,
    IncidentOut,
    LiftIn,
    Marker,
    OverrideIn,
    Page,
    PauseIn,
    PauseOut,
    PinOut,
    PointOut,
    QuarantineOut,
    Ready,
    ReleaseOut,
    ResumeIn,
    RollbackIn,
    RollbackOut,
    SeriesOut,
    ServiceState,
    SignalSeries,
    StepOut,
    VerdictOut,
    WatchDetail,
    WatchOut,
    WatchOverrideIn,
)
from watchdog.clock import Clock
from watchdog.config import ApiRole, WatchdogConfig
from watchdog.errors import (
    ApiUnavailable,
    InputError,
    RollbackInProgress,
    RollbackRefused,
    StoreError,
    StoreUnavailable,
)
from watchdog.manifest import Migration
from watchdog.metrics import SelfMetrics
from watchdog.observability import redact
from watchdog.overrides import OverrideRefused, Overrides
from watchdog.phases import DecisionKind, IncidentPhase, WatchPhase
from watchdog.store import DecisionEntry, Incident, Pause, Quarantine, Release, ReleaseRef, Store, Watch

log = structlog.get_logger("watchdog.api")

#: The most items one page holds.
MAX_PAGE = 500


class Writer(IncidentWriter, Protocol):
    """The engine's methods the API calls (``watchdog.engine.Engine`` has them)."""

    def announce(
        self,
        env: str,
        service: str,
        ref: ReleaseRef,
        *,
        deployed_at: float | None = None,
        source: str = ...,
        actor: str = ...,
    ) -> int: ...

    def request_rollback(
        self,
        env: str,
        service: str,
        *,
        reason: str,
        actor: str,
        to_tag: str | None = None,
        trigger: str = ...,
        reference: str | None = None,
    ) -> int: ...


@dataclass
class ApiContext:
    """What the API serves from. ``role`` says leader or standby (and who leads);
    ``liveness`` what is wrong with the process, or None."""

    cfg: WatchdogConfig
    store: Store
    clock: Clock
    writer: Writer
    metrics: SelfMetrics = field(default_factory=SelfMetrics)
    overrides: Overrides | None = None
    role: Callable[[], tuple[str, str | None]] = lambda: ("leader", None)
    liveness: Callable[[], str | None] = lambda: None
    #: For calls the API makes itself (Slack's response_url); None: it makes none.
    http: httpx.Client | None = None


# ---------------------------------------------------------------------------- the body limit


class BodyLimit:
    """Refuse a request body above ``limit`` bytes with 413 before any route sees it (and before
    it is authenticated: nothing is parsed, nothing changes), whether it declares its length or not."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                await self._refuse(scope, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        audit_log.warning(
            "request refused",
            method=scope.get("method"),
            path=scope.get("path"),
            status=413,
            reason=f"a body larger than {self.limit} bytes",
            client=(scope.get("client") or (None,))[0],
        )
        error = ApiError(error=f"the request body is larger than {self.limit} bytes", field="body")
        response = JSONResponse(error.model_dump(), status_code=413)
        await response({"type": "http"}, _nothing, send)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


# ---------------------------------------------------------------------------- the app


def _field(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc)


def create_api(ctx: ApiContext) -> FastAPI:
    cfg, store = ctx.cfg, ctx.store
    tokens = Tokens(cfg.api.tokens)
    bearer = HTTPBearer(
        auto_error=False, description="An API token from api.tokens; its role decides what it may do."
    )
    api = FastAPI(
        title="rollback-watchdog",
        version=__version__,
        summary="Watches every deploy and rolls a bad one back; humans can see into it and steer it.",
        responses={401: {"model": ApiError}, 403: {"model": ApiError}, 422: {"model": ApiError}},
    )

    def principal(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        raw = f"{credentials.scheme} {credentials.credentials}" if credentials else None
        who = tokens.identify(raw)
        if who is None:
            audit(request, 401, "no bearer token" if raw is None else "a token that is not valid")
            raise HTTPException(
                401,
                "a valid bearer token is needed (Authorization: Bearer …)"
                if raw is None
                else "the token is not valid",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return who

    def role(*allowed: ApiRole) -> Callable[[Request, Principal], Principal]:
        def check(request: Request, who: Annotated[Principal, Depends(principal)]) -> Principal:
            if who.role not in allowed:
                names = " or ".join(r.value for r in allowed)
                audit(request, 403, f"{who.name} ({who.role.value}) needs {names}", token=who.name)
                raise HTTPException(403, f"{who.name} is a {who.role.value}; this needs the role {names}")
            return who

        return check

    Reader = Annotated[Principal, Depends(principal)]
    Deployer = Annotated[Principal, Depends(role(ApiRole.DEPLOYER))]
    Operator = Annotated[Principal, Depends(role(ApiRole.OPERATOR))]
    Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page.")]
    Before = Annotated[int | None, Query(ge=1, description="The previous page's `next`.")]

    @api.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            ApiError(error=str(exc.detail)).model_dump(), exc.status_code, headers=exc.headers
        )

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid"}
        where = _field(first.get("loc", ("body",)))
        body = ApiError(error=f"{where}: {first.get('msg', 'invalid')}", field=where).model_dump()
        return JSONResponse(body, 422)

    @api.exception_handler(InputError)
    async def _refused(request: Request, exc: InputError) -> JSONResponse:
        status = 409 if isinstance(exc, RollbackInProgress | RollbackRefused | OverrideRefused) else 422
        where = None if exc.argument is None else f"body.{exc.argument}"
        if exc.argument == "incident":
            status, where = 404, "path.incident_id"
        return JSONResponse(ApiError(error=redact(str(exc)), field=where).model_dump(), status)

    @api.exception_handler(StoreUnavailable)
    async def _unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse(ApiError(error=redact(str(exc))).model_dump(), 503)

    @api.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse(ApiError(error=redact(str(exc))).model_dump(), 409)

    @api.middleware("http")
    async def _count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        ctx.metrics.api_requests.labels(path, str(response.status_code)).inc()
        return response

    # -------------------------------------------------------------------- probes and metrics

    @api.get("/healthz", response_model=Health, tags=["probes"], responses={503: {"model": Health}})
    def healthz() -> Any:
        """The process and its scheduler are alive (a liveness probe: no store access)."""
        problem = ctx.liveness()
        if problem is not None:
            return JSONResponse(Health(status=problem).model_dump(), 503)
        return Health(status="ok")

    @api.get("/readyz", response_model=Ready, tags=["probes"], responses={503: {"model": Ready}})
    def readyz() -> Any:
        """The store answers and the configuration is loaded; says whether this replica leads."""
        problems = []
        try:
            store.ping()
        except StoreUnavailable as exc:
            problems.append(redact(str(exc)))
        current, leader = ctx.role()
        ready = Ready(ready=not problems, role=current, leader=leader, problems=problems)
        return ready if not problems else JSONResponse(ready.model_dump(), 503)

    @api.get("/metrics", tags=["probes"], response_class=Response)
    def metrics() -> Response:
        """The watchdog's own metrics, in Prometheus's text format."""
        return Response(ctx.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # -------------------------------------------------------------------- reads

    def _release(release_id: int | None) -> ReleaseOut | None:
        return None if release_id is None else ReleaseOut.model_validate(store.release(release_id))

    def _watch_detail(watch: Watch) -> WatchDetail:
        newest: dict[str, VerdictOut] = {}
        for v in store.verdicts(watch.id):
            newest[v.signal] = VerdictOut.model_validate(v)
        release = _release(watch.release_id)
        assert release is not None
        return WatchDetail(
            **WatchOut.model_validate(watch).model_dump(), release=release, signals=list(newest.values())
        )

    @api.get("/v1/environments", response_model=list[EnvironmentOut], tags=["read"])
    def environments(who: Reader) -> list[EnvironmentOut]:
        """Each environment, and per service: the pinned stable release, the watch running now with
        each signal's newest verdict (state, statistic, threshold, evidence), the open rollback."""
        open_incidents = {(i.env, i.service): i for i in store.open_incidents()}
        out = []
        for env, policy in cfg.environments.items():
            running = {w.service: w for w in store.running_watches(env)}
            services = []
            for svc in cfg.services:
                pinned = store.current_pin(env, svc.name)
                watch = running.get(svc.name)
                incident = open_incidents.get((env, svc.name))
                services.append(
                    ServiceState(
                        service=svc.name,
                        pinned=None if pinned is None else ReleaseOut.model_validate(pinned),
                        watch=None if watch is None else _watch_detail(watch),
                        open_incident=None if incident is None else IncidentOut.model_validate(incident),
                    )
                )
            out.append(
                EnvironmentOut(
                    env=env,
                    approval=policy.approval.value,
                    auto_rollback=policy.auto_rollback,
                    services=services,
                )
            )
        return out

    def _page(rows: list[Any], limit: int, model: type[Any]) -> dict[str, Any]:
        items = [model.model_validate(r) for r in rows]
        return {"items": items, "next": rows[-1].id if len(rows) == limit else None}

    @api.get("/v1/watches", response_model=Page[WatchOut], tags=["read"])
    def watches(
        who: Reader,
        env: str | None = None,
        service: str | None = None,
        phase: WatchPhase | None = None,
        since: float | None = None,
        limit: Limit = 50,
        before: Before = None,
    ) -> dict[str, Any]:
        rows = store.page(
            Watch, limit=limit, before=before, since=since, env=env, service=service, phase=phase
        )
        return _page(rows, limit, WatchOut)

    @api.get(
        "/v1/watches/{watch_id}",
        response_model=WatchDetail,
        tags=["read"],
        responses={404: {"model": ApiError}},
    )
    def watch(who: Reader, watch_id: int) -> WatchDetail:
        try:
            return _watch_detail(store.watch(watch_id))
        except StoreError as exc:
            raise HTTPException(404, f"no watch {watch_id}") from exc

    @api.get(
        "/v1/watches/{watch_id}/series",
        response_model=SeriesOut,
        tags=["read"],
        responses={404: {"model": ApiError}},
    )
    def watch_series(who: Reader, watch_id: int) -> SeriesOut:
        """Each signal's path through the watch (state, statistic against its threshold, canary
        and baseline) and the markers along it: the deploy, the decisions, the rollback's steps."""
        try:
            return watch_series_of(store, store.watch(watch_id))
        except StoreError as exc:
            raise HTTPException(404, f"no watch {watch_id}") from exc

    @api.get("/v1/incidents", response_model=Page[IncidentOut], tags=["read"])
    def incidents(
        who: Reader,
        env: str | None = None,
        service: str | None = None,
        phase: IncidentPhase | None = None,
        since: float | None = None,
        limit: Limit = 50,
        before: Before = None,
    ) -> dict[str, Any]:
        rows = store.page(
            Incident, limit=limit, before=before, since=since, env=env, service=service, phase=phase
        )
        return _page(rows, limit, IncidentOut)

    @api.get(
        "/v1/incidents/{incident_id}",
        response_model=IncidentDetail,
        tags=["read"],
        responses={404: {"model": ApiError}},
    )
    def incident(who: Reader, incident_id: int) -> IncidentDetail:
        try:
            row = store.incident(incident_id)
        except StoreError as exc:
            raise HTTPException(404, f"no incident {incident_id}") from exc
        from_release = _release(row.from_release_id)
        assert from_release is not None
        return IncidentDetail(
            **IncidentOut.model_validate(row).model_dump(),
            from_release=from_release,
            to_release=_release(row.to_release_id),
            steps=[StepOut.model_validate(s) for s in store.steps(row.id)],
        )

    @api.get("/v1/decisions", response_model=Page[DecisionOut], tags=["read"])
    def decisions(
        who: Reader,
        env: str | None = None,
        service: str | None = None,
        kind: DecisionKind | None = None,
        incident: int | None = None,
        since: Annotated[float | None, Query(description="Unix seconds: entries at or after it.")] = None,
        limit: Limit = 100,
        before: Before = None,
    ) -> dict[str, Any]:
        """The decision log, newest first, filtered."""
        rows = store.page(
            DecisionEntry,
            limit=limit,
            before=before,
            since=since,
            env=env,
            service=service,
            kind=kind,
            incident_id=incident,
        )
        return _page(rows, limit, DecisionOut)

    @api.get("/v1/releases", response_model=Page[ReleaseOut], tags=["read"])
    def releases(
        who: Reader,
        env: str | None = None,
        service: str | None = None,
        limit: Limit = 50,
        before: Before = None,
    ) -> dict[str, Any]:
        rows = store.page(Release, limit=limit, before=before, env=env, service=service)
        return _page(rows, limit, ReleaseOut)

    @api.get("/v1/pins", response_model=list[PinOut], tags=["read"])
    def pins(
        who: Reader, env: str | None = None, service: str | None = None, limit: Limit = 50
    ) -> list[PinOut]:
        """The pin history, newest first: the first per environment and service is the current pin."""
        return [
            PinOut(
                env=p.env,
                service=p.service,
                pinned_at=p.pinned_at,
                actor=p.actor,
                reason=p.reason,
                release=ReleaseOut.model_validate(r),
            )
            for p, r in store.pins(env, service, limit)
        ]

    # -------------------------------------------------------------------- writes

    @api.post(
        "/v1/deploys",
        response_model=DeployOut,
        status_code=202,
        tags=["write"],
        responses={413: {"model": ApiError}},
    )
    def deploy(who: Deployer, body: DeployIn) -> DeployOut:
        """Announce a deploy (what the deploy workflow sends): its watch starts at the leader's next tick."""
        migrations = (
            None if body.migrations is None else tuple(Migration(m.id, m.reversible) for m in body.migrations)
        )
        ref = ReleaseRef(body.tag, body.sha, body.run_id, body.build_url, migrations)
        event = ctx.writer.announce(
            body.env, body.service, ref, deployed_at=body.deployed_at, source="api", actor=who.actor
        )
        return DeployOut(deploy_event=event)

    @api.post(
        "/v1/rollbacks",
        response_model=RollbackOut,
        status_code=202,
        tags=["write"],
        responses={409: {"model": ApiError}, 413: {"model": ApiError}},
    )
    def rollback(who: Operator, body: RollbackIn) -> RollbackOut:
        """Force a rollback now: the same pipeline as an automatic one, logged with the token's holder."""
        incident = ctx.writer.request_rollback(
            body.env,
            body.service,
            reason=body.reason,
            actor=who.actor,
            to_tag=body.to_tag,
            trigger=body.trigger,
            reference=body.reference,
        )
        return RollbackOut(incident=incident)

    # -------------------------------------------------------------------- overrides (operator)

    overrides = ctx.overrides

    def _needs_overrides() -> Overrides:
        if overrides is None:
            raise HTTPException(503, "overrides are not served by this process")
        return overrides

    incident_responses: dict[int | str, dict[str, Any]] = {404: {"model": ApiError}, 409: {"model": ApiError}}

    @api.post(
        "/v1/incidents/{incident_id}/veto",
        response_model=IncidentOut,
        tags=["overrides"],
        responses=incident_responses,
    )
    def veto(who: Operator, incident_id: int, body: OverrideIn) -> Incident:
        """Cancel an automatic rollback inside its veto window, or a proposed one: nothing is
        changed, the release is marked vetoed and watched on; the page and the ticket say so."""
        return _needs_overrides().veto(incident_id, actor=who.actor, reason=body.reason)

    @api.post(
        "/v1/incidents/{incident_id}/approve",
        response_model=IncidentOut,
        tags=["overrides"],
        responses=incident_responses,
    )
    def approve(who: Operator, incident_id: int, body: OverrideIn) -> Incident:
        """Start a proposed rollback (an environment with ``rollback_policy: propose``)."""
        return _needs_overrides().approve(incident_id, actor=who.actor, reason=body.reason)

    @api.post(
        "/v1/incidents/{incident_id}/acknowledge",
        response_model=IncidentOut,
        tags=["overrides"],
        responses=incident_responses,
    )
    def acknowledge(who: Operator, incident_id: int, body: OverrideIn) -> Incident:
        """A human has the escalation: its page is acknowledged."""
        return _needs_overrides().acknowledge(incident_id, actor=who.actor, reason=body.reason)

    @api.post(
        "/v1/pauses",
        response_model=PauseOut,
        status_code=201,
        tags=["overrides"],
        responses={409: {"model": ApiError}},
    )
    def pause(who: Operator, body: PauseIn) -> Pause:
        """Pause automatic rollbacks for an environment or a service, for ``for_s``: a failed release
        is then logged as "would roll back" and oncall is paged."""
        return _needs_overrides().pause(
            body.env, body.service, for_s=body.for_s, actor=who.actor, reason=body.reason
        )

    @api.post(
        "/v1/pauses/resume",
        response_model=list[PauseOut],
        tags=["overrides"],
        responses={409: {"model": ApiError}},
    )
    def resume(who: Operator, body: ResumeIn) -> list[Pause]:
        """End the pauses in force for the environment (or the service)."""
        return _needs_overrides().resume(body.env, body.service, actor=who.actor, reason=body.reason)

    @api.get("/v1/pauses", response_model=list[PauseOut], tags=["read"])
    def pauses(who: Reader, env: str | None = None, in_force: bool = False) -> list[Pause]:
        """Pauses, newest first (``in_force``: only those holding automation now)."""
        return store.list_pauses(env, in_force_at=ctx.clock.now() if in_force else None)

    @api.post(
        "/v1/watches/promote",
        response_model=WatchOut,
        tags=["overrides"],
        responses={409: {"model": ApiError}},
    )
    def promote(who: Operator, body: WatchOverrideIn) -> Watch:
        """End the running watch now and pin its release as stable."""
        return _needs_overrides().promote(body.env, body.service, actor=who.actor, reason=body.reason)

    @api.post(
        "/v1/watches/extend",
        response_model=WatchOut,
        tags=["overrides"],
        responses={409: {"model": ApiError}},
    )
    def extend(who: Operator, body: ExtendIn) -> Watch:
        """Watch the running release ``by_s`` longer."""
        return _needs_overrides().extend(
            body.env, body.service, by_s=body.by_s, actor=who.actor, reason=body.reason
        )

    @api.get("/v1/quarantines", response_model=list[QuarantineOut], tags=["read"])
    def quarantines(who: Reader, env: str | None = None, in_force: bool = False) -> list[Quarantine]:
        """Releases quarantined after a rollback, newest first (``in_force``: not lifted)."""
        return store.quarantines(env, in_force=in_force)

    @api.post(
        "/v1/quarantines/lift",
        response_model=QuarantineOut,
        tags=["overrides"],
        responses={409: {"model": ApiError}},
    )
    def lift(who: Operator, body: LiftIn) -> Quarantine:
        """Lift a release's quarantine (with a reason, logged): a later deploy of it is watched
        like any other instead of rolled back at once."""
        return _needs_overrides().lift_quarantine(
            body.env, body.service, body.tag, actor=who.actor, reason=body.reason
        )

    add_hook_routes(api, cfg, store, ctx.clock, _needs_overrides, ctx.writer, ctx.http)
    add_evidence_routes(api, store, principal)
    add_dashboard_routes(api, ctx, tokens, watch_series_of)
    api.add_middleware(BodyLimit, limit=cfg.api.max_body_bytes)
    return api


def watch_series_of(store: Store, watch: Watch) -> SeriesOut:
    """A watch's signal paths and markers (the dashboard and the evidence picture draw them)."""
    by_signal: dict[str, list[PointOut]] = {}
    for p in store.points(watch.id):
        by_signal.setdefault(p.signal, []).append(PointOut.model_validate(p))
    markers = [Marker(at=watch.started_at, kind="deploy", label="deploy")]
    incidents = {watch.incident_id} if watch.incident_id else set()
    for e in store.decisions(watch_id=watch.id):
        if e.kind not in (DecisionKind.NOTICE, DecisionKind.WATCH_STARTED):
            markers.append(Marker(at=e.at, kind=e.kind.value, label=e.reason[:120]))
            if e.incident_id:
                incidents.add(e.incident_id)
    for incident_id in sorted(i for i in incidents if i is not None):
        for step in store.steps(incident_id):
            if step.started_at is not None and step.name != "post_rollback_watch":
                markers.append(
                    Marker(at=step.started_at, kind="step", label=f"{step.name} ({step.phase.value})")
                )
    return SeriesOut(
        watch=WatchOut.model_validate(watch),
        signals=[SignalSeries(signal=name, points=points) for name, points in by_signal.items()],
        markers=sorted(markers, key=lambda m: m.at),
    )


# ---------------------------------------------------------------------------- the server


class ApiServer:
    """uvicorn serving the API on a thread of the daemon; ``stop`` ends it (in-flight requests finish)."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        api = ctx.cfg.api
        config = uvicorn.Config(
            create_api(ctx),
            host=api.host,
            port=api.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            # the peer is the peer: X-Forwarded-For from the loopback would otherwise replace it,
            # and api.trusted_proxy could no longer tell its proxy from the people behind it
            proxy_headers=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="api", daemon=True)

    def start(self, timeout_s: float = 10.0) -> None:
        self._thread.start()
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive():
                raise ApiUnavailable(
                    f"api.listen {self.ctx.cfg.api.listen}: cannot listen there (the address is in use, "
                    "or not this host's)"
                )
            self._thread.join(0.02)
            waited += 0.02
            if waited > timeout_s:
                raise OSError(
                    f"the API did not start listening on {self.ctx.cfg.api.listen} in {timeout_s:g}s"
                )
        log.info("api listening", url=self.url)

    @property
    def port(self) -> int:
        sockets = self._server.servers[0].sockets
        return int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.ctx.cfg.api.host}:{self.port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
