"""The dashboard: what the watchdog sees and did, as server-rendered pages under ``/ui/``.

Read-only, for any role. No JavaScript and no build step: Jinja2 templates (autoescaped: release
tags, reasons and evidence come from outside) and charts drawn here as inline SVG. A person gets in
with a bearer token (a header, or the login form's session cookie, which holds the token), or
through a trusted sign-in proxy's identity header (``api.trusted_proxy``, believed only from its
addresses). A refusal is an audit entry and a login page with status 401, never JSON.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jinja2
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup, escape

from watchdog.api.auth import Tokens
from watchdog.api.hooks import audit
from watchdog.api.models import Marker, SeriesOut
from watchdog.errors import StoreError
from watchdog.phases import DecisionKind, WatchKind
from watchdog.store import DecisionEntry, Incident, Release, Store, Watch

if TYPE_CHECKING:
    from watchdog.api import ApiContext

__all__ = ["COOKIE", "add_dashboard_routes"]

log = structlog.get_logger("watchdog.api.dashboard")

#: The session cookie: it holds the token itself (HttpOnly, SameSite=Strict, scoped to /ui).
COOKIE = "watchdog_session"
#: Decision-log entries per page, by default and at most (as the API's ``/v1/decisions``).
PAGE, MAX_PAGE = 100, 500
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

SeriesOf = Callable[[Store, Watch], SeriesOut]


@dataclass(frozen=True)
class Viewer:
    """Who is looking: a token's holder (``api:<name>``) or a proxy's user (``proxy:<user>``)."""

    actor: str
    via: str  # header, cookie, proxy


# ---------------------------------------------------------------------------- formatting


def _when(at: float | None) -> str:
    if at is None:
        return "—"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z"


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    if value != 0 and abs(value) < 0.01:
        return f"{value:.2e}"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


# ---------------------------------------------------------------------------- charts

W, H = 640, 180
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 26
MARKER_COLOURS = {"deploy": "#1f6feb", "step": "#8a8f98"}
DECISION_COLOUR = "#cf222e"
#: Markers this far beyond the watch's first and last tick are still drawn (at least).
MIN_REACH_S = 5.0


@dataclass(frozen=True)
class Line:
    label: str
    colour: str
    points: Sequence[tuple[float, float | None]]
    dashed: bool = False


def _chart(
    title: str,
    lines: Sequence[Line],
    *,
    span: tuple[float, float],
    markers: Sequence[Marker] = (),
    threshold: float | None = None,
) -> Markup:
    """One small time chart as inline SVG: ``lines`` (a None value breaks a line), a horizontal
    threshold line, vertical markers (hover for their label). Every text is escaped."""
    t0, t1 = span
    t1 = t1 if t1 > t0 else t0 + 1
    values = [v for line in lines for _, v in line.points if v is not None and math.isfinite(v)]
    if threshold is not None:
        values.append(threshold)
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    lo = min(lo, 0.0)
    if hi - lo < 1e-12:
        hi = lo + (abs(lo) or 1.0)
    pad = (hi - lo) * 0.08
    lo, hi = (lo - pad if lo < 0 else lo), hi + pad
    x_range, y_range = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + (t - t0) / (t1 - t0) * x_range

    def y(v: float) -> float:
        return TOP + (hi - v) / (hi - lo) * y_range

    parts = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<rect x="{LEFT}" y="{TOP}" width="{x_range}" height="{y_range}" fill="#fff" stroke="#d0d7de"/>',
    ]
    for v in (lo, (lo + hi) / 2, hi):
        parts.append(
            f'<text x="{LEFT - 4}" y="{y(v) + 4:.1f}" text-anchor="end" class="tick">{_number(v)}</text>'
        )
    for frac in (0.0, 0.5, 1.0):
        t = t0 + frac * (t1 - t0)
        anchor = "start" if frac == 0 else "end" if frac == 1 else "middle"
        label = datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")
        parts.append(f'<text x="{x(t):.1f}" y="{H - 8}" text-anchor="{anchor}" class="tick">{label}</text>')
    for m in markers:
        if not t0 <= m.at <= t1:
            continue
        colour = MARKER_COLOURS.get(m.kind, DECISION_COLOUR)
        dash = ' stroke-dasharray="2 3"' if m.kind == "step" else ""
        parts.append(
            f'<line class="marker marker-{escape(m.kind)}" x1="{x(m.at):.1f}" x2="{x(m.at):.1f}" '
            f'y1="{TOP}" y2="{TOP + y_range}" stroke="{colour}" stroke-width="1.5"{dash}>'
            f"<title>{escape(_when(m.at))} {escape(m.kind)}: {escape(m.label)}</title></line>"
        )
    if threshold is not None and math.isfinite(threshold):
        ty = y(threshold)
        parts.append(
            f'<line class="threshold" x1="{LEFT}" x2="{LEFT + x_range}" y1="{ty:.1f}" y2="{ty:.1f}" '
            f'stroke="#cf222e" stroke-width="1.5" stroke-dasharray="6 4"><title>threshold '
            f"{_number(threshold)}</title></line>",
        )
        parts.append(
            f'<text x="{LEFT + x_range - 4}" y="{ty - 4:.1f}" text-anchor="end" class="tick" '
            f'fill="#cf222e">threshold {_number(threshold)}</text>'
        )
    for line in lines:
        for run in _runs(line.points):
            coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in run)
            dash = ' stroke-dasharray="4 3"' if line.dashed else ""
            if len(run) == 1:
                ((t, v),) = run
                parts.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="{line.colour}"/>')
            else:
                parts.append(
                    f'<polyline class="series" points="{coords}" fill="none" stroke="{line.colour}" '
                    f'stroke-width="2"{dash}><title>{escape(line.label)}</title></polyline>'
                )
    if not values:
        parts.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" class="tick">no figures</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _runs(points: Iterable[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """The stretches of a line between its gaps (a tick with no figure)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for t, v in points:
        if v is None or not math.isfinite(v):
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((t, v))
    return [r for r in runs if r]


