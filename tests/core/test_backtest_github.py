"""Backtests find their deploys in GitHub's deployments: the successful ones of the environment,
at their success's time, the watchdog's own rollback runs recognised by their correlation id and
counted as the outcome of the deploy before them (against the GitHub emulator, spec-checked)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.github import TOKEN
from watchdog.app import App
from watchdog.backtest import github_deploys
from watchdog.clock import SimClock
from watchdog.config import parse_config
from watchdog.emulator.github import EnvironmentDef, GitHubEmulator

START = 1_800_000_000.0
CONFIG = """
version: 1
source:
  kind: scrape
  scrape: {targets: [{url: "http://127.0.0.1:9/metrics"}]}
github:
  api_url: "${GH}"
  repo: acme/stamps
  token: "${GH_TOKEN}"
  request_interval_s: 0
  write_interval_s: 0
store: {url: "${DB}"}
environments:
  prod: {approval: none, watch_s: 600}
services:
  - name: stamps-api
    signals: [{name: healthcheck, kind: probe, probe: {metric: probe_success}}]
"""


@pytest.fixture
def world(
    tmp_path: Path, make_github_emulator: Callable[..., GitHubEmulator]
) -> Iterator[tuple[App, GitHubEmulator, SimClock]]:
    clock = SimClock(START)
    gh = make_github_emulator(clock=clock, environments=[EnvironmentDef("prod")])
    env = {"GH": gh.url, "GH_TOKEN": TOKEN, "DB": f"sqlite:///{tmp_path / 'wd.db'}"}
    app = App.build(parse_config(CONFIG, "watchdog.yaml", env=env), clock)
    yield app, gh, clock
    app.close()


def test_past_deploys_come_from_githubs_deployments_with_what_became_of_them(
    world: tuple[App, GitHubEmulator, SimClock],
) -> None:
    app, gh, clock = world
    deployer = app.pipeline.deployer
    assert deployer is not None

    def deploy(tag: str, correlation_id: str) -> float:
        run = deployer.dispatch(tag, {"environment": "prod", "tag": tag, "correlation_id": correlation_id})
        assert run is not None
        clock.advance(1.0)
        gh.wait_for_run(run.id)
        done = clock.now()
        clock.advance(600)
        return done

    kept_at = deploy("v1.1.0", "ci-v1.1.0")  # followed by an ordinary deploy: kept
    bad_at = deploy("v1.2.0", "ci-v1.2.0")  # followed by the watchdog's rollback run
    deploy("v1.1.0", "wd-0123456789ab")  # the rollback (an incident's correlation id)
    last_at = deploy("v1.0.0", "ci-v1.0.0")  # nothing after it yet
    found = github_deploys(app.cfg, "prod", START - 1, app.clock)
    assert [(d.tag, d.outcome) for d in found] == [
        ("v1.1.0", "kept"),
        ("v1.2.0", "rolled_back"),
        ("v1.0.0", None),
    ]
    assert [d.deployed_at for d in found] == pytest.approx([kept_at, bad_at, last_at], abs=1.0)
    assert all(d.service == "stamps-api" for d in found)
    # a window that starts later leaves the older ones out
    assert [d.tag for d in github_deploys(app.cfg, "prod", bad_at + 1, app.clock)] == ["v1.0.0"]
