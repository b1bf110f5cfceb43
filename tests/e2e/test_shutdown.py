"""Shutdown: SIGTERM lets the running step finish and be persisted, starts nothing new and exits;
a second SIGTERM exits at once; the next start resumes the rollback where it stopped.

The daemon runs as operators run it (its own process); the step it is stopped in is the dampening
command, which takes a few seconds, so the signal arrives while a step is in hand.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.daemon import daemon_config, run_cli, start_daemon, wait_for
from watchdog.clock import RealClock
from watchdog.demo.service import ServiceProcess
from watchdog.demo.traffic import Target, TrafficGenerator
from watchdog.emulator.github import GitHubEmulator, RunContext
from watchdog.phases import IncidentPhase, StepPhase
from watchdog.store import Store

pytestmark = pytest.mark.slow

TOKEN = "ghp_shutdowntesttoken00000000000000000"
DAMPEN = """    dampening:
      prod:
        - {name: pause-workers, kind: command, argv: [sh, -c, "sleep 3; echo paused"], timeout_s: 30}
"""
CONFIG = daemon_config(0.3, 3, min_coverage=0.25, services_extra=DAMPEN)


@dataclass
class Rig:
    config: Path
    env: dict[str, str]
    store: Store
    log: Path

    def cli(self, *args: str) -> None:
        out = run_cli(self.config, self.env, *args)
        assert out.returncode == 0, out.stderr

    def start(self) -> subprocess.Popen[bytes]:
        return start_daemon(self.config, self.env, self.log)

    def step(self, incident_id: int, name: str) -> str:
        return self.store.step(incident_id, name).phase


@pytest.fixture
def rig(tmp_path: Path, make_github_emulator: Callable[..., GitHubEmulator]) -> Iterator[Rig]:
    with ServiceProcess("v1.1.0", "canary", seed=21) as canary:

        def deploy(ctx: RunContext) -> bool:
            canary.restart(ctx.ref)
            return True

        gh = make_github_emulator(hook=deploy, token=TOKEN, environments=["dev", "stage", "prod"])
        config = tmp_path / "watchdog.yaml"
        config.write_text(CONFIG)
        db = tmp_path / "wd.db"
        env = {**os.environ, "SVC": canary.url, "GH": gh.url, "GITHUB_TOKEN": TOKEN, "DB": f"sqlite:///{db}"}
        traffic = TrafficGenerator([Target(canary.url, 1.0)], 30.0, RealClock(), np.random.default_rng(3))
        traffic.start()
        store = Store(f"sqlite:///{db}")
        try:
            rig = Rig(config, env, store, tmp_path / "daemon.log")
            rig.cli("pin", "--tag", "v1.0.0", "--sha", "1" * 40, "--reason", "last good", "--actor", "alice")
            rig.cli("announce", "--tag", "v1.1.0", "--sha", "2" * 40, "--actor", "deploy-bot")
            yield rig
        finally:
            traffic.stop()
            store.close()


def in_dampening(rig: Rig, daemon: subprocess.Popen[bytes]) -> int:
    """Wait until the rollback is decided and its dampening command runs; the incident's id."""
    wait_for(lambda: bool(rig.store.open_incidents()), 90, "the rollback decision")
    incident_id = rig.store.open_incidents()[0].id
    wait_for(lambda: rig.step(incident_id, "dampen") == StepPhase.RUNNING.value, 60, "dampening", poll_s=0.05)
    assert daemon.poll() is None
    return incident_id


def test_sigterm_finishes_the_step_in_hand_and_the_next_start_resumes(rig: Rig) -> None:
    daemon = rig.start()
    try:
        incident_id = in_dampening(rig, daemon)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0  # bounded by the step in hand (a 3 s command)
        # the step in hand finished and was persisted; the next one was not begun
        assert rig.step(incident_id, "dampen") == StepPhase.SUCCESSFUL.value
        assert rig.step(incident_id, "migration_gate") == StepPhase.PENDING.value
        assert rig.store.incident(incident_id).phase == IncidentPhase.RUNNING.value
        daemon = rig.start()
        wait_for(
            lambda: rig.store.incident(incident_id).phase == IncidentPhase.RESOLVED.value, 90, "resolution"
        )
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    dampened = [
        e for e in rig.store.decisions(incident_id=incident_id) if e.reason == "step dampen successful"
    ]
    assert len(dampened) == 1  # run once: the restart did not repeat it
    assert "daemon stopping" in rig.log.read_text()


def test_a_second_sigterm_exits_at_once(rig: Rig) -> None:
    daemon = rig.start()
    try:
        incident_id = in_dampening(rig, daemon)
        daemon.send_signal(signal.SIGTERM)
        wait_for(lambda: "daemon stopping" in rig.log.read_text(), 30, "the first SIGTERM handled")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 128 + signal.SIGTERM
        assert rig.step(incident_id, "dampen") == StepPhase.RUNNING.value  # cut off in the command
        daemon = rig.start()  # it resumes; the dampening command runs again (idempotent by contract)
        wait_for(
            lambda: rig.store.incident(incident_id).phase == IncidentPhase.RESOLVED.value, 90, "resolution"
        )
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    assert "SIGTERM again, exiting at once" in rig.log.read_text()
