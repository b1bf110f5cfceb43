"""Every outside call has a timeout: a server that accepts and never answers cannot hang the watchdog.

GitHub's calls are covered in test_github_faults.py, PagerDuty's in test_pagerduty.py, Unleash's in
test_unleash.py; here the rest: Prometheus, scraping and probes, dampening (HTTP and commands), and
smoke checks. A real loopback server that holds every request open stands in for the hung service.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from actions.dampen import run_action
from actions.smoke import run_checks
from watchdog.clock import RealClock
from watchdog.config import DampeningAction, SmokeCheck
from watchdog.errors import ActionRetryable, SourceUnavailable
from watchdog.series import Selector
from watchdog.sources import PrometheusSource, ScrapeSource, ScrapeTarget
from watchdog.sources.scrape import ProbeTarget


class _Hung(BaseHTTPRequestHandler):
    release: threading.Event

    def _hang(self) -> None:
        self.release.wait(30)

    do_GET = do_POST = _hang

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test output is the point."""


@pytest.fixture
def hung_url() -> Iterator[str]:
    """A server that accepts connections and never answers (until the test ends)."""
    release = threading.Event()
    handler = type("Hung", (_Hung,), {"release": release})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    release.set()
    server.shutdown()
    server.server_close()


def test_a_hung_prometheus_is_source_unavailable(hung_url: str) -> None:
    with pytest.raises(SourceUnavailable):
        PrometheusSource(hung_url, timeout_s=0.5).fetch(Selector.of("up"), 0, 60)


def test_a_hung_scrape_target_and_probe_count_as_down_and_leave_the_watchdog_blind(hung_url: str) -> None:
    probes = ScrapeSource(
        [], RealClock(), probes=[ProbeTarget("health", f"{hung_url}/health", {})], timeout_s=0.5
    )
    probes.scrape_once()
    (probe,) = probes.fetch(Selector.of("probe_success"), 0, 2e9)
    assert list(probe.v) == [0.0]  # a probe that times out failed
    targets = ScrapeSource([ScrapeTarget(f"{hung_url}/metrics", {})], RealClock(), timeout_s=0.5)
    targets.scrape_once()
    with pytest.raises(SourceUnavailable, match="blind"):
        targets.fetch(Selector.of("http_requests_total"), 0, 2e9)


def test_a_hung_dampening_endpoint_is_retryable(hung_url: str) -> None:
    action = DampeningAction(name="pause-workers", url=f"{hung_url}/pause", timeout_s=0.5)
    with httpx.Client() as client, pytest.raises(ActionRetryable, match="pause-workers: ReadTimeout"):
        run_action(client, action)


def test_a_hung_dampening_command_is_retryable() -> None:
    action = DampeningAction(
        name="drain",
        kind="command",
        argv=[sys.executable, "-c", "import time; time.sleep(30)"],
        timeout_s=0.5,
    )
    with httpx.Client() as client, pytest.raises(ActionRetryable, match=r"timed out after 0\.5s"):
        run_action(client, action)


def test_a_hung_service_fails_its_smoke_check_after_its_retries(hung_url: str) -> None:
    check = SmokeCheck(name="health", path="/health", latency_budget_s=0.3, retries=1)
    with httpx.Client() as client:
        (result,) = run_checks(client, hung_url, [check], RealClock(), retry_delay_s=0.05)
    assert not result.ok and result.attempts == 2
    assert result.problems == [result.problems[0]] and "Timeout" in result.problems[0]
