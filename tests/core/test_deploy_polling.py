"""Deploys detected by polling GitHub's deployments: against the GitHub emulator on a simulated
clock (every exchange checked against GitHub's spec), a real App and its store; and the store's
one deploy event per (env, service, tag, run id), whichever way the deploy came."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from structlog.testing import capture_logs

from tests.fixtures.concurrency import race
from tests.fixtures.github import SHAS, TOKEN, client
from tests.fixtures.postgres import run_postgres
from tests.openapi_check import GITHUB_SPEC, SpecRecorder
from watchdog.api import ApiContext, ApiServer
from watchdog.app import App
from watchdog.cli import main
from watchdog.clock import SimClock
from watchdog.config import WatchdogConfig, parse_config
from watchdog.deploys import FOLLOW_OPEN_S, SOURCE, DeploymentPoller
from watchdog.emulator.github import EnvironmentDef, Exchange, GitHubEmulator
from watchdog.errors import ConfigError, UnknownName
from watchdog.store import ReleaseRef, Store

HEAD = ScriptDirectory.from_config(Store._alembic()).get_current_head()  # the newest migration
START = 1_800_000_000.0
DEPLOYER = "tok-deployer-7a2c4e6b8d"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RUN_URL = "https://github.com/acme/stamps/actions/runs/5/job/1"
SERVICE = "stamps-api"
ONE_SERVICE = f"""
  - name: {SERVICE}
    signals: [{{name: healthcheck, kind: probe, probe: {{metric: probe_success}}}}]
"""
TWO_SERVICES = (
    ONE_SERVICE
    + """
  - name: stamps-worker
    signals: [{name: healthcheck, kind: probe, probe: {metric: probe_success}}]
"""
)
CONFIG = """
version: 1
source:
  kind: scrape
  scrape: {targets: [{url: "http://127.0.0.1:9/metrics"}]}
github:
  api_url: "${GH}"
  repo: acme/stamps
  token: "${GH_TOKEN}"
  request_interval_s: 0  # no throttle against the emulator
  write_interval_s: 0
  deployments: {poll: true}
store: {url: "${DB}"}
api:
  listen: "127.0.0.1:0"
  tokens: [{name: ci, token: "${DEPLOYER}", role: deployer}]
environments:
  prod: {approval: none, watch_s: 600}
services:
"""
#: The reads the poller makes; GitHub's description lists no 304 for them (see the test below).
DEPLOYMENT_READS = re.compile(r"^/repos/[^/]+/[^/]+/deployments(/\d+/statuses)?$")


@dataclass
class World:
    gh: GitHubEmulator
    clock: SimClock
    cfg: WatchdogConfig
    app: App
    #: Started with the world, at START.
    poller: DeploymentPoller = field(init=False)

    def __post_init__(self) -> None:
        self.poller = self.new_poller()

    def new_poller(self) -> DeploymentPoller:
        """A poller started now (a daemon starting)."""
        deployer = self.app.pipeline.deployer
        assert deployer is not None
        return DeploymentPoller(self.cfg, deployer, self.app.store, self.clock, self.app.engine.announce)

    def deploy(self, tag: str, *, correlation_id: str | None = None) -> int:
        """Run the deploy workflow for prod at ``tag`` to its end; the run's id."""
        deployer = self.app.pipeline.deployer
        assert deployer is not None
        inputs = {"environment": "prod", "tag": tag, "correlation_id": correlation_id or f"ci-{tag}"}
        run = deployer.dispatch(tag, inputs)
        assert run is not None
        self.clock.advance(1.0)  # past queue_delay + step_delay: the run completes when looked at
        self.gh.wait_for_run(run.id)
        return run.id

    def events(self) -> list[tuple[Any, ...]]:
        """Every deploy event stored, consumed or not: (env, service, tag, run id, source)."""
        with self.app.store.session() as s:
            rows = s.execute(
                sa.text("SELECT env, service, tag, run_id, source FROM deploy_events ORDER BY id")
            )
            return [tuple(r) for r in rows]


