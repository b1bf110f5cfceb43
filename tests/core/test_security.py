"""The defences of docs/security.md, each attacked on a real uvicorn on loopback, on a simulated
clock: every refused request is answered, changes nothing in the store and leaves an audit entry.

Forged, stale, replayed and stranger Slack presses are in tests/core/test_notify.py; the role
table and the body limit on ``/v1/deploys`` in tests/api/test_api.py. Here: the operator levers,
the body limit on every door, the PagerDuty webhook, the generic webhook's signature, and the
Slack ``response_url`` that must never be called outside its prefix.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import structlog

from actions.notify import Notice, NoticeEvent, NoticeSeverity, NoticeStatus
from actions.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookNotifier
from watchdog.api import ApiContext, ApiServer
from watchdog.app import App
from watchdog.clock import SimClock
from watchdog.config import WebhookNotifierConfig, parse_config
from watchdog.emulator.slack import SIGNING_SECRET, sign
from watchdog.emulator.webhook import WebhookReceiver
from watchdog.overrides import Overrides
from watchdog.phases import DecisionKind, DecisionResult, IncidentPhase
from watchdog.store import Incident, ReleaseRef

#: 2027-01-15T08:00:00Z
START = 1_800_000_000.0
TOKENS = {
    "VIEWER": "sec-viewer-0123456789abcdef",
    "DEPLOYER": "sec-deployer-0123456789abcdef",
    "OPERATOR": "sec-operator-0123456789abcdef",
}
PD_SECRET = "pd-webhook-secret-new-0123456789"
PD_OLD_SECRET = "pd-webhook-secret-old-9876543210"  # the one being rotated out: still accepted
HOOK_SECRET = "generic-webhook-secret-0123456789"
PD_SERVICE = "PSVC001"
LIMIT = 2048
CONFIG = """
version: 1
tick_s: 15
source:
  kind: scrape
  scrape: {targets: [{url: "http://127.0.0.1:9/metrics"}]}
github: {api_url: "http://127.0.0.1:9", repo: acme/stamps, token: "${GH_TOKEN}"}
store: {url: "${DB}"}
api:
  listen: "127.0.0.1:0"
  max_body_bytes: LIMIT
  tokens:
    - {name: grafana, token: "${VIEWER}", role: viewer}
    - {name: ci, token: "${DEPLOYER}", role: deployer}
    - {name: alice, token: "${OPERATOR}", role: operator}
environments:
  prod: {approval: none, watch_s: 600, rollback_policy: POLICY}
services:
  - name: stamps-api
    signals:
      - {name: healthcheck, kind: probe, probe: {metric: probe_success}, k: 2, n: 3}
incidents:
  pagerduty_webhook:
    secrets: ["${PD_SECRET}", "${PD_OLD_SECRET}"]
    services: {PSVC001: {service: stamps-api, env: prod}}
    incident_window_s: 3600
    max_age_s: 600
notifications:
  slack_interactivity:
    signing_secret: ${SLACK_SIGNING_SECRET}
    response_url_prefix: ${RESPONSES}
    users:
      - {slack_user: U0ALICE, actor: alice, environments: [prod]}
"""


def refusals(logs: Sequence[Mapping[str, Any]]) -> list[int]:
    """The statuses of the audit trail's entries (``watchdog.api.audit``: "request refused")."""
    return [entry["status"] for entry in logs if entry.get("event") == "request refused"]


