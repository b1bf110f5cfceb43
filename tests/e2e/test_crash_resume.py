"""Crash and resume: the daemon is SIGKILLed as each pipeline step starts, restarted, and the
rollback still completes with exactly one dispatch and a complete decision log."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.daemon import daemon_config, run_cli, start_daemon, wait_for
from watchdog.clock import RealClock
from watchdog.demo.service import ServiceProcess
from watchdog.demo.traffic import Target, TrafficGenerator
from watchdog.emulator.github import GitHubEmulator, RunContext
from watchdog.emulator.pagerduty import ROUTING_KEY, PagerDutyEmulator
from watchdog.phases import DecisionKind, IncidentPhase, StepPhase
from watchdog.pipeline import STEPS
from watchdog.store import Store

pytestmark = pytest.mark.slow

TOKEN = "ghp_crashtesttoken000000000000000000000"
# Each restart leaves the scraped history behind: a hole of a few seconds in a post-rollback watch
# of 6 s, which at the default 80 % coverage ends the watch inconclusive and escalates (as it should).
# This test is about exactly-once across deaths, so it asks for a quarter of the watch seen.
CONFIG = daemon_config(0.3, 6, dispatch_lookup_grace_s=2, approval="auto", pagerduty=True, min_coverage=0.25)


def test_sigkill_at_every_step_still_gives_one_dispatch_and_a_complete_log(
    tmp_path: Path,
    make_github_emulator: Callable[..., GitHubEmulator],
    pagerduty_emulator: PagerDutyEmulator,
) -> None:
    with ServiceProcess("v1.1.0", "canary", seed=13) as canary:

        def deploy(ctx: RunContext) -> bool:
            time.sleep(1.0)  # a deploy takes a moment: room to die while following the run
            canary.restart(ctx.ref)
            return True

        gh = make_github_emulator(hook=deploy, token=TOKEN)  # prod: alice or watchdog-bot approve
        config = tmp_path / "watchdog.yaml"
        config.write_text(CONFIG)
        db = tmp_path / "wd.db"
        env = {
            **os.environ,
            "SVC": canary.url,
            "GH": gh.url,
            "GITHUB_TOKEN": TOKEN,
            "DB": f"sqlite:///{db}",
            "PD": pagerduty_emulator.url,
            "PD_KEY": ROUTING_KEY,
        }

        def cli(*args: str) -> None:
            out = run_cli(config, env, *args)
            assert out.returncode == 0, out.stderr

        daemon_log = tmp_path / "daemon.log"

        def start() -> subprocess.Popen[bytes]:
            return start_daemon(config, env, daemon_log)

        cli("pin", "--tag", "v1.0.0", "--sha", "1" * 40, "--reason", "last good", "--actor", "alice")
        traffic = TrafficGenerator([Target(canary.url, 1.0)], 30.0, RealClock(), np.random.default_rng(2))
        traffic.start()
        store = Store(f"sqlite:///{db}")
        daemon = start()
        kills = []
        try:
            cli("announce", "--tag", "v1.1.0", "--sha", "2" * 40, "--actor", "deploy-bot")
            wait_for(lambda: bool(store.open_incidents()), 90, "the rollback decision")
            incident_id = store.open_incidents()[0].id
            for name in STEPS:

                def reached(name: str = name) -> bool:
                    return any(
                        s.name == name and s.phase != StepPhase.PENDING.value
                        for s in store.steps(incident_id)
                    )

                if store.incident(incident_id).phase == IncidentPhase.RESOLVED.value:
                    break
                wait_for(reached, 60, f"step {name}", poll_s=0.05)
                daemon.send_signal(signal.SIGKILL)  # no clean-up, no flush: like a node dying
                daemon.wait(timeout=10)
                kills.append(name)
                daemon = start()
            wait_for(
                lambda: store.incident(incident_id).phase == IncidentPhase.RESOLVED.value, 90, "resolution"
            )
            wait_for(
                lambda: any(n.notifier == "postmortem" and n.phase == "sent" for n in store.notices()),
                60,
                "the postmortem issue",
            )
        except AssertionError:
            tail = daemon_log.read_text(errors="replace").splitlines()[-40:]
            log = [(e.kind, e.result, e.reason) for e in store.decisions()][-15:]
            raise AssertionError(f"daemon's last lines: {tail}\ndecision log: {log}") from None
        finally:
            traffic.stop()
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)

        assert len(kills) >= 4, kills  # the daemon died inside the pipeline several times
        dispatched = gh.requests("POST", r"/dispatches$")
        assert len([ex for ex in dispatched if ex.status in (200, 204)]) == 1
        assert len(gh.list_runs()) == 1 and canary.version == "v1.0.0"
        assert len(gh.requests("POST", r"/pending_deployments$")) == 1  # approved once (approval: auto)
        opened = [ex.response_json["title"] for ex in gh.requests("POST", r"/issues$")]
        # one ticket, closed with one resolution, and one postmortem (the notices job's)
        assert sorted(t.startswith("Postmortem") for t in opened) == [False, True], opened
        assert len(gh.requests("POST", r"/comments$")) == 1
        (alert,) = pagerduty_emulator.alerts()  # one page, resolved
        assert alert.status == "resolved" and alert.events[-1].action == "resolve"
        steps = store.steps(incident_id)
        assert [s.name for s in steps] == list(STEPS)
        assert all(s.phase == StepPhase.SUCCESSFUL.value for s in steps)
        kinds = [e.kind for e in store.decisions(incident_id=incident_id)]
        assert kinds.count(DecisionKind.ROLLBACK_DECIDED.value) == 1
        assert kinds.count(DecisionKind.ROLLBACK_RESOLVED.value) == 1
        successful = [
            e.evidence["step"]
            for e in store.decisions(incident_id=incident_id)
            if e.kind == DecisionKind.STEP.value and e.result == "successful"
        ]
        assert sorted(successful) == sorted(STEPS)  # every step's completion is in the log, once
        store.close()