def _take_undocumented_304s(recorder: SpecRecorder) -> None:
    """GitHub answers conditional reads of deployments 304, which its description does not list
    for these two operations: only those violations are taken; anything else still fails."""
    kept = [
        v
        for v in recorder.take()
        if not (
            v.status == 304
            and v.method == "GET"
            and DEPLOYMENT_READS.match(v.path)
            and "Unknown response http status: 304" in v.message
        )
    ]
    recorder.violations.extend(kept)


@pytest.fixture
def make_world(
    tmp_path: Path, make_github_emulator: Callable[..., GitHubEmulator], spec_recorder: SpecRecorder
) -> Iterator[Callable[..., World]]:
    """An App and a poller (started at START) on a GitHub emulator on a simulated clock; prod has
    no reviewers, so a dispatched run deploys as soon as the clock moves."""
    apps: list[App] = []

    def make(services: str = ONE_SERVICE, **emulator: Any) -> World:
        clock = SimClock(START)
        gh = make_github_emulator(clock=clock, environments=[EnvironmentDef("prod")], **emulator)
        env = {"GH": gh.url, "GH_TOKEN": TOKEN, "DB": f"sqlite:///{tmp_path / 'wd.db'}", "DEPLOYER": DEPLOYER}
        cfg = parse_config(CONFIG + services, "watchdog.yaml", env=env)
        app = App.build(cfg, clock)
        apps.append(app)
        return World(gh, clock, cfg, app)

    yield make
    for app in apps:
        app.close()
    _take_undocumented_304s(spec_recorder)


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    return make_world()


def since(gh: GitHubEmulator, seq: int) -> list[Exchange]:
    return [e for e in gh.requests("GET") if e.seq > seq]


def last_seq(gh: GitHubEmulator) -> int:
    return gh.exchanges[-1].seq if gh.exchanges else 0


# ----------------------------------------------------------------------------- announced once


def test_a_deploy_by_the_workflow_is_announced_once_and_later_polls_cost_no_rate_limit(world: World) -> None:
    run_id = world.deploy("v1.1.0")

    (detected,) = world.poller.poll_once()
    assert (detected.env, detected.service, detected.ref.tag, detected.ref.sha, detected.ref.run_id) == (
        "prod",
        SERVICE,
        "v1.1.0",
        SHAS["v1.1.0"],
        run_id,
    )
    (event,) = world.app.store.pending_deploy_events()
    assert event.id == detected.event_id
    assert (event.source, event.actor, event.run_id) == (SOURCE, "github:watchdog-bot", run_id)
    assert event.build_url is not None
    assert event.build_url.startswith(f"https://github.com/acme/stamps/actions/runs/{run_id}/")
    assert event.deployed_at == START  # the success status's time (GitHub's: whole seconds)

    mark, remaining = last_seq(world.gh), world.gh.rate_limit["remaining"]
    for _ in range(3):
        world.clock.advance(60)
        assert world.poller.poll_once() == []
    later = since(world.gh, mark)
    assert [(e.operation, e.status) for e in later] == [("repos/list-deployments", 304)] * 3
    assert all(e.request_headers["if-none-match"] == later[0].response_headers["etag"] for e in later)
    assert world.gh.rate_limit["remaining"] == remaining  # 304s are free
    assert len(world.events()) == 1


def test_a_deployment_made_through_the_api_is_announced_when_its_newest_status_is_success(
    world: World,
) -> None:
    alice = client(world.gh, "ghp_alice").get_repo("acme/stamps")
    deployment = alice.create_deployment(
        "v1.2.0", environment="prod", payload={"service": SERVICE}, required_contexts=[], auto_merge=False
    )
    deployment.create_status("in_progress", target_url="https://github.com/acme/stamps/actions/runs/77")

    assert world.poller.poll_once() == []  # in progress: not a deploy yet
    mark = last_seq(world.gh)
    world.clock.advance(60)
    assert world.poller.poll_once() == []
    assert [e.status for e in since(world.gh, mark)] == [304, 304]  # the listing, the statuses

    world.clock.advance(30)
    log_url = "https://github.com/acme/stamps/actions/runs/77/job/1"
    made = httpx.post(
        f"{world.gh.url}/repos/acme/stamps/deployments/{deployment.id}/statuses",
        json={"state": "success", "log_url": log_url, "target_url": "https://ci.example/77"},
        headers={"Authorization": "Bearer ghp_alice"},
    )
    assert made.status_code == 201
    world.clock.advance(30)
    (detected,) = world.poller.poll_once()
    assert (detected.ref.tag, detected.ref.run_id, detected.deployed_at) == ("v1.2.0", 77, START + 90)
    assert detected.ref.build_url == log_url
    assert world.app.store.pending_deploy_events()[0].actor == "github:alice"
    world.clock.advance(60)
    assert world.poller.poll_once() == []
    assert len(world.events()) == 1


