"""Requests that come from vendors, not from people with tokens: Slack's button presses and
PagerDuty's incident webhooks. Each is signed by the vendor with a shared secret; the signature is
checked on the raw body before anything else is read, and a request seen before is refused.

- ``POST /v1/slack/interactions``: Slack's ``v0`` signature (``X-Slack-Signature`` over
  ``v0:{timestamp}:{body}``), a timestamp within 5 minutes, each signature taken once. The Slack user
  must be on ``notifications.slack_interactivity.users`` for the incident's environment; then the
  same override code as the CLI and the API runs, logged as ``slack:<actor>``. Refusals go back to
  the presser only (an ephemeral reply on Slack's ``response_url``, which must be Slack's own).
- ``POST /v1/hooks/pagerduty``: PagerDuty's v3 signature (``X-PagerDuty-Signature: v1=…``, one per
  active secret), an ``occurred_at`` within ``max_age_s``, each event id taken once. A P1/P2
  incident on a mapped service leads to ``Engine.incident_reported``.

Every refusal is an audit entry (``watchdog.api.audit``); nothing is changed by one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import parse_qs

import httpx
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from watchdog.api.models import ApiError
from watchdog.clock import Clock
from watchdog.config import PagerDutyWebhookConfig, SlackInteractivityConfig, WatchdogConfig
from watchdog.errors import InputError, WatchdogError
from watchdog.observability import redact, report_exception
from watchdog.overrides import Overrides
from watchdog.store import Store

__all__ = ["SLACK_ACTIONS", "add_hook_routes", "audit", "slack_signature"]

log = structlog.get_logger("watchdog.api")
#: The audit trail of refused requests: who tried what, from where, why it was refused.
audit_log = structlog.get_logger("watchdog.api.audit")

#: The overrides a Slack button may run.
SLACK_ACTIONS = ("veto", "approve", "promote", "acknowledge")


class IncidentWriter(Protocol):
    def incident_reported(
        self,
        env: str,
        service: str,
        *,
        source: str,
        title: str,
        url: str | None,
        occurred_at: float,
        reference: str,
        window_s: float,
    ) -> int | None: ...


def audit(request: Request, status: int, reason: str, **context: Any) -> None:
    """One entry of the audit trail for a refused request (never its body or credentials)."""
    client = request.client.host if request.client else None
    audit_log.warning(
        "request refused",
        method=request.method,
        path=request.url.path,
        status=status,
        reason=redact(reason),
        client=client,
        **context,
    )


def _refuse(request: Request, status: int, reason: str, **context: Any) -> JSONResponse:
    audit(request, status, reason, **context)
    return JSONResponse(ApiError(error=reason).model_dump(), status)


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256)
    return "v0=" + mac.hexdigest()


def _slack_check(cfg: SlackInteractivityConfig, request: Request, body: bytes, now: float) -> str | None:
    """Why the request is not Slack's, or None."""
    timestamp = request.headers.get("x-slack-request-timestamp", "")
    signature = request.headers.get("x-slack-signature", "")
    if not timestamp or not signature:
        return "the Slack signature headers are missing"
    if not timestamp.isdigit():
        return "X-Slack-Request-Timestamp is not a Unix time"
    if abs(now - int(timestamp)) > cfg.max_age_s:
        return f"the request is older than {cfg.max_age_s:.0f}s (or from the future): a replay?"
    expected = slack_signature(cfg.signing_secret.get_secret_value(), timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return "the Slack signature does not match"
    return None


def _pagerduty_check(cfg: PagerDutyWebhookConfig, request: Request, body: bytes) -> str | None:
    header = request.headers.get("x-pagerduty-signature", "")
    if not header:
        return "X-PagerDuty-Signature is missing"
    given = [part.strip() for part in header.split(",") if part.strip().startswith("v1=")]
    ok = False
    for secret in cfg.secrets:  # every secret and every signature: no early exit
        expected = "v1=" + hmac.new(secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
        for sig in given:
            ok |= hmac.compare_digest(expected.encode(), sig.encode())
    return None if ok else "the PagerDuty signature does not match"


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def add_hook_routes(
    api: FastAPI,
    cfg: WatchdogConfig,
    store: Store,
    clock: Clock,
    overrides: Callable[[], Overrides],
    writer: IncidentWriter,
    http: httpx.Client | None,
) -> None:
    @api.post(
        "/v1/slack/interactions",
        tags=["hooks"],
        responses={401: {"model": ApiError}, 404: {"model": ApiError}, 422: {"model": ApiError}},
    )
    async def slack_interactions(request: Request) -> Response:
        """Slack's interactivity requests (a button pressed on a watchdog message)."""
        interactivity = cfg.notifications.slack_interactivity
        if interactivity is None:
            return _refuse(request, 404, "Slack interactivity is not configured")
        body = await request.body()
        now = clock.now()
        why = _slack_check(interactivity, request, body, now)
        if why is None:
            digest = "slack:" + request.headers["x-slack-signature"]
            if not store.remember_request(digest, "slack", now, 2 * interactivity.max_age_s):
                why = "this signed request was taken before (a replay)"
        if why is not None:
            return _refuse(request, 401, why)
        try:
            form = parse_qs(body.decode(), strict_parsing=True)
            payload = json.loads(form["payload"][0])
            action = payload["actions"][0]
            user = str(payload["user"]["id"])
            value = json.loads(action.get("value") or "{}")
            name = str(action["action_id"])
        except (KeyError, IndexError, TypeError, ValueError, UnicodeDecodeError):
            return _refuse(request, 422, "not a Slack block_actions payload")
        if payload.get("type") != "block_actions" or name not in SLACK_ACTIONS:
            return _refuse(request, 422, f"not a watchdog button: {name!r}")
        response_url = payload.get("response_url")
        # the override writes the store and the reply calls Slack: off the event loop, so a slow
        # store or Slack holds up this request only
        answer = await run_in_threadpool(
            _slack_override, interactivity, store, overrides(), name, value, user
        )
        audit_args = {"slack_user": user, "action": name, "outcome": answer}
        log.info("slack button", **audit_args)
        if answer is not None:  # refused: only the presser hears why
            audit(request, 200, answer, slack_user=user, action=name)
            await run_in_threadpool(_reply, interactivity, http, response_url, answer)
        return Response(status_code=200)

    @api.post(
        "/v1/hooks/pagerduty",
        tags=["hooks"],
        responses={401: {"model": ApiError}, 404: {"model": ApiError}, 422: {"model": ApiError}},
    )
    async def pagerduty_webhook(request: Request) -> Response:
        """PagerDuty's v3 webhooks: a P1/P2 incident on a service within its window of a deploy."""
        hook = cfg.incidents.pagerduty_webhook
        if hook is None:
            return _refuse(request, 404, "the PagerDuty webhook is not configured")
        body = await request.body()
        why = _pagerduty_check(hook, request, body)
        if why is not None:
            return _refuse(request, 401, why)
        try:
            event = json.loads(body)["event"]
            event_id = str(event["id"])
            event_type = str(event["event_type"])
            data = event["data"]
        except (KeyError, TypeError, ValueError):
            return _refuse(request, 422, "not a PagerDuty v3 webhook event")
        now = clock.now()
        occurred = _epoch(event.get("occurred_at"))
        if occurred is None:
            return _refuse(request, 422, "event.occurred_at is not an ISO 8601 time")
        if abs(now - occurred) > hook.max_age_s:  # a future one would outlive its id's memory
            return _refuse(
                request, 401, f"the event is older than {hook.max_age_s:.0f}s (or from the future): a replay?"
            )
        digest = f"pagerduty:{event_id}"
        if not store.remember_request(digest, "pagerduty", now, 2 * hook.max_age_s):
            return _refuse(request, 401, f"event {event_id} was taken before (a replay)")
        try:
            return await run_in_threadpool(
                _pagerduty_event, hook, writer, event_id, event_type, data, occurred
            )
        except Exception as exc:  # not acted on: PagerDuty retries a failed delivery, and that is taken
            store.forget_request(digest)
            report_exception(log, "pagerduty event not acted on", exc, event_id=event_id)
            error = "the event could not be acted on now; a retry of it is taken"
            return JSONResponse(ApiError(error=error).model_dump(), 503)


def _slack_override(
    cfg: SlackInteractivityConfig, store: Store, overrides: Overrides, name: str, value: Any, user: str
) -> str | None:
    """Run the button's override as the allow-listed actor; why not, for the presser, or None."""
    if not isinstance(value, dict):
        return "this button carries no incident or watch"
    incident_id, watch_id = value.get("incident_id"), value.get("watch_id")
    try:
        if incident_id is not None:
            incident = store.incident(int(incident_id))
            env, service = incident.env, incident.service
        elif watch_id is not None:
            watch = store.watch(int(watch_id))
            env, service = watch.env, watch.service
        else:
            return "this button carries no incident or watch"
    except (WatchdogError, ValueError, TypeError):
        return "the incident or watch of this message is not known to the watchdog"
    allowed = [u for u in cfg.users if u.slack_user == user and env in u.environments]
    if not allowed:
        return f"you are not on the watchdog's Slack allow-list for {env}: nothing was done"
    actor = f"slack:{allowed[0].actor}"
    reason = f"pressed {name} in Slack (user {user})"
    try:
        if name == "promote":
            overrides.promote(env, service, actor=actor, reason=reason)
        elif incident_id is None:
            return f"{name} needs an incident"
        elif name == "veto":
            overrides.veto(int(incident_id), actor=actor, reason=reason)
        elif name == "approve":
            overrides.approve(int(incident_id), actor=actor, reason=reason)
        else:
            overrides.acknowledge(int(incident_id), actor=actor, reason=reason)
    except (InputError, WatchdogError) as exc:
        return f"{name} refused: {redact(str(exc))}"
    return None


def _under_prefix(url: str, prefix: str) -> bool:
    """``url`` starts with ``prefix`` and is on its origin: a prefix written without its trailing
    slash (``https://hooks.slack.com``) must not admit ``https://hooks.slack.com@evil.example/``
    or ``https://hooks.slack.com.evil.example/``."""
    try:
        given, allowed = httpx.URL(url), httpx.URL(prefix)
    except httpx.InvalidURL:
        return False
    same = (given.scheme, given.userinfo, given.host, given.port) == (
        allowed.scheme,
        allowed.userinfo,
        allowed.host,
        allowed.port,
    )
    return same and url.startswith(prefix)


def _reply(cfg: SlackInteractivityConfig, http: httpx.Client | None, url: Any, text: str) -> None:
    """An ephemeral reply to the presser, on Slack's own response_url only."""
    if http is None or not isinstance(url, str) or not _under_prefix(url, cfg.response_url_prefix):
        log.warning(
            "slack reply not sent: no client, or a response_url that is not Slack's", url=str(url)[:80]
        )
        return
    try:
        http.post(
            url, json={"response_type": "ephemeral", "replace_original": False, "text": text}, timeout=5
        )
    except httpx.HTTPError as exc:
        log.warning("slack reply failed", error=type(exc).__name__)


def _pagerduty_event(
    hook: PagerDutyWebhookConfig,
    writer: IncidentWriter,
    event_id: str,
    event_type: str,
    data: Any,
    occurred: float,
) -> Response:
    def not_taken(why: str) -> Response:
        log.info("pagerduty event not acted on", event_id=event_id, event_type=event_type, why=why)
        return JSONResponse({"taken": False, "why": why}, 202)

    if event_type not in ("incident.triggered", "incident.priority_updated") or not isinstance(data, dict):
        return not_taken(f"{event_type} is not acted on")
    priority = (data.get("priority") or {}).get("summary") if isinstance(data.get("priority"), dict) else None
    service_id = (data.get("service") or {}).get("id") if isinstance(data.get("service"), dict) else None
    ref = hook.services.get(str(service_id))
    if ref is None:
        return not_taken(f"PagerDuty service {service_id} is not mapped")
    if priority not in hook.priorities:
        return not_taken(f"priority {priority} is not one of {hook.priorities}")
    began = _epoch(data.get("created_at")) or occurred  # a priority raised later: the incident's start
    number = data.get("number")
    reference = f"#{number}" if number is not None else str(data.get("id", "?"))
    incident = writer.incident_reported(
        ref.env,
        ref.service,
        source="pagerduty",
        title=f"{priority}: {str(data.get('title', ''))[:300]}",
        url=data.get("html_url") if isinstance(data.get("html_url"), str) else None,
        occurred_at=began,
        reference=reference,
        window_s=hook.incident_window_s,
    )
    return JSONResponse({"taken": True, "rollback_incident": incident}, 202)
