"""The README's demo command, run as a user would: one command, nothing external, exit 0."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("flags", "expect"),
    [
        (
            [],
            [
                "rollback_decided v1.1.0 → v1.0.0",
                "rollback_resolved v1.1.0 → v1.0.0",
                "outcome: resolved",
                "stable release pinned now: v1.0.0",
                "workflow runs dispatched at: v1.1.0, v1.0.0",
                "watchdog API: http://127.0.0.1:",
            ],
        ),
        (
            ["--veto"],
            [
                "step go_ahead started",
                "operator vetoes the rollback through the API: POST /v1/incidents/1/veto → 200",
                "veto v1.1.0 → v1.0.0: vetoed",
                "veto v1.1.0 → v1.0.0: veto_sent",
                "nothing was changed; release v1.1.0 is vetoed",
                "workflow runs dispatched at: v1.1.0\n",  # the rollback's run was never dispatched
                "stable release pinned now: v1.0.0",
                "outcome: vetoed",
            ],
        ),
        (
            ["--healthy"],
            ["promoted v1.0.0 → v1.2.0", "outcome: successful", "stable release pinned now: v1.2.0"],
        ),
    ],
)
def test_demo_runs_end_to_end(flags: list[str], expect: list[str]) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "watchdog", "demo", *flags], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for text in expect:
        assert text in run.stdout, text
    assert "Decision log" in run.stdout
    assert "demo-token-not-a-secret" not in run.stdout + run.stderr
    assert "demo-operator-token-not-a-secret" not in run.stdout + run.stderr