@dataclass
class World:
    app: App
    server: ApiServer
    http: httpx.Client
    #: The one origin Slack replies may go to (no trailing slash, as test_notify.py configures it).
    responses: WebhookReceiver
    #: Any other loopback server: what a forged response_url would point at.
    elsewhere: WebhookReceiver
    answers: list[httpx.Response] = field(default_factory=list)

    @property
    def clock(self) -> SimClock:
        assert isinstance(self.app.clock, SimClock)
        return self.app.clock

    def call(self, method: str, path: str, role: str | None = None, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", None) or {})
        if role is not None:
            headers["Authorization"] = f"Bearer {TOKENS[role]}"
        answer = self.http.request(method, path, headers=headers, **kw)
        self.answers.append(answer)
        return answer

    def state(self) -> tuple[object, ...]:
        """Everything a request could change: the decision log, the incidents, the pauses, the watches."""
        s = self.app.store
        return (
            [(e.id, e.kind, e.result) for e in s.decisions()],
            [(i.id, i.phase) for i in s.page(Incident, limit=500)],
            [(p.id, p.ended_at) for p in s.list_pauses()],
            [(w.id, w.phase) for w in s.running_watches()],
            [e.id for e in s.pending_deploy_events()],
        )

    def deploy(self, tag: str = "v1.1.0") -> None:
        """A deploy of ``tag`` to prod, watched from now."""
        self.app.engine.start_watch("prod", "stamps-api", ReleaseRef(tag, "2" * 40), self.clock.now())


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Callable[..., World]]:
    made: list[World] = []

    def make(policy: str = "auto") -> World:
        clock = SimClock(START)
        responses = WebhookReceiver(secret=b"unused", clock=clock).start()
        elsewhere = WebhookReceiver(secret=b"unused", clock=clock).start()
        env = {
            "DB": f"sqlite:///{tmp_path / f'wd-{policy}.db'}",
            "GH_TOKEN": "ghp_securitytest0000000000000000000000",
            "PD_SECRET": PD_SECRET,
            "PD_OLD_SECRET": PD_OLD_SECRET,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "RESPONSES": responses.url.removesuffix("/hooks/watchdog"),
            **TOKENS,
        }
        text = CONFIG.replace("LIMIT", str(LIMIT)).replace("POLICY", policy)
        cfg = parse_config(text, "watchdog.yaml", env=env)
        app = App.build(cfg, clock)
        app.engine.pin("prod", "stamps-api", ReleaseRef("v1.0.0", "1" * 40), actor="alice", reason="seed")
        replies = httpx.Client(timeout=5)  # the API's own client: Slack's response_url
        ctx = ApiContext(cfg, app.store, clock, app.engine, overrides=Overrides(app.engine), http=replies)
        server = ApiServer(ctx)
        server.start()
        w = World(app, server, httpx.Client(base_url=server.url, timeout=10), responses, elsewhere)
        made.append(w)
        return w

    yield make
    for w in made:
        every = "".join(a.text for a in w.answers)
        for secret in (*TOKENS.values(), PD_SECRET, PD_OLD_SECRET, SIGNING_SECRET):
            assert secret not in every  # no answer ever carries a secret
        w.http.close()
        w.server.stop()
        assert w.server.ctx.http is not None
        w.server.ctx.http.close()
        w.app.close()
        w.responses.stop()
        w.elsewhere.stop()


# ----------------------------------------------------------------------------- tokens and roles

LEVERS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/incidents/{incident}/veto", {"reason": "looks fine to me"}),
    ("POST", "/v1/incidents/{incident}/approve", {"reason": "go"}),
    ("POST", "/v1/pauses", {"env": "prod", "for_s": 3600, "reason": "hold everything"}),
    ("POST", "/v1/pauses/resume", {"env": "prod", "reason": "resume"}),
    ("POST", "/v1/rollbacks", {"env": "prod", "service": "stamps-api", "reason": "because"}),
    ("POST", "/v1/watches/promote", {"env": "prod", "service": "stamps-api", "reason": "ship it"}),
]


def test_without_a_valid_token_or_with_a_lesser_role_no_lever_moves(world: Callable[..., World]) -> None:
    w = world("propose")
    w.deploy()
    w.clock.advance(60)
    incident = w.app.engine.request_rollback("prod", "stamps-api", reason="setup", actor="carol")
    before = w.state()
    tries: list[tuple[str | None, str, str, dict[str, Any]]] = []
    for method, path, body in LEVERS:
        route = path.format(incident=incident)
        tries += [(role, method, route, body) for role in (None, "WRONG", "VIEWER", "DEPLOYER")]
    with structlog.testing.capture_logs() as logs:
        answers = []
        for role, method, route, body in tries:
            if role == "WRONG":  # one character off the operator's: no partial credit
                wrong = {"Authorization": f"Bearer {TOKENS['OPERATOR'][:-1]}0"}
                answers.append(w.call(method, route, headers=wrong, json=body))
            else:
                answers.append(w.call(method, route, role, json=body))
    expected = [401 if role in (None, "WRONG") else 403 for role, *_ in tries]
    assert [a.status_code for a in answers] == expected
    assert all(a.headers["www-authenticate"] == "Bearer" for a in answers if a.status_code == 401)
    assert all("needs the role operator" in a.json()["error"] for a in answers if a.status_code == 403)
    assert refusals(logs) == expected
    denied = [e for e in logs if e.get("status") == 403]
    assert {e["token"] for e in denied} == {"grafana", "ci"}  # who tried is in the trail
    assert all(TOKENS["OPERATOR"][:-1] not in json.dumps(e) for e in logs)  # never the token itself
    assert w.state() == before