def test_a_failed_deploy_is_never_announced(make_world: Callable[..., World]) -> None:
    world = make_world(hook=lambda ctx: ctx.ref != "v1.2.0")  # the v1.2.0 deploy fails
    world.deploy("v1.2.0")
    repo = client(world.gh).get_repo("acme/stamps")
    errored = repo.create_deployment("v1.1.0", environment="prod", required_contexts=[], auto_merge=False)
    errored.create_status("error")

    for _ in range(2):
        assert world.poller.poll_once() == []
        world.clock.advance(60)
    assert world.events() == []


def test_deploys_that_succeeded_before_the_poller_started_are_history(world: World) -> None:
    world.deploy("v1.1.0")
    world.clock.advance(600)
    late = world.new_poller()  # the daemon starts after that deploy

    assert late.poll_once() == []
    world.deploy("v1.2.0")
    assert [d.ref.tag for d in late.poll_once()] == ["v1.2.0"]
    assert [tag for _, _, tag, _, _ in world.events()] == ["v1.2.0"]


def test_a_deployment_older_than_the_newest_deploy_the_store_knows_is_not_announced(world: World) -> None:
    world.deploy("v1.1.0")  # succeeded at START
    world.clock.advance(5)
    world.app.engine.announce("prod", SERVICE, ReleaseRef("v1.2.0"), source="cli", actor="alice")

    assert world.poller.poll_once() == []  # it would supersede the newer watch with an older release
    assert [tag for _, _, tag, _, _ in world.events()] == ["v1.2.0"]


# ----------------------------------------------------------------------------- one deploy, three ways


@pytest.fixture
def api_server(world: World) -> Iterator[str]:
    ctx = ApiContext(world.cfg, world.app.store, world.clock, world.app.engine, role=lambda: ("leader", "me"))
    server = ApiServer(ctx)
    server.start()
    yield server.url
    server.stop()


def test_a_deploy_the_workflow_announced_and_the_poller_saw_is_one_deploy_event(
    world: World, api_server: str
) -> None:
    run_id = world.deploy("v1.1.0")
    body = {
        "env": "prod",
        "service": SERVICE,
        "tag": "v1.1.0",
        "sha": SHAS["v1.1.0"],
        "run_id": run_id,
        "deployed_at": START,  # the workflow's deploy step, before its job succeeded
    }
    answer = httpx.post(
        f"{api_server}/v1/deploys", json=body, headers={"Authorization": f"Bearer {DEPLOYER}"}, timeout=10
    )
    assert answer.status_code == 202, answer.text

    (detected,) = world.poller.poll_once()
    assert detected.event_id == answer.json()["deploy_event"]
    assert world.events() == [("prod", SERVICE, "v1.1.0", run_id, "api")]  # the first one kept


