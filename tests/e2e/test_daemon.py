"""The daemon as an operator runs it: `rollback-watchdog run` in its own process, deploys announced
and releases pinned with the CLI, the decision log read with `rollback-watchdog log`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.daemon import daemon_config, wait_for
from watchdog.clock import RealClock
from watchdog.demo.service import ServiceProcess
from watchdog.demo.traffic import Target, TrafficGenerator
from watchdog.emulator.github import GitHubEmulator, RunContext

pytestmark = pytest.mark.slow

TOKEN = "ghp_daemontesttoken00000000000000000000"
CONFIG = daemon_config(0.5, 3, min_coverage=0.3)  # a 3 s post-rollback watch on wall time


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdog", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_daemon_detects_rolls_back_and_logs(
    tmp_path: Path, make_github_emulator: Callable[..., GitHubEmulator]
) -> None:
    with ServiceProcess("v1.1.0", "canary", seed=9) as canary:

        def deploy(ctx: RunContext) -> bool:
            canary.restart(ctx.ref)
            return True

        gh = make_github_emulator(hook=deploy, token=TOKEN, environments=["dev", "stage", "prod"])
        config = tmp_path / "watchdog.yaml"
        config.write_text(CONFIG)
        env = {
            **os.environ,
            "SVC": canary.url,
            "GH": gh.url,
            "GITHUB_TOKEN": TOKEN,
            "DB": f"sqlite:///{tmp_path / 'wd.db'}",
        }

        pinned = cli(
            "pin",
            "-c",
            str(config),
            "--env",
            "prod",
            "--service",
            "stamps-api",
            "--tag",
            "v1.0.0",
            "--sha",
            "1" * 40,
            "--reason",
            "last good release",
            "--actor",
            "alice",
            env=env,
        )
        assert pinned.returncode == 0, pinned.stderr

        traffic = TrafficGenerator([Target(canary.url, 1.0)], 30.0, RealClock(), np.random.default_rng(1))
        daemon = subprocess.Popen(
            [sys.executable, "-m", "watchdog", "run", "-c", str(config), "--log-format", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            traffic.start()
            announced = cli(
                "announce",
                "-c",
                str(config),
                "--env",
                "prod",
                "--service",
                "stamps-api",
                "--tag",
                "v1.1.0",
                "--sha",
                "2" * 40,
                "--run-id",
                "42",
                "--actor",
                "deploy-bot",
                env=env,
            )
            assert announced.returncode == 0, announced.stderr

            def log() -> list[dict[str, object]]:
                out = cli("log", "-c", str(config), "--json", env=env)
                assert out.returncode == 0, out.stderr
                return list(json.loads(out.stdout))

            wait_for(lambda: any(e["kind"] == "rollback_resolved" for e in log()), 120, "the rollback")
        finally:
            traffic.stop()
            daemon.send_signal(signal.SIGTERM)
            stdout, stderr = daemon.communicate(timeout=30)
        assert daemon.returncode == 0, stderr[-3000:]
        entries = log()
        kinds = [e["kind"] for e in entries]
        assert kinds[:2] == ["pin", "watch_started"]
        assert entries[0]["actor"] == "alice" and entries[1]["actor"] == "deploy-bot"
        decided = next(e for e in entries if e["kind"] == "rollback_decided")
        assert decided["from"] == {"tag": "v1.1.0", "sha": "2" * 40, "run_id": 42, "build_url": None}
        assert decided["to"]["tag"] == "v1.0.0"
        assert decided["evidence"]["failed"][0]["signal"] == "http_5xx"
        assert canary.version == "v1.0.0"  # the emulated deploy workflow really rolled the canary back
        assert len(gh.requests("POST", r"/dispatches$")) == 1

        table = cli("log", "-c", str(config), env=env)
        assert "rollback_resolved" in table.stdout and "v1.1.0" in table.stdout
        for line in stderr.splitlines():  # the daemon logs JSON lines, never the token
            assert line.startswith("{"), line
        assert TOKEN not in stdout + stderr + table.stdout


def test_announce_rejects_unknown_service(tmp_path: Path) -> None:
    config = tmp_path / "watchdog.yaml"
    config.write_text(CONFIG)
    env = {
        **os.environ,
        "SVC": "http://127.0.0.1:9",
        "GH": "http://127.0.0.1:9",
        "GITHUB_TOKEN": TOKEN,
        "DB": f"sqlite:///{tmp_path / 'wd.db'}",
    }
    out = cli("announce", "-c", str(config), "--env", "prod", "--service", "nope", "--tag", "v1", env=env)
    assert out.returncode == 2 and "--service nope: no service named 'nope' (have: stamps-api)" in out.stderr
    assert not (tmp_path / "wd.db").exists()  # refused before the store was opened: none was created
    missing = cli("log", "-c", str(config), env=env)  # and reading does not create one either
    assert missing.returncode == 3 and "wd.db: does not exist" in missing.stderr
    assert not (tmp_path / "wd.db").exists()