def test_the_deploy_workflows_token_announces_and_a_viewers_does_not(world: Callable[..., World]) -> None:
    w = world()
    body = {"env": "prod", "service": "stamps-api", "tag": "v1.1.0", "sha": "2" * 40}
    before = w.state()
    with structlog.testing.capture_logs() as logs:
        viewer = w.call("POST", "/v1/deploys", "VIEWER", json=body)
        nobody = w.call("POST", "/v1/deploys", json=body)
    assert (viewer.status_code, nobody.status_code) == (403, 401)
    assert refusals(logs) == [403, 401]
    assert w.state() == before
    ok = w.call("POST", "/v1/deploys", "DEPLOYER", json=body)
    assert ok.status_code == 202, ok.text
    (event,) = w.app.store.pending_deploy_events()
    assert (event.actor, event.tag) == ("api:ci", "v1.1.0")


# ----------------------------------------------------------------------------- body limits


def _chunks(data: bytes) -> Iterator[bytes]:
    """The body as a stream: httpx sends it chunked, without a Content-Length."""
    for i in range(0, len(data), 512):
        yield data[i : i + 512]


@pytest.mark.parametrize(
    ("path", "role"),
    [
        ("/v1/pauses", "OPERATOR"),
        ("/v1/rollbacks", None),  # refused before it is authenticated
        ("/v1/slack/interactions", None),
        ("/v1/hooks/pagerduty", None),
    ],
)
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_above_the_limit_is_refused_before_anything_reads_it(
    world: Callable[..., World], path: str, role: str | None, declared: bool
) -> None:
    w = world()
    w.deploy()
    big = json.dumps({"env": "prod", "service": "stamps-api", "reason": "x" * (LIMIT + 1)}).encode()
    headers = {"Content-Type": "application/json"}
    before = w.state()
    with structlog.testing.capture_logs() as logs:
        content: bytes | Iterator[bytes] = big if declared else _chunks(big)
        answer = w.call("POST", path, role, content=content, headers=headers)
    assert answer.status_code == 413, answer.text
    assert answer.json() == {"error": f"the request body is larger than {LIMIT} bytes", "field": "body"}
    assert ("content-length" in answer.request.headers) == declared
    assert refusals(logs) == [413]
    assert w.state() == before


# ----------------------------------------------------------------------------- PagerDuty webhooks


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def pagerduty_event(
    occurred_at: float,
    *,
    priority: str = "P1",
    service: str = PD_SERVICE,
    event_id: str = "01DEN2ADVB0D1H8H9DH1PHSV5G",
    event_type: str = "incident.triggered",
) -> bytes:
    """A v3 webhook body as PagerDuty sends it (developer.pagerduty.com, "Webhooks v3 overview")."""
    at = _iso(occurred_at)
    event: dict[str, Any] = {
        "event": {
            "id": event_id,
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": at,
            "agent": None,
            "client": None,
            "data": {
                "id": "PGR0VU2",
                "type": "incident",
                "self": "https://api.pagerduty.com/incidents/PGR0VU2",
                "html_url": "https://acme.pagerduty.com/incidents/PGR0VU2",
                "number": 42,
                "status": "triggered",
                "incident_key": "d3640fbd41094207a1c11e58e46b1662",
                "created_at": at,
                "title": "Checkout latency high",
                "service": {
                    "id": service,
                    "summary": "stamps-api prod",
                    "type": "service_reference",
                    "self": f"https://api.pagerduty.com/services/{service}",
                    "html_url": f"https://acme.pagerduty.com/services/{service}",
                },
                "assignees": [],
                "escalation_policy": {
                    "id": "PUS0KTE",
                    "summary": "Default",
                    "type": "escalation_policy_reference",
                    "self": "https://api.pagerduty.com/escalation_policies/PUS0KTE",
                    "html_url": "https://acme.pagerduty.com/escalation_policies/PUS0KTE",
                },
                "teams": [],
                "priority": {
                    "id": "P53ZZH5",
                    "summary": priority,
                    "type": "priority_reference",
                    "self": "https://api.pagerduty.com/priorities/P53ZZH5",
                    "html_url": None,
                },
                "urgency": "high",
                "conference_bridge": None,
                "resolve_reason": None,
            },
        }
    }
    return json.dumps(event).encode()