def test_a_deploy_the_poller_saw_first_and_the_cli_announced_after_is_one_deploy_event(
    world: World, api_server: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = world.deploy("v1.1.0")
    (detected,) = world.poller.poll_once()
    world.app.engine.tick()  # the leader already started its watch
    monkeypatch.setenv("ROLLBACK_WATCHDOG_TOKEN", DEPLOYER)

    argv = ["announce", "--api", api_server, "--env", "prod", "--service", SERVICE, "--tag", "v1.1.0"]
    assert main([*argv, "--run-id", str(run_id)]) == 0
    assert f"(event {detected.event_id})" in capsys.readouterr().out
    assert world.events() == [("prod", SERVICE, "v1.1.0", run_id, SOURCE)]
    assert len(world.app.store.running_watches()) == 1


# ----------------------------------------------------------------------------- what is not a deploy


def test_the_watchdogs_own_rollback_run_is_not_a_deploy(world: World) -> None:
    store = world.app.store
    bad = store.upsert_release("prod", SERVICE, ReleaseRef("v1.2.0"), START)
    incident = store.create_incident("prod", SERVICE, bad.id, None, "manual", "r", "alice", START, {})
    world.deploy("v1.1.0", correlation_id=incident.correlation_id)  # what the rollback dispatches

    assert world.poller.poll_once() == []
    assert world.events() == []


def test_the_service_is_the_payloads_or_the_only_one(make_world: Callable[..., World]) -> None:
    world = make_world(TWO_SERVICES)
    made = {}
    with httpx.Client(base_url=f"{world.gh.url}/repos/acme/stamps", headers=AUTH, timeout=10) as gh:
        for name, payload in [
            ("worker", {"service": "stamps-worker"}),
            ("unnamed", {}),
            ("other", {"service": "billing"}),
            ("as-text", json.dumps({"service": SERVICE})),  # GitHub takes a payload as a string too
        ]:
            body = {"ref": "v1.1.0", "environment": "prod", "payload": payload, "required_contexts": []}
            made[name] = gh.post("/deployments", json=body).json()["id"]
            status = {"state": "success", "log_url": RUN_URL, "auto_inactive": False}
            assert gh.post(f"/deployments/{made[name]}/statuses", json=status).status_code == 201

    with capture_logs() as logs:
        found = world.poller.poll_once()
    assert sorted(d.service for d in found) == [SERVICE, "stamps-worker"]
    (warning,) = [e for e in logs if e["log_level"] == "warning"]
    assert warning["deployment"] == made["unnamed"] and "names no service" in warning["event"]
    world.clock.advance(60)
    with capture_logs() as again:
        assert world.poller.poll_once() == []
    assert [e for e in again if e["log_level"] == "warning"] == []  # said once


# ----------------------------------------------------------------------------- GitHub failing


@pytest.mark.parametrize(
    "fault",
    [
        lambda gh: gh.inject_error("GET", r"/deployments$", 502),
        lambda gh: gh.inject_rate_limit("GET", r"/deployments$"),
        lambda gh: gh.inject_error("GET", r"/statuses$", 502),
        lambda gh: gh.inject_drop("GET", r"/deployments$"),
    ],
    ids=["502", "rate-limited", "statuses-502", "no-answer"],
)
def test_github_failing_blinds_the_round_logged_and_the_next_round_sees_the_deploy(
    world: World, fault: Callable[[GitHubEmulator], object]
) -> None:
    world.deploy("v1.1.0")
    fault(world.gh)

    with capture_logs() as logs:
        assert world.poller.poll_once() == []
    (failed,) = [e for e in logs if e["log_level"] == "error"]
    assert (failed["event"], failed["env"]) == ("deployment poll failed", "prod")
    assert "GitHub" in failed["error"] or failed["error_type"] == "ActionRetryable"
    assert world.events() == []

    world.clock.advance(60)
    assert [d.ref.tag for d in world.poller.poll_once()] == ["v1.1.0"]


def test_the_job_polls_only_while_leading_and_never_raises(world: World) -> None:
    world.deploy("v1.1.0")
    mark = last_seq(world.gh)

    world.poller.job(lambda: False)()
    assert since(world.gh, mark) == [] and world.events() == []
    world.gh.inject_error("GET", r"/deployments$", 500)
    world.poller.job()()  # logged, not raised
    world.poller.job()()
    assert len(world.events()) == 1


def test_a_deployment_open_for_longer_than_a_job_may_run_is_read_only_when_it_changes(world: World) -> None:
    repo = client(world.gh).get_repo("acme/stamps")
    repo.create_deployment("v1.1.0", environment="prod", required_contexts=[], auto_merge=False)
    world.poller.poll_once()  # no status yet: open
    world.clock.advance(FOLLOW_OPEN_S + 60)
    mark = last_seq(world.gh)

    assert world.poller.poll_once() == []
    assert [e.operation for e in since(world.gh, mark)] == ["repos/list-deployments"]


# ----------------------------------------------------------------------------- configuration


def test_polling_is_off_by_default_every_minute_for_every_configured_environment(world: World) -> None:
    text = CONFIG.replace("  deployments: {poll: true}\n", "") + ONE_SERVICE
    env = {"GH": "http://127.0.0.1:9", "GH_TOKEN": TOKEN, "DB": "sqlite://", "DEPLOYER": DEPLOYER}
    polling = parse_config(text, "watchdog.yaml", env=env).github.deployments
    assert (polling.poll, polling.interval_s, polling.environments) == (False, 60.0, None)
    assert world.poller.environments == ["prod"]


@pytest.mark.parametrize(
    ("deployments", "message"),
    [
        (
            "{poll: true, interval_s: 5}",
            "github.deployments.interval_s: Input should be greater than or equal to 10",
        ),
        ("{poll: true, environments: [qa]}", "github.deployments.environments[0]: Input should be 'dev'"),
        ("{poll: true, environments: [prod, prod]}", "github.deployments.environments: Value error, each"),
        ("{poll: true, every: 60}", "github.deployments.every: Extra inputs are not permitted"),
    ],
)
def test_a_wrong_polling_setting_is_named_with_its_line(deployments: str, message: str) -> None:
    text = CONFIG.replace("deployments: {poll: true}", f"deployments: {deployments}") + ONE_SERVICE
    env = {"GH": "http://127.0.0.1:9", "GH_TOKEN": TOKEN, "DB": "sqlite://", "DEPLOYER": DEPLOYER}
    with pytest.raises(ConfigError) as refused:
        parse_config(text, "watchdog.yaml", env=env)
    assert f"watchdog.yaml:12: {message}" in str(refused.value), str(refused.value)


def test_polling_an_environment_that_is_not_configured_is_refused(world: World) -> None:
    deployer = world.app.pipeline.deployer
    assert deployer is not None
    polling = world.cfg.github.deployments.model_copy(update={"environments": ["stage"]})
    cfg = world.cfg.model_copy(
        update={"github": world.cfg.github.model_copy(update={"deployments": polling})}
    )
    with pytest.raises(UnknownName, match="no environment named 'stage'"):
        DeploymentPoller(cfg, deployer, world.app.store, world.clock, world.app.engine.announce)


def test_githubs_description_lists_no_304_for_the_deployment_reads() -> None:
    """Why the fixture takes those 304s: GitHub answers every conditional GET 304 when nothing
    changed (its REST best practices), but its description lists 304 only for some operations."""
    spec = json.loads(GITHUB_SPEC.read_text())["paths"]
    for path in (
        "/repos/{owner}/{repo}/deployments",
        "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
    ):
        assert "304" not in spec[path]["get"]["responses"]
    assert "304" in spec["/repos/{owner}/{repo}/issues/{issue_number}"]["get"]["responses"]


# ----------------------------------------------------------------------------- the store's deploy key


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'wd.db'}")
    yield s
    s.close()


