"""The HTTP API on a real uvicorn on loopback: probes, reads, roles, and bad requests that change nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from watchdog.api import ApiContext, ApiServer, create_api
from watchdog.app import App
from watchdog.clock import SimClock
from watchdog.config import parse_config
from watchdog.overrides import Overrides
from watchdog.phases import DecisionKind, SignalState
from watchdog.store import ReleaseRef

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
TOKENS = {
    "VIEWER": "tok-viewer-0123456789",
    "DEPLOYER": "tok-deployer-0123456789",
    "OPERATOR": "tok-operator-0123",
    "WRONG": "tok-viewer-0123456788",  # one character off the viewer's; in no config
}
GITHUB_TOKEN = "ghp_apitestsecret000000000000000000000"
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
  max_body_bytes: 2048
  tokens:
    - {name: grafana, token: "${VIEWER}", role: viewer}
    - {name: ci, token: "${DEPLOYER}", role: deployer}
    - {name: alice, token: "${OPERATOR}", role: operator}
environments:
  prod: {approval: none, watch_s: 600}
services:
  - name: stamps-api
    signals:
      - {name: healthcheck, kind: probe, probe: {metric: probe_success}, k: 2, n: 3}
"""


class Api:
    def __init__(self, app: App, server: ApiServer) -> None:
        self.app, self.server = app, server
        self.http = httpx.Client(base_url=server.url, timeout=10)
        self.answers: list[httpx.Response] = []

    def call(self, method: str, path: str, role: str | None = None, **kw: object) -> httpx.Response:
        headers = dict(kw.pop("headers", {}) or {})  # type: ignore[call-overload]
        if role is not None:
            headers["Authorization"] = f"Bearer {TOKENS[role]}"
        answer = self.http.request(method, path, headers=headers, **kw)  # type: ignore[arg-type]
        self.answers.append(answer)
        return answer

    def state(self) -> tuple[object, ...]:
        """Everything a request could change."""
        s = self.app.store
        return (
            [e.id for e in s.pending_deploy_events()],
            [e.id for e in s.decisions()],
            [i.id for i in s.open_incidents()],
            [w.id for w in s.running_watches()],
        )


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    env = {"DB": f"sqlite:///{tmp_path / 'wd.db'}", "GH_TOKEN": GITHUB_TOKEN, **TOKENS}
    cfg = parse_config(CONFIG, "watchdog.yaml", env=env)
    app = App.build(cfg, SimClock(1_800_000_000.0))
    app.engine.pin("prod", "stamps-api", ReleaseRef("v1.0.0", "1" * 40), actor="alice", reason="seed")
    ctx = ApiContext(
        cfg, app.store, app.clock, app.engine, overrides=Overrides(app.engine), role=lambda: ("leader", "me")
    )
    server = ApiServer(ctx)
    server.start()
    client = Api(app, server)
    yield client
    every = "".join(a.text for a in client.answers)
    for secret in [GITHUB_TOKEN, *TOKENS.values()]:  # no answer ever carries a secret
        assert secret not in every
    client.http.close()
    server.stop()
    app.close()