def pagerduty_headers(body: bytes, *secrets: str) -> dict[str, str]:
    """PagerDuty's headers: one ``v1=`` signature per active secret of the subscription."""
    signatures = ",".join(
        "v1=" + hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in secrets or (PD_SECRET,)
    )
    return {
        "Content-Type": "application/json",
        "User-Agent": "PagerDuty-Webhook/V3.0",
        "X-Webhook-Id": "f9a1c3b5-0e2d-4c6b-8a7f-5d4e3c2b1a09",
        "X-Webhook-Subscription": "PY1OQVH",
        "X-PagerDuty-Signature": signatures,
    }


def test_pagerduty_webhooks_that_are_forged_unsigned_stale_future_or_replayed_change_nothing(
    world: Callable[..., World],
) -> None:
    w = world()
    w.deploy()
    w.clock.advance(300)
    now = w.clock.now()
    body = pagerduty_event(now - 10)
    unsigned = {k: v for k, v in pagerduty_headers(body).items() if k != "X-PagerDuty-Signature"}
    stale = pagerduty_event(now - 601, event_id="01DEN2STALE0000000000000000")
    future = pagerduty_event(now + 1800, event_id="01DEN2FUTURE000000000000000")
    before = w.state()
    with structlog.testing.capture_logs() as logs:
        sent = {
            # signed with a secret that is not one of ours
            "forged": w.call(
                "POST", "/v1/hooks/pagerduty", content=body, headers=pagerduty_headers(body, "x")
            ),
            "missing": w.call("POST", "/v1/hooks/pagerduty", content=body, headers=unsigned),
            # the signature is of the raw body: checked before it is parsed, so junk is a 401 too
            "junk": w.call(
                "POST", "/v1/hooks/pagerduty", content=b"{not json", headers=pagerduty_headers(body)
            ),
            # a genuine signature over another body
            "swapped": w.call(
                "POST",
                "/v1/hooks/pagerduty",
                content=pagerduty_event(now - 10, priority="P1", event_id="01DEN2OTHER"),
                headers=pagerduty_headers(body),
            ),
            "stale": w.call("POST", "/v1/hooks/pagerduty", content=stale, headers=pagerduty_headers(stale)),
            "future": w.call(
                "POST", "/v1/hooks/pagerduty", content=future, headers=pagerduty_headers(future)
            ),
        }
    assert {k: a.status_code for k, a in sent.items()} == dict.fromkeys(sent, 401)
    assert sent["missing"].json()["error"] == "X-PagerDuty-Signature is missing"
    assert all(
        sent[k].json()["error"] == "the PagerDuty signature does not match"
        for k in ("forged", "junk", "swapped")
    )
    assert "older than 600s" in sent["stale"].json()["error"]
    assert "from the future" in sent["future"].json()["error"]
    assert refusals(logs) == [401] * len(sent)
    assert w.state() == before

    # the genuine event is taken once; the same signed bytes again are a replay, inside the window
    taken = w.call("POST", "/v1/hooks/pagerduty", content=body, headers=pagerduty_headers(body))
    assert taken.status_code == 202 and taken.json()["taken"] is True
    after = w.state()
    w.clock.advance(60)
    with structlog.testing.capture_logs() as logs:
        again = w.call("POST", "/v1/hooks/pagerduty", content=body, headers=pagerduty_headers(body))
    assert again.status_code == 401 and "taken before (a replay)" in again.json()["error"]
    assert refusals(logs) == [401]
    assert w.state() == after


@pytest.mark.parametrize(
    ("policy", "phase"), [("propose", IncidentPhase.PROPOSED), ("auto", IncidentPhase.RUNNING)]
)
def test_a_p1_on_a_mapped_service_soon_after_a_deploy_rolls_it_back_as_the_policy_says(
    world: Callable[..., World], policy: str, phase: IncidentPhase
) -> None:
    w = world(policy)
    w.deploy()
    w.clock.advance(900)
    body = pagerduty_event(w.clock.now() - 30)
    # signed with the secret being rotated out, beside a stale one: any active secret will do
    answer = w.call(
        "POST", "/v1/hooks/pagerduty", content=body, headers=pagerduty_headers(body, "retired", PD_OLD_SECRET)
    )
    assert answer.status_code == 202, answer.text
    incident_id = answer.json()["rollback_incident"]
    incident = w.app.store.incident(incident_id)
    assert incident.phase == phase
    assert (incident.trigger, incident.evidence["rollback_policy"]) == ("incident:pagerduty", policy)
    assert w.app.store.release(incident.from_release_id).tag == "v1.1.0"
    assert incident.to_release_id is not None and w.app.store.release(incident.to_release_id).tag == "v1.0.0"
    (reported,) = [e for e in w.app.store.decisions() if e.kind == DecisionKind.INCIDENT_REPORTED]
    assert reported.result == DecisionResult.FAILED
    assert reported.evidence["url"] == "https://acme.pagerduty.com/incidents/PGR0VU2"