def test_a_deploy_event_is_stored_once_per_env_service_tag_and_run(store: Store) -> None:
    first = store.add_deploy_event("prod", "api", ReleaseRef("v2", run_id=7), 1.0, 1.0, "api", "ci")
    same = store.add_deploy_event("prod", "api", ReleaseRef("v2", "a" * 40, 7, "u"), 2.0, 2.0, "cli", "bob")
    assert (same.id, same.source, same.deployed_at, same.sha) == (first.id, "api", 1.0, None)  # the first

    without_run = store.add_deploy_event("prod", "api", ReleaseRef("v2"), 3.0, 3.0, "cli", "bob")
    assert without_run.id != first.id
    assert (
        store.add_deploy_event("prod", "api", ReleaseRef("v2"), 4.0, 4.0, "cli", "eve").id == without_run.id
    )
    others = [
        store.add_deploy_event("prod", "api", ReleaseRef("v2", run_id=8), 5.0, 5.0, "api", "ci"),
        store.add_deploy_event("prod", "web", ReleaseRef("v2", run_id=7), 5.0, 5.0, "api", "ci"),
        store.add_deploy_event("dev", "api", ReleaseRef("v2", run_id=7), 5.0, 5.0, "api", "ci"),
        store.add_deploy_event("prod", "api", ReleaseRef("v3", run_id=7), 5.0, 5.0, "api", "ci"),
    ]
    assert len({first.id, without_run.id, *(e.id for e in others)}) == 6

    store.consume_deploy_event(first.id, 6.0)  # a consumed deploy is still the same deploy
    assert (
        store.add_deploy_event("prod", "api", ReleaseRef("v2", run_id=7), 7.0, 7.0, "poll", "x").id
        == first.id
    )
    with store.atomic():  # inside a transaction the duplicate spoils nothing
        again = store.add_deploy_event("prod", "api", ReleaseRef("v2", run_id=7), 8.0, 8.0, "poll", "x")
        store.add_deploy_event("prod", "api", ReleaseRef("v4"), 8.0, 8.0, "poll", "x")
    assert again.id == first.id and len(store.pending_deploy_events()) == 6