def test_probes_and_metrics_answer_without_a_token(api: Api) -> None:
    assert api.call("GET", "/healthz").json() == {"status": "ok"}
    ready = api.call("GET", "/readyz")
    assert ready.status_code == 200 and ready.json() == {
        "ready": True,
        "role": "leader",
        "leader": "me",
        "problems": [],
    }
    api.call("GET", "/v1/environments", "VIEWER")
    metrics = api.call("GET", "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'rollback_watchdog_build_info{version="' in metrics.text
    assert 'rollback_watchdog_api_requests_total{route="/v1/environments",status="200"} 1.0' in metrics.text


def test_a_deploy_announced_by_the_workflow_becomes_a_watch_everyone_can_read(api: Api) -> None:
    body = {
        "env": "prod",
        "service": "stamps-api",
        "tag": "v1.1.0",
        "sha": "2" * 40,
        "run_id": 9100000042,
        "build_url": "https://github.com/acme/stamps/actions/runs/9100000042",
        "migrations": [{"id": "0001", "reversible": True}],
    }
    answer = api.call("POST", "/v1/deploys", "DEPLOYER", json=body)
    assert answer.status_code == 202, answer.text
    api.app.engine.tick()  # the leader's next tick starts the watch
    (env,) = api.call("GET", "/v1/environments", "VIEWER").json()
    (svc,) = env["services"]
    assert (env["env"], svc["service"], svc["pinned"]["tag"]) == ("prod", "stamps-api", "v1.0.0")
    watch = svc["watch"]
    assert (watch["release"]["tag"], watch["release"]["run_id"], watch["phase"]) == (
        "v1.1.0",
        9100000042,
        "running",
    )
    assert watch["release"]["migrations"] == [{"id": "0001", "reversible": True}]
    assert svc["open_incident"] is None
    started = api.call("GET", "/v1/decisions", "VIEWER", params={"kind": "watch_started"}).json()["items"]
    assert [(d["to_tag"], d["actor"]) for d in started] == [("v1.1.0", "api:ci")]
    # the signal's state shows once the engine stored a verdict for it
    api.app.store.add_verdict(
        watch["id"], api.app.clock.now(), "healthcheck", SignalState.PASS, "probe", 0.0, 2.0, "ok", {}
    )
    detail = api.call("GET", f"/v1/watches/{watch['id']}", "VIEWER").json()
    assert [(s["signal"], s["state"], s["threshold"]) for s in detail["signals"]] == [
        ("healthcheck", "pass", 2.0)
    ]
    assert api.call("GET", "/v1/watches/999", "VIEWER").status_code == 404


def test_the_decision_log_filters_and_pages(api: Api) -> None:
    for tag in ("v1.1.0", "v1.2.0", "v1.3.0"):
        api.call("POST", "/v1/deploys", "DEPLOYER", json={"env": "prod", "service": "stamps-api", "tag": tag})
        api.app.engine.tick()
    everything = [d["id"] for d in api.call("GET", "/v1/decisions", "VIEWER").json()["items"]]
    assert (
        everything == sorted(everything, reverse=True) and len(everything) == 6
    )  # pin, 3 starts, 2 supersedes
    seen, before = [], None
    while True:
        params = {"limit": 2, **({"before": before} if before else {})}
        page = api.call("GET", "/v1/decisions", "VIEWER", params=params).json()
        seen += [d["id"] for d in page["items"]]
        before = page["next"]
        if before is None:
            break
    assert seen == everything
    superseded = api.call(
        "GET", "/v1/decisions", "VIEWER", params={"kind": DecisionKind.WATCH_SUPERSEDED}
    ).json()
    assert [d["from_tag"] for d in superseded["items"]] == ["v1.2.0", "v1.1.0"]
    later = api.call("GET", "/v1/decisions", "VIEWER", params={"since": api.app.clock.now() + 1}).json()
    assert later == {"items": [], "next": None}
    watches = api.call("GET", "/v1/watches", "VIEWER", params={"phase": "superseded"}).json()["items"]
    assert len(watches) == 2
    releases = api.call("GET", "/v1/releases", "VIEWER", params={"env": "prod"}).json()["items"]
    assert [r["tag"] for r in releases] == ["v1.3.0", "v1.2.0", "v1.1.0", "v1.0.0"]
    (pin,) = api.call("GET", "/v1/pins", "VIEWER").json()
    assert (pin["release"]["tag"], pin["actor"]) == ("v1.0.0", "alice")


def test_a_security_finding_forces_a_rollback_with_its_reference(api: Api) -> None:
    api.call(
        "POST", "/v1/deploys", "DEPLOYER", json={"env": "prod", "service": "stamps-api", "tag": "v1.1.0"}
    )
    api.app.engine.tick()
    body = {"env": "prod", "service": "stamps-api", "reason": "token leak in redeem", "trigger": "security"}
    unreferenced = api.call("POST", "/v1/rollbacks", "OPERATOR", json=body)
    assert unreferenced.status_code == 422 and "needs a reference" in unreferenced.json()["error"]
    assert api.app.store.open_incidents() == []
    forced = api.call("POST", "/v1/rollbacks", "OPERATOR", json={**body, "reference": "GHSA-xxxx-yyyy-zzzz"})
    assert forced.status_code == 202, forced.text
    incident = api.app.store.incident(forced.json()["incident"])
    assert (incident.trigger, incident.actor, incident.evidence["reference"]) == (
        "security",
        "api:alice",
        "GHSA-xxxx-yyyy-zzzz",
    )
    decided = api.app.store.decisions(incident_id=incident.id)[0]
    assert decided.reason == (
        "security-finding rollback of v1.1.0 to v1.0.0: token leak in redeem (GHSA-xxxx-yyyy-zzzz)"
    )


def test_an_operator_forces_a_rollback_once_and_reads_its_steps(api: Api) -> None:
    api.call(
        "POST", "/v1/deploys", "DEPLOYER", json={"env": "prod", "service": "stamps-api", "tag": "v1.1.0"}
    )
    api.app.engine.tick()
    body = {"env": "prod", "service": "stamps-api", "reason": "P1: checkout broken"}
    first = api.call("POST", "/v1/rollbacks", "OPERATOR", json=body)
    assert first.status_code == 202, first.text
    again = api.call("POST", "/v1/rollbacks", "OPERATOR", json=body)
    assert again.status_code == 409 and "already in progress" in again.json()["error"]
    incident = api.call("GET", f"/v1/incidents/{first.json()['incident']}", "VIEWER").json()
    assert (incident["actor"], incident["from_release"]["tag"], incident["to_release"]["tag"]) == (
        "api:alice",
        "v1.1.0",
        "v1.0.0",
    )
    assert incident["steps"] == []  # the leader's pipeline runs them at its next tick
    listed = api.call("GET", "/v1/incidents", "VIEWER", params={"phase": "running"}).json()["items"]
    assert [i["id"] for i in listed] == [incident["id"]]
    assert api.call("GET", "/v1/incidents/77", "VIEWER").status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "role", "body", "status", "says"),
    [
        ("GET", "/v1/environments", None, None, 401, "a valid bearer token is needed"),
        (
            "POST",
            "/v1/deploys",
            None,
            {"env": "prod", "service": "stamps-api", "tag": "v9"},
            401,
            "bearer token",
        ),
        ("GET", "/v1/decisions", "WRONG", None, 401, "the token is not valid"),
        (
            "POST",
            "/v1/deploys",
            "VIEWER",
            {"env": "prod", "service": "stamps-api", "tag": "v9"},
            403,
            "deployer",
        ),
        (
            "POST",
            "/v1/deploys",
            "OPERATOR",
            {"env": "prod", "service": "stamps-api", "tag": "v9"},
            403,
            "deployer",
        ),
        (
            "POST",
            "/v1/rollbacks",
            "DEPLOYER",
            {"env": "prod", "service": "stamps-api", "reason": "r"},
            403,
            "operator",
        ),
        (
            "POST",
            "/v1/deploys",
            "DEPLOYER",
            {"env": "prod", "service": "stamps-api"},
            422,
            "body.tag: Field required",
        ),
        (
            "POST",
            "/v1/deploys",
            "DEPLOYER",
            {"env": "prod", "service": "stamps-api", "tag": "v9", "x": 1},
            422,
            "body.x",
        ),
        (
            "POST",
            "/v1/deploys",
            "DEPLOYER",
            {"env": "prod", "service": "stamps-api", "tag": "v9", "sha": "zz"},
            422,
            "body.sha",
        ),
        (
            "POST",
            "/v1/deploys",
            "DEPLOYER",
            {"env": "prod", "service": "nope", "tag": "v9"},
            422,
            "no service named 'nope'",
        ),
        (
            "POST",
            "/v1/deploys",
            "DEPLOYER",
            {"env": "prod", "service": "stamps-api", "tag": "v 9"},
            422,
            "whitespace",
        ),
        ("POST", "/v1/deploys", "DEPLOYER", "[not json", 422, "body"),
        ("GET", "/v1/decisions?limit=0", "VIEWER", None, 422, "query.limit"),
        (
            "POST",
            "/v1/rollbacks",
            "OPERATOR",
            {"env": "prod", "service": "stamps-api", "reason": "r"},
            409,
            "nothing to roll back",
        ),
    ],
)
def test_a_refused_request_says_why_and_changes_nothing(
    api: Api, method: str, path: str, role: str | None, body: object, status: int, says: str
) -> None:
    before = api.state()
    kw: dict[str, object] = {}
    if isinstance(body, str):
        kw = {"content": body, "headers": {"Content-Type": "application/json"}}
    elif body is not None:
        kw = {"json": body}
    answer = api.call(method, path, role, **kw)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["error"]
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"
    fields = {"body.tag: Field required": "body.tag", "body.x": "body.x", "body.sha": "body.sha"}
    fields |= {
        "no service named 'nope'": "body.service",
        "whitespace": "body.tag",
        "query.limit": "query.limit",
    }
    if says in fields:
        assert answer.json()["field"] == fields[says]
    assert api.state() == before


