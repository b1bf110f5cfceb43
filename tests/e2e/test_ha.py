"""High availability: two `rollback-watchdog run` replicas on one real PostgreSQL. One leads, the
other stands by (scraping, so it has the history a watch needs); the leader is SIGKILLed in the
middle of a rollback, after the dispatch and before the smoke checks; the standby takes over within
the lease's TTL and finishes the rollback: one dispatch, one approval, one ticket, one page, and a
complete decision log. On SQLite a second daemon refuses to start, naming the holder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.fixtures.daemon import api_urls, daemon_config, run_cli, start_daemon, wait_for
from tests.fixtures.postgres import run_postgres
from watchdog.clock import RealClock
from watchdog.demo.service import ServiceProcess
from watchdog.demo.traffic import Target, TrafficGenerator
from watchdog.emulator.github import GitHubEmulator, RunContext
from watchdog.emulator.pagerduty import ROUTING_KEY, PagerDutyEmulator
from watchdog.leader import LEASE
from watchdog.phases import DecisionKind, IncidentPhase, StepPhase
from watchdog.pipeline import STEPS
from watchdog.store import Store

pytestmark = pytest.mark.slow

TOKEN = "ghp_hatesttoken0000000000000000000000000"
TTL_S = 3.0
CONFIG = daemon_config(0.3, 4, approval="auto", pagerduty=True, min_coverage=0.5).replace(
    'store: {url: "${DB}"}', f'store: {{url: "${{DB}}", lease_ttl_s: {TTL_S}}}'
)


def test_the_standby_takes_over_a_rollback_when_the_leader_dies(
    tmp_path: Path,
    make_github_emulator: Callable[..., GitHubEmulator],
    pagerduty_emulator: PagerDutyEmulator,
) -> None:
    with run_postgres() as url, ServiceProcess("v1.1.0", "canary", seed=17) as canary:
        leader_dead = threading.Event()

        def deploy(ctx: RunContext) -> bool:
            leader_dead.wait(60)  # the run goes on once the leader that dispatched it is gone
            canary.restart(ctx.ref)
            return True

        gh = make_github_emulator(hook=deploy, token=TOKEN)  # prod: watchdog-bot may approve
        config = tmp_path / "watchdog.yaml"
        config.write_text(CONFIG)
        env = {
            **os.environ,
            "SVC": canary.url,
            "GH": gh.url,
            "GITHUB_TOKEN": TOKEN,
            "DB": url,
            "PD": pagerduty_emulator.url,
            "PD_KEY": ROUTING_KEY,
        }
        pinned = run_cli(
            config, env, "pin", "--tag", "v1.0.0", "--sha", "1" * 40, "--reason", "good", "--actor", "al"
        )
        assert pinned.returncode == 0, pinned.stderr
        traffic = TrafficGenerator([Target(canary.url, 1.0)], 30.0, RealClock(), np.random.default_rng(5))
        traffic.start()
        store = Store(url)
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        replicas = [start_daemon(config, env, logs[0])]
        wait_for(lambda: store.lease(LEASE) is not None and store.lease(LEASE).token >= 1, 60, "a leader")
        replicas.append(start_daemon(config, env, logs[1]))
        try:
            wait_for(lambda: "standing by" in logs[1].read_text(), 60, "the second replica standing by")
            first = store.lease(LEASE)
            assert first is not None and first.holder.split(":")[1] == str(replicas[0].pid)
            # each replica's API says which it is, and who leads (it listens once its lease is settled)
            wait_for(lambda: all(api_urls(p) for p in logs), 60, "both replicas' APIs")
            readiness = [httpx.get(f"{api_urls(p)[-1]}/readyz", timeout=10).json() for p in logs]
            assert [(r["ready"], r["role"]) for r in readiness] == [(True, "leader"), (True, "standby")]
            assert readiness[1]["leader"] == first.holder
            assert [httpx.get(f"{api_urls(p)[-1]}/healthz", timeout=10).json() for p in logs] == [
                {"status": "ok"}
            ] * 2
            announced = run_cli(
                config, env, "announce", "--tag", "v1.1.0", "--sha", "2" * 40, "--actor", "bot"
            )
            assert announced.returncode == 0, announced.stderr
            wait_for(lambda: bool(store.open_incidents()), 90, "the rollback decision")
            incident_id = store.open_incidents()[0].id

            def between_dispatch_and_smoke() -> bool:
                steps = {s.name: s.phase for s in store.steps(incident_id)}
                return steps.get("dispatch") == StepPhase.SUCCESSFUL.value

            wait_for(between_dispatch_and_smoke, 60, "the dispatch", poll_s=0.05)
            smoke = [s.phase for s in store.steps(incident_id) if s.name == "smoke"]  # read, never create
            assert smoke in ([], [StepPhase.PENDING.value])
            # the leader's own clock: a renewal it made after this read only shortens the figure below
            last_renewal = store.lease(LEASE)
            assert last_renewal is not None and last_renewal.token == first.token
            replicas[0].send_signal(signal.SIGKILL)  # the leader's node dies: no clean-up
            replicas[0].wait(timeout=10)
            leader_dead.set()
            wait_for(
                lambda: (lease := store.lease(LEASE)) is not None and lease.token > first.token,
                TTL_S * 3,
                "the standby taking over",
                poll_s=0.05,
            )
            taken = store.lease(LEASE)
            # from the replicas' own clocks in the lease rows: the old tenure's last renewal to the new one
            assert taken is not None
            failover_s = taken.acquired_at - (last_renewal.expires_at - TTL_S)
            print(
                f"failover: standby leading at most {failover_s:.2f}s after the leader last renewed "
                f"(TTL {TTL_S}s)"
            )
            assert taken.holder.split(":")[1] == str(replicas[1].pid)
            wait_for(
                lambda: store.incident(incident_id).phase == IncidentPhase.RESOLVED.value, 120, "resolution"
            )
        except AssertionError:
            tails = {str(p): p.read_text(errors="replace").splitlines()[-25:] for p in logs}
            raise AssertionError(f"replicas' last lines: {tails}") from None
        finally:
            traffic.stop()
            for r in replicas:
                if r.poll() is None:
                    r.send_signal(signal.SIGTERM)
                    r.wait(timeout=30)

        assert len([ex for ex in gh.requests("POST", r"/dispatches$") if ex.status in (200, 204)]) == 1
        assert len(gh.list_runs()) == 1 and canary.version == "v1.0.0"
        assert len(gh.requests("POST", r"/pending_deployments$")) == 1
        assert len(gh.requests("POST", r"/issues$")) == 1
        (alert,) = pagerduty_emulator.alerts()
        assert alert.status == "resolved"
        steps = store.steps(incident_id)
        assert [s.name for s in steps] == list(STEPS)
        assert all(s.phase == StepPhase.SUCCESSFUL.value for s in steps)
        log = store.decisions(incident_id=incident_id)
        kinds = [e.kind for e in log]
        assert kinds.count(DecisionKind.ROLLBACK_DECIDED.value) == 1
        assert kinds.count(DecisionKind.ROLLBACK_RESOLVED.value) == 1
        successful = sorted(e.evidence["step"] for e in log if e.kind == "step" and e.result == "successful")
        assert successful == sorted(STEPS)
        store.close()


def test_a_second_daemon_on_a_sqlite_store_refuses_to_start(
    tmp_path: Path, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    gh = make_github_emulator(token=TOKEN)
    config = tmp_path / "watchdog.yaml"
    config.write_text(daemon_config(0.3, 4))
    env = {**os.environ, "SVC": "http://127.0.0.1:9", "GH": gh.url, "GITHUB_TOKEN": TOKEN}
    env["DB"] = f"sqlite:///{tmp_path / 'wd.db'}"
    first = start_daemon(config, env, tmp_path / "a.log")
    try:
        wait_for(lambda: "daemon started" in (tmp_path / "a.log").read_text(), 60, "the first daemon")
        second = subprocess.run(
            [sys.executable, "-m", "watchdog", "run", "-c", str(config)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
    assert second.returncode == 3, second.stderr
    assert f"in use by rollback-watchdog {os.uname().nodename}:{first.pid}:" in second.stderr
    assert "one daemon per SQLite store (use PostgreSQL for replicas)" in second.stderr
    # a clean stop lets go: the next daemon starts at once
    again = start_daemon(config, env, tmp_path / "c.log")
    try:
        wait_for(lambda: "daemon started" in (tmp_path / "c.log").read_text(), 60, "the next daemon")
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=30) == 0
