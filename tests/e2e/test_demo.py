"""The README's demo command, run as a user would: one command, nothing external, exit 0."""

import subprocess
import sys
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.slow


FLAGS = ([], ["--healthy"], ["--veto"])


class Demo:
    """One ``rollback-watchdog demo`` in its own process (each waits on wall time, mostly idle)."""

    def __init__(self, flags: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "watchdog", "demo", *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._done: subprocess.CompletedProcess[str] | None = None

    def result(self) -> subprocess.CompletedProcess[str]:
        if self._done is None:
            try:
                out, err = self.process.communicate(timeout=300)
            finally:
                if self.process.poll() is None:
                    self.process.kill()
            self._done = subprocess.CompletedProcess(self.process.args, self.process.returncode, out, err)
        return self._done


@pytest.fixture(scope="module")
def demos() -> Iterator[dict[str, Demo]]:
    """The three demos side by side: each is a minute of mostly waiting, so together they take as
    long as the longest (they share nothing: each picks its own free ports and a temporary store)."""
    started = {" ".join(flags): Demo(flags) for flags in FLAGS}
    yield started
    for demo in started.values():
        if demo.process.poll() is None:
            demo.process.kill()


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
def test_demo_runs_end_to_end(flags: list[str], expect: list[str], demos: dict[str, Demo]) -> None:
    run = demos[" ".join(flags)].result()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for text in expect:
        assert text in run.stdout, text
    assert "Decision log" in run.stdout
    assert "demo-token-not-a-secret" not in run.stdout + run.stderr
    assert "demo-operator-token-not-a-secret" not in run.stdout + run.stderr