def test_a_body_above_the_limit_is_refused_before_anything_reads_it(api: Api) -> None:
    before = api.state()
    big = {"env": "prod", "service": "stamps-api", "tag": "v9", "build_url": "x" * 3000}
    declared = api.call("POST", "/v1/deploys", "DEPLOYER", json=big)
    assert declared.status_code == 413 and "larger than 2048 bytes" in declared.json()["error"]
    chunks = (json.dumps(big)[i : i + 500].encode() for i in range(0, 4000, 500))  # no Content-Length
    streamed = api.call(
        "POST", "/v1/deploys", "DEPLOYER", content=chunks, headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert api.call("POST", "/v1/deploys", None, json=big).status_code == 413  # not even authenticated
    assert api.state() == before


def test_the_committed_openapi_document_is_what_the_api_serves(api: Api) -> None:
    served = api.call("GET", "/openapi.json").json()
    assert served == create_api(api.server.ctx).openapi()
    committed = json.loads(OPENAPI.read_text())
    assert committed == served, "docs/openapi.json is stale: python -m watchdog.api > docs/openapi.json"
    assert {"/healthz", "/readyz", "/metrics", "/v1/environments", "/v1/decisions", "/v1/deploys"} <= set(
        served["paths"]
    )
    assert served["components"]["securitySchemes"] == {
        "HTTPBearer": {
            "type": "http",
            "scheme": "bearer",
            "description": served["components"]["securitySchemes"]["HTTPBearer"]["description"],
        }
    }


def test_operators_pause_resume_promote_and_extend_through_the_api(api: Api) -> None:
    pause = {"env": "prod", "service": "stamps-api", "for_s": 600, "reason": "migration window"}
    assert api.call("POST", "/v1/pauses", "DEPLOYER", json=pause).status_code == 403
    made = api.call("POST", "/v1/pauses", "OPERATOR", json=pause)
    assert made.status_code == 201 and made.json()["actor"] == "api:alice"
    assert made.json()["until"] == api.app.clock.now() + 600
    (listed,) = api.call("GET", "/v1/pauses", "VIEWER", params={"in_force": True}).json()
    assert listed["reason"] == "migration window"
    too_long = api.call("POST", "/v1/pauses", "OPERATOR", json={**pause, "for_s": 8 * 86_400})
    assert too_long.status_code == 422 and too_long.json()["field"] == "body.for_s"
    resume = {"env": "prod", "service": "stamps-api", "reason": "done"}
    assert [p["ended_by"] for p in api.call("POST", "/v1/pauses/resume", "OPERATOR", json=resume).json()] == [
        "api:alice"
    ]
    again = api.call("POST", "/v1/pauses/resume", "OPERATOR", json=resume)
    assert again.status_code == 409 and "is not paused" in again.json()["error"]

    lever = {"env": "prod", "service": "stamps-api", "reason": "checked by hand"}
    assert (
        api.call("POST", "/v1/watches/promote", "OPERATOR", json=lever).status_code == 409
    )  # nothing running
    api.call(
        "POST", "/v1/deploys", "DEPLOYER", json={"env": "prod", "service": "stamps-api", "tag": "v1.1.0"}
    )
    api.app.engine.tick()
    extended = api.call("POST", "/v1/watches/extend", "OPERATOR", json={**lever, "by_s": 120})
    assert extended.status_code == 200 and extended.json()["ends_at"] == api.app.clock.now() + 600 + 120
    promoted = api.call("POST", "/v1/watches/promote", "OPERATOR", json=lever)
    assert promoted.status_code == 200 and promoted.json()["phase"] == "successful"
    (pin, _) = api.call("GET", "/v1/pins", "VIEWER").json()
    assert (pin["release"]["tag"], pin["actor"]) == ("v1.1.0", "api:alice")


def test_a_veto_the_state_does_not_allow_is_refused_through_the_api(api: Api) -> None:
    assert api.call("POST", "/v1/incidents/42/veto", "OPERATOR", json={"reason": "r"}).status_code == 404
    api.call(
        "POST", "/v1/deploys", "DEPLOYER", json={"env": "prod", "service": "stamps-api", "tag": "v1.1.0"}
    )
    api.app.engine.tick()
    forced = api.call(
        "POST", "/v1/rollbacks", "OPERATOR", json={"env": "prod", "service": "stamps-api", "reason": "P1"}
    )
    incident = forced.json()["incident"]
    before = api.state()
    veto = api.call("POST", f"/v1/incidents/{incident}/veto", "OPERATOR", json={"reason": "no"})
    assert veto.status_code == 409 and "a human's rollback has no veto window" in veto.json()["error"]
    assert (
        api.call("POST", f"/v1/incidents/{incident}/veto", "VIEWER", json={"reason": "no"}).status_code == 403
    )
    approve = api.call("POST", f"/v1/incidents/{incident}/approve", "OPERATOR", json={"reason": "go"})
    assert approve.status_code == 409 and "not proposed" in approve.json()["error"]
    assert api.state() == before