def test_a_p3_an_unmapped_service_or_an_incident_long_after_the_deploy_rolls_nothing_back(
    world: Callable[..., World],
) -> None:
    w = world()
    w.deploy()
    w.clock.advance(600)
    now = w.clock.now()
    p3 = pagerduty_event(now, priority="P3", event_id="01DEN2P3")
    other = pagerduty_event(now, service="PNOTOURS", event_id="01DEN2OTHER")
    acked = pagerduty_event(now, event_type="incident.acknowledged", event_id="01DEN2ACK")
    before = w.state()
    with structlog.testing.capture_logs() as logs:
        answers = [
            w.call("POST", "/v1/hooks/pagerduty", content=b, headers=pagerduty_headers(b))
            for b in (p3, other, acked)
        ]
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert [a.json()["taken"] for a in answers] == [False, False, False]
    assert "priority P3 is not one of ['P1', 'P2']" in answers[0].json()["why"]
    assert "PNOTOURS is not mapped" in answers[1].json()["why"]
    not_acted = [e for e in logs if e.get("event") == "pagerduty event not acted on"]
    assert [e["event_id"] for e in not_acted] == ["01DEN2P3", "01DEN2OTHER", "01DEN2ACK"]
    assert w.state() == before  # logged, nothing done

    # a P1 an hour and more after the deploy: the decision log says it was looked at and ignored
    w.clock.advance(3600)
    late = pagerduty_event(w.clock.now(), event_id="01DEN2LATE")
    answer = w.call("POST", "/v1/hooks/pagerduty", content=late, headers=pagerduty_headers(late))
    assert answer.status_code == 202 and answer.json() == {"taken": True, "rollback_incident": None}
    (ignored,) = [e for e in w.app.store.decisions() if e.kind == DecisionKind.INCIDENT_REPORTED]
    assert ignored.result == DecisionResult.IGNORED
    assert "outside the incident window of 3600s" in ignored.reason
    assert w.app.store.open_incidents() == []


# ----------------------------------------------------------------------------- the generic webhook


NOTICE = Notice(
    key="decision-7",
    subject="incident-3",
    event=NoticeEvent.ROLLBACK_STARTED,
    severity=NoticeSeverity.CRITICAL,
    status=NoticeStatus.OPEN,
    at=START,
    env="prod",
    service="stamps-api",
    title="Rolling back stamps-api v1.1.0 in prod",
    text="5xx above SLO. Rolling back to v1.0.0.",
    release="v1.1.0",
    target="v1.0.0",
)


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        ("body", "X-Watchdog-Signature-256 does not match the body"),
        ("timestamp", "X-Watchdog-Signature-256 does not match the body"),
        ("old", "X-Watchdog-Timestamp is more than 300 s old"),
    ],
)
def test_the_webhook_receiver_takes_our_signature_and_nothing_changed_after_signing(
    tamper: str, why: str
) -> None:
    """More cases (forged, any header case, malformed) in tests/actions/test_webhook.py."""
    clock = SimClock(START)
    with WebhookReceiver(secret=HOOK_SECRET.encode(), clock=clock) as receiver, httpx.Client() as http:
        cfg = WebhookNotifierConfig.model_validate(
            {"kind": "webhook", "url": receiver.url, "secret": HOOK_SECRET}
        )
        notifier = WebhookNotifier("hook", cfg, http, clock)
        notifier.deliver(NOTICE, {})
        (sent,) = receiver.requests("POST")
        assert sent.status == 200 and [d.delivery_id for d in receiver.deliveries()] == ["decision-7"]
        headers = dict(sent.request_headers)
        body = sent.request_body
        stamp = int(headers[TIMESTAMP_HEADER.lower()])
        if tamper == "body":
            body = body.replace(b"v1.0.0", b"v0.0.1")
        elif tamper == "timestamp":  # moved on to dodge the window: the signature covers it
            headers[TIMESTAMP_HEADER.lower()] = str(stamp + 600)
            clock.advance(600)
        else:
            clock.advance(301)
        assert SIGNATURE_HEADER.lower() in headers
        answer = http.post(receiver.url, content=body, headers=headers)
        assert answer.status_code == 401 and answer.json() == {"error": why}
        assert receiver.refusals == [why] and len(receiver.deliveries()) == 1