# ---------------------------------------------------------------------------- pages' data


def _span(series: SeriesOut) -> tuple[float, float]:
    """The charts' time range: the watch's points and the markers near them. A rollback's last
    steps can come long after the deploy watch's last tick; drawn to scale, they would squeeze the
    watch itself into a sliver (the markers table lists them all)."""
    ticks = [p.at for s in series.signals for p in s.points]
    if not ticks:
        return series.watch.started_at, max(series.watch.ended_at or 0, series.watch.ends_at)
    first, last = min(ticks), max(ticks)
    reach = max(0.5 * (last - first), MIN_REACH_S)
    near = [m.at for m in series.markers if first - reach <= m.at <= last + reach]
    return min([first, *near]), max([last, *near])


def _signal_charts(series: SeriesOut) -> list[dict[str, Any]]:
    span = _span(series)
    out = []
    for s in series.signals:
        thresholds = [p.threshold for p in s.points if p.threshold is not None]
        last = s.points[-1] if s.points else None
        out.append(
            {
                "signal": s.signal,
                "state": last.state if last else "no_data",
                "figures": _chart(
                    f"{s.signal}: canary and baseline",
                    [
                        Line("canary", "#cf222e", [(p.at, p.canary) for p in s.points]),
                        Line("baseline", "#1f6feb", [(p.at, p.baseline) for p in s.points], dashed=True),
                    ],
                    span=span,
                    markers=series.markers,
                ),
                "statistic": _chart(
                    f"{s.signal}: test statistic against its threshold",
                    [Line("statistic", "#24292f", [(p.at, p.statistic) for p in s.points])],
                    span=span,
                    markers=series.markers,
                    threshold=thresholds[-1] if thresholds else None,
                ),
                "threshold": thresholds[-1] if thresholds else None,
                "last": last,
            }
        )
    return out


def _latest_states(store: Store, watch: Watch) -> list[dict[str, Any]]:
    """Each signal's newest state in the watch, with its newest verdict's summary."""
    summaries = {v.signal: v.summary for v in store.verdicts(watch.id)}
    newest: dict[str, str] = {}
    for p in store.points(watch.id):
        newest[p.signal] = p.state
    for signal in summaries:
        newest.setdefault(signal, "no_data")
    return [{"signal": s, "state": st, "summary": summaries.get(s, "")} for s, st in newest.items()]


def _incidents_of(store: Store, watch: Watch) -> list[int]:
    found = {watch.incident_id} if watch.incident_id else set()
    for e in store.decisions(watch_id=watch.id):
        if e.incident_id:
            found.add(e.incident_id)
    return sorted(i for i in found if i is not None)