def test_callers_racing_on_their_own_connections_store_one_deploy_event(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    Store.open(url).close()
    stores = [Store(url) for _ in range(6)]
    done, failed = race(
        6,
        lambda i: (
            stores[i].add_deploy_event("prod", "api", ReleaseRef("v2", run_id=9), 1.0, 1.0, "api", f"u{i}").id
        ),
    )
    assert failed == [] and len(set(done)) == 1
    for s in stores:
        s.close()


COLUMNS = "env, service, tag, run_id, deployed_at, announced_at, source, actor"


def _old_store_with_duplicates(url: str) -> Store:
    old = Store(url)
    old.migrate("0006")
    with old.engine.begin() as c:
        for n, (tag, run_id) in enumerate(
            [("v2", "7"), ("v2", "7"), ("v2", "NULL"), ("v2", "NULL"), ("v2", "8"), ("v3", "7"), ("v2", "7")]
        ):
            values = f"('prod', 'api', '{tag}', {run_id}, {n}, {n}, 'cli', 'a{n}')"
            c.execute(sa.text(f"INSERT INTO deploy_events ({COLUMNS}) VALUES {values}"))
    return old


def _check_upgraded(store: Store) -> None:
    with store.session() as s:
        kept = s.execute(sa.text("SELECT tag, run_id, actor FROM deploy_events ORDER BY id")).all()
        revision = s.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    assert revision == HEAD
    assert [tuple(r) for r in kept] == [("v2", 7, "a0"), ("v2", None, "a2"), ("v2", 8, "a4"), ("v3", 7, "a5")]
    assert store.add_deploy_event("prod", "api", ReleaseRef("v2"), 9.0, 9.0, "api", "ci").actor == "a2"


def test_an_upgrade_keeps_the_oldest_of_each_deploy_and_then_refuses_duplicates(tmp_path: Path) -> None:
    """Stores written before 0007 may hold one deploy several times (announced by the workflow and
    by hand): the oldest event stays, the others go; then the database holds the key."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    _old_store_with_duplicates(url).close()
    store = Store.open(url)
    _check_upgraded(store)
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as c:
        c.execute(
            sa.text(
                f"INSERT INTO deploy_events ({COLUMNS}) VALUES ('prod', 'api', 'v2', NULL, 1, 1, 'x', 'y')"
            )
        )
    store.close()


@pytest.mark.slow
def test_the_deploy_key_holds_on_postgresql_after_an_upgrade_and_under_a_race() -> None:
    with run_postgres() as url:
        _old_store_with_duplicates(url).close()
        store = Store.open(url)
        _check_upgraded(store)
        stores = [Store(url) for _ in range(6)]
        done, failed = race(
            6,
            lambda i: (
                stores[i].add_deploy_event("prod", "api", ReleaseRef("v9"), 1.0, 1.0, "api", f"u{i}").id
            ),
        )
        assert failed == [] and len(set(done)) == 1
        with store.atomic():  # a duplicate leaves the transaction usable (no failed insert inside)
            store.add_deploy_event("prod", "api", ReleaseRef("v9"), 2.0, 2.0, "poll", "x")
            store.log_decision(
                at=2.0, env="prod", service="api", kind="pin", reason="r", actor="a", result="pinned"
            )
        for s in [*stores, store]:
            s.close()