# ----------------------------------------------------------------------------- Slack's response_url


def slack_press(w: World, incident: int, user: str, response_url: str) -> httpx.Response:
    """A button press as Slack signs it, with a ``response_url`` of our choosing."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": "mallory", "team_id": "T0000000001"},
        "api_app_id": "A0123456789",
        "team": {"id": "T0000000001", "domain": "acme"},
        "container": {"type": "message", "message_ts": "1800000000.000100", "channel_id": "C0123456789"},
        "trigger_id": "1.1800000000.abc",
        "response_url": response_url,
        "actions": [
            {
                "action_id": "approve",
                "block_id": "levers",
                "type": "button",
                "value": json.dumps({"incident_id": incident}),
                "action_ts": f"{w.clock.now():.6f}",
            }
        ],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(int(w.clock.now()))
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": sign(SIGNING_SECRET, stamp, body),
    }
    w.clock.advance(1)  # each press its own timestamp, so its own signature
    return w.call("POST", "/v1/slack/interactions", content=body, headers=headers)


def test_a_refusal_is_never_sent_to_a_response_url_outside_the_prefix(world: Callable[..., World]) -> None:
    w = world("propose")
    w.deploy()
    w.clock.advance(10)
    body = pagerduty_event(w.clock.now() - 5)
    proposed = w.call("POST", "/v1/hooks/pagerduty", content=body, headers=pagerduty_headers(body))
    incident = proposed.json()["rollback_incident"]
    assert w.app.store.incident(incident).phase == IncidentPhase.PROPOSED
    prefix = w.server.ctx.cfg.notifications.slack_interactivity
    assert prefix is not None
    allowed = prefix.response_url_prefix  # http://127.0.0.1:<port>, no trailing slash
    port = w.elsewhere.url.split(":")[2].split("/")[0]
    outside = [
        w.elsewhere.url,  # another host (here: port)
        f"{allowed}@127.0.0.1:{port}/hooks/watchdog",  # the prefix as userinfo: the host is after '@'
        f"{allowed}.example/hooks/watchdog",  # the prefix as the start of another host name
        "file:///etc/passwd",
    ]
    before = w.state()
    with structlog.testing.capture_logs() as logs:
        answers = [slack_press(w, incident, "U0MALLORY", url) for url in outside]
    assert [a.status_code for a in answers] == [200] * len(outside)  # Slack is answered, the presser not
    assert w.elsewhere.requests() == [] and w.responses.requests() == []
    skipped = [e for e in logs if str(e.get("event", "")).startswith("slack reply not sent")]
    assert len(skipped) == len(outside)
    assert refusals(logs) == [200] * len(outside)  # the stranger's press is in the audit trail
    assert w.state() == before

    # under the prefix the same refusal does go back to the presser: the check is what held it
    answer = slack_press(w, incident, "U0MALLORY", f"{allowed}/actions/T0/1/abc")
    assert answer.status_code == 200
    (reply,) = w.responses.requests("POST")
    assert reply.path == "/actions/T0/1/abc" and reply.request_json["response_type"] == "ephemeral"
    assert "not on the watchdog's Slack allow-list for prod" in reply.request_json["text"]
    assert w.elsewhere.requests() == []
    assert w.state() == before


def test_an_event_whose_handling_failed_is_taken_again_when_pagerduty_retries(
    world: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taking an event id and acting on it are not one transaction: when acting fails (the store
    went away mid-way, here a fault injected into the engine), the id is forgotten, so PagerDuty's
    retry of the same delivery is not refused as a replay and the incident still rolls back."""
    w = world()
    w.deploy()
    w.clock.advance(300)
    body = pagerduty_event(w.clock.now() - 5)
    real = w.app.engine.incident_reported

    def broken(*args: Any, **kwargs: Any) -> int | None:
        raise RuntimeError("the store went away")

    monkeypatch.setattr(w.app.engine, "incident_reported", broken)
    failed = w.call("POST", "/v1/hooks/pagerduty", content=body, headers=pagerduty_headers(body))
    assert failed.status_code == 503 and "retry of it is taken" in failed.json()["error"]
    assert w.app.store.open_incidents() == []
    monkeypatch.setattr(w.app.engine, "incident_reported", real)
    retried = w.call("POST", "/v1/hooks/pagerduty", content=body, headers=pagerduty_headers(body))
    assert retried.status_code == 202, retried.text
    assert retried.json()["rollback_incident"] is not None