# ---------------------------------------------------------------------------- routes


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("watchdog.api", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(when=_when, duration=_duration, number=_number, pretty=_pretty)
    return env


def _networks(sources: Sequence[Any]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(str(s)) for s in sources]


def add_dashboard_routes(api: FastAPI, ctx: ApiContext, tokens: Tokens, series_of: SeriesOf) -> None:
    """The pages under ``/ui/``, and ``/`` sending a browser there."""
    cfg, store = ctx.cfg, ctx.store
    proxy = cfg.api.trusted_proxy
    trusted = _networks(proxy.sources) if proxy else []
    templates = _templates()

    def page(name: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = templates.get_template(name).render(**values)
        return HTMLResponse(html, status, headers=_SECURITY_HEADERS)

    def _from_trusted(request: Request) -> bool:
        host = request.client.host if request.client else None
        try:
            address = ipaddress.ip_address(host or "")
        except ValueError:
            return False
        return any(address in net for net in trusted)

    def identify(request: Request) -> Viewer | str:
        """The viewer, or why not (for the audit trail and the login page)."""
        header = request.headers.get("authorization")
        if header:
            who = tokens.identify(header)
            return Viewer(who.actor, "header") if who else "a token that is not valid"
        cookie = request.cookies.get(COOKIE)
        if cookie:
            who = tokens.identify(f"Bearer {cookie}")
            return Viewer(who.actor, "cookie") if who else "a session whose token is not valid"
        if proxy is not None:
            user = request.headers.get(proxy.header, "").strip()
            if user:
                if not _from_trusted(request):
                    return f"{proxy.header} from an address that is not api.trusted_proxy.sources"
                if len(user) > 128 or not user.isprintable():
                    return f"{proxy.header} does not hold a user name"
                return Viewer(f"proxy:{user}", "proxy")
        return "no credentials"

    def refused(request: Request, why: str) -> HTMLResponse:
        audit(request, 401, why)
        response = page(
            "login.html",
            401,
            viewer=None,
            error=None if why == "no credentials" else why,
            next=_here(request),
        )
        if request.cookies.get(COOKIE):
            response.delete_cookie(COOKIE, path="/ui")
        return response

    def not_found(viewer: Viewer, what: str) -> HTMLResponse:
        return page("error.html", 404, viewer=viewer, title="Not found", message=what)

    def viewing(request: Request) -> Viewer | HTMLResponse:
        who = identify(request)
        if isinstance(who, str):
            return refused(request, who)
        log.debug("dashboard page", path=request.url.path, actor=who.actor, via=who.via)
        return who

    @api.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/ui/", 307)

    @api.get("/ui", include_in_schema=False)
    def ui_root() -> Response:
        return RedirectResponse("/ui/", 307)

    @api.get("/ui/login", include_in_schema=False)
    def login_form(request: Request, next: str = "/ui/") -> Response:
        return page("login.html", viewer=None, error=None, next=_safe_next(next))

    @api.post("/ui/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        if not _same_origin(request):
            audit(request, 403, "a login posted from another origin")
            return page("login.html", 403, viewer=None, error="a login from another site", next="/ui/")
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        target = _safe_next((form.get("next") or ["/ui/"])[0])
        who = tokens.identify(f"Bearer {token}") if token else None
        if who is None:
            why = "no token" if not token else "a token that is not valid"
            audit(request, 401, f"dashboard login with {why}")
            return page("login.html", 401, viewer=None, error=f"Not signed in: {why}.", next=target)
        log.info("dashboard login", actor=who.actor)
        response = RedirectResponse(target, 303, headers=_SECURITY_HEADERS)
        response.set_cookie(
            COOKIE,
            token,
            path="/ui",
            httponly=True,
            samesite="strict",
            # only ever stricter: a client claiming https gets a cookie sent over https alone
            secure=request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https",
        )
        return response

    @api.post("/ui/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        if not _same_origin(request):
            audit(request, 403, "a logout posted from another origin")
            return page("error.html", 403, viewer=None, title="Refused", message="a logout from another site")
        response = RedirectResponse("/ui/login", 303, headers=_SECURITY_HEADERS)
        response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
        return response

    @api.get("/ui/", include_in_schema=False)
    def environments(request: Request) -> Response:
        who = viewing(request)
        if isinstance(who, HTMLResponse):
            return who
        now = ctx.clock.now()
        open_incidents = {(i.env, i.service): i for i in store.open_incidents()}
        envs = []
        for env, policy in cfg.environments.items():
            running = {w.service: w for w in store.running_watches(env)}
            services = []
            for svc in cfg.services:
                watch = running.get(svc.name) or store.last_deploy_watch(env, svc.name)
                services.append(
                    {
                        "name": svc.name,
                        "pinned": store.current_pin(env, svc.name),
                        "watch": watch,
                        "release": None if watch is None else store.release(watch.release_id),
                        "signals": [] if watch is None else _latest_states(store, watch),
                        "incident": open_incidents.get((env, svc.name)),
                    }
                )
            envs.append(
                {
                    "name": env,
                    "policy": policy,
                    "services": services,
                    "pauses": store.list_pauses(env, in_force_at=now),
                }
            )
        recent = store.page(Incident, limit=10)
        return page(
            "environments.html",
            viewer=who,
            envs=envs,
            recent=[(i, *_releases(store, i)) for i in recent],
            now=now,
        )

    @api.get("/ui/watches/{watch_id}", include_in_schema=False)
    def watch_page(request: Request, watch_id: int) -> Response:
        who = viewing(request)
        if isinstance(who, HTMLResponse):
            return who
        try:
            watch = store.watch(watch_id)
        except StoreError:
            return not_found(who, f"There is no watch {watch_id}.")
        series = series_of(store, watch)
        return page(
            "watch.html",
            viewer=who,
            watch=watch,
            release=store.release(watch.release_id),
            previous=None if watch.previous_release_id is None else store.release(watch.previous_release_id),
            charts=_signal_charts(series),
            markers=series.markers,
            verdicts=store.verdicts(watch.id),
            incidents=_incidents_of(store, watch),
        )

    @api.get("/ui/incidents/{incident_id}", include_in_schema=False)
    def incident_page(request: Request, incident_id: int) -> Response:
        who = viewing(request)
        if isinstance(who, HTMLResponse):
            return who
        try:
            incident = store.incident(incident_id)
        except StoreError:
            return not_found(who, f"There is no incident {incident_id}.")
        from_release, to_release = _releases(store, incident)
        entries = store.decisions(incident_id=incident.id)
        watches = {e.watch_id for e in entries if e.watch_id is not None}
        after = store.incident_watch(incident.id, WatchKind.POST_ROLLBACK.value)
        if after is not None:
            watches.add(after.id)
        return page(
            "incident.html",
            viewer=who,
            incident=incident,
            from_release=from_release,
            to_release=to_release,
            steps=store.steps(incident.id),
            entries=entries,
            watches=sorted(watches),
        )

    @api.get("/ui/decisions", include_in_schema=False)
    def decisions_page(request: Request) -> Response:
        who = viewing(request)
        if isinstance(who, HTMLResponse):
            return who
        q = request.query_params
        filters = {k: (q.get(k) or "").strip() or None for k in ("env", "service", "kind", "incident")}
        problem = None
        kind = None
        try:
            kind = DecisionKind(filters["kind"]) if filters["kind"] else None
        except ValueError:
            problem = f"query.kind: {filters['kind']!r} is not a decision kind"
        numbers: dict[str, int] = {}
        for name in ("incident", "before", "limit"):
            raw = (q.get(name) or "").strip()
            if raw and not (raw.isdigit() and int(raw) >= 1):
                problem = f"query.{name}: {raw!r} is not a positive whole number"
            elif raw:
                numbers[name] = int(raw)
        incident, before = numbers.get("incident"), numbers.get("before")
        limit = min(numbers.get("limit", PAGE), MAX_PAGE)
        if problem is not None:
            return page("error.html", 422, viewer=who, title="Not a valid filter", message=problem)
        rows = store.page(
            DecisionEntry,
            limit=limit,
            before=before,
            env=filters["env"],
            service=filters["service"],
            kind=kind,
            incident_id=incident,
        )
        kept: dict[str, str | int] = {k: v for k, v in filters.items() if v}
        if "limit" in numbers:
            kept["limit"] = limit
        more = rows[-1].id if len(rows) == limit else None
        return page(
            "decisions.html",
            viewer=who,
            rows=rows,
            filters=filters,
            kinds=[k.value for k in DecisionKind],
            envs=list(cfg.environments),
            services=[s.name for s in cfg.services],
            next_url=None if more is None else "/ui/decisions?" + urlencode({**kept, "before": more}),
            first_url="/ui/decisions?" + urlencode(kept) if before is not None else None,
        )


def _releases(store: Store, incident: Incident) -> tuple[Release, Release | None]:
    to = None if incident.to_release_id is None else store.release(incident.to_release_id)
    return store.release(incident.from_release_id), to


def _here(request: Request) -> str:
    path = request.url.path
    return path + (f"?{request.url.query}" if request.url.query else "")


def _safe_next(target: str) -> str:
    """Only a page of the dashboard itself (no open redirect to another site)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/ui/") or "\\" in target:
        return "/ui/"
    return target


def _same_origin(request: Request) -> bool:
    """A form posted from this site: a browser sends Origin (or at least Referer) with a POST."""
    given = request.headers.get("origin") or request.headers.get("referer")
    if not given:
        return True  # not a browser (curl): no ambient credential to abuse
    return urlsplit(given).netloc == request.headers.get("host", "")
