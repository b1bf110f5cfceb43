"""A real Prometheus and our direct scraper watch the same demo service: same counts, same window.

The window's edges sit in quiet periods (no traffic), after both have scraped, so both hold the
exact counter values at both edges and the counts must agree to the request.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.fixtures.prometheus import PromTarget, run_prometheus
from watchdog.clock import RealClock
from watchdog.config import EnvironmentPolicy, GaugeSignal, parse_config
from watchdog.demo.service import ServiceProcess
from watchdog.errors import SourceUnavailable
from watchdog.evaluate import WatchEvaluator
from watchdog.phases import SignalState
from watchdog.series import Selector, sum_increase_by
from watchdog.sources import PrometheusSource, ScrapeSource, ScrapeTarget

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _scrape_loop(src: ScrapeSource, stop: threading.Event) -> None:
    while not stop.is_set():
        src.scrape_once()
        stop.wait(0.5)


def test_prometheus_and_direct_scraping_count_the_same() -> None:
    with ServiceProcess("v1.1.0", "canary", seed=3) as svc:
        labels = {"job": "stamps-api"}
        clock = RealClock()
        scrape = ScrapeSource([ScrapeTarget(svc.url + "/metrics", labels)], clock)
        stop = threading.Event()
        loop = threading.Thread(target=_scrape_loop, args=(scrape, stop), daemon=True)
        with run_prometheus([PromTarget(svc.url + "/metrics", labels)], interval_s=1.0) as prom:
            loop.start()
            try:
                with httpx.Client() as client:  # create the series before the window opens
                    client.get(svc.url + "/health")
                prom.wait_for_samples('http_requests_total{route="/health"}', 1)
                time.sleep(2.5)
                t_a = time.time()
                time.sleep(0.5)
                sent = 300
                with httpx.Client() as client, ThreadPoolExecutor(16) as pool:

                    def claim(i: int) -> int:
                        body = {"tenant": "t1", "card": f"c{i % 7}", "token": f"tok-{i}", "dry_run": False}
                        return client.post(
                            svc.url + "/v1/stamps/claim", json=body, headers={"X-Device-Proof": "p"}
                        ).status_code

                    statuses = list(pool.map(claim, range(sent)))
                time.sleep(3.0)
                t_b = time.time()
                promsrc = PrometheusSource(prom.url, timeout_s=5)
                for sel, by in (
                    (Selector.of("http_requests_total"), ["cohort", "code", "route"]),
                    (Selector.of("http_request_duration_seconds_bucket"), ["le"]),
                    (Selector.of("stamps_claims_total"), ["cohort"]),
                ):
                    lo = t_a - 60
                    from_prom = sum_increase_by(promsrc.fetch(sel, lo, t_b), by, t_a, t_b)
                    from_scrape = sum_increase_by(scrape.fetch(sel, lo, t_b), by, t_a, t_b)
                    assert from_prom == from_scrape, sel.metric
                requests = sum_increase_by(
                    scrape.fetch(Selector.of("http_requests_total"), t_a - 60, t_b), [], t_a, t_b
                )
                assert requests[()] == sent
                errors = sum(
                    v
                    for k, v in sum_increase_by(
                        scrape.fetch(Selector.of("http_requests_total", {"code": "=~5.."}), t_a - 60, t_b),
                        ["code"],
                        t_a,
                        t_b,
                    ).items()
                )
                assert errors == sum(1 for code in statuses if code >= 500) > 0  # the bad release's 5xx
            finally:
                stop.set()
                loop.join()


def test_signals_judge_the_same_over_prometheus_and_scraping() -> None:
    """The whole evaluation path (selectors with the service's matchers, counts, detectors)."""
    cfg = parse_config((ROOT / "config" / "demo.yaml").read_text(), "demo.yaml")
    # only a canary runs here (no baseline to compare with), so the signals with an SLO decide
    service = cfg.services[0]
    counted = {
        s.name for s in service.signals if s.kind in ("ratio", "latency") and not getattr(s, "omnibus", 0)
    }
    gauge = GaugeSignal(
        name="cost_promql",
        kind="gauge",
        promql="max by (cohort, tenant) (cost_per_tenant)",
        limit=1.4,
        for_samples=2,
    )
    with ServiceProcess("v1.1.0", "canary", seed=5) as svc:
        labels = {"job": "stamps-api"}
        scrape = ScrapeSource([ScrapeTarget(svc.url + "/metrics", labels)], RealClock())
        stop = threading.Event()
        loop = threading.Thread(target=_scrape_loop, args=(scrape, stop), daemon=True)
        with run_prometheus([PromTarget(svc.url + "/metrics", labels)], interval_s=1.0) as prom:
            loop.start()
            try:
                prom.wait_for_samples("http_requests_total", 1)
                time.sleep(2.5)
                t_a = time.time()
                with httpx.Client() as client, ThreadPoolExecutor(16) as pool:

                    def claim(i: int) -> None:
                        body = {"tenant": f"t{i % 3}", "card": "c", "token": f"k-{i}", "dry_run": False}
                        client.post(svc.url + "/v1/stamps/claim", json=body, headers={"X-Device-Proof": "p"})

                    list(pool.map(claim, range(400)))
                time.sleep(3.0)
                t_b = time.time()
                policy = EnvironmentPolicy(warmup_s=0, calibration_s=0)
                verdicts = {}
                for name, source in (("prometheus", PrometheusSource(prom.url)), ("scrape", scrape)):
                    ev = WatchEvaluator(
                        service, source, policy, watch_start=t_a, alpha=0.01, lookback_s=60, step_s=1.0
                    )
                    verdicts[name] = {r.signal: r for r in ev.advance(t_b) if r.signal in counted}
                for signal, res in verdicts["scrape"].items():
                    other = verdicts["prometheus"][signal]
                    assert res.state == other.state, signal
                    assert res.verdict is not None and other.verdict is not None
                    assert res.verdict.evidence["bad"] == other.verdict.evidence["bad"], signal
                    assert res.verdict.evidence["total"] == other.verdict.evidence["total"], signal
                assert verdicts["scrape"]["http_5xx"].state is SignalState.FAIL  # the bad release fails
                with_raw = service.model_copy(update={"signals": [gauge]})
                raw = WatchEvaluator(
                    with_raw,
                    PrometheusSource(prom.url),
                    policy,
                    watch_start=t_a,
                    alpha=0.01,
                    lookback_s=60,
                    step_s=1.0,
                )
                cost = raw.advance(t_b)[0]
                assert cost.state is SignalState.FAIL, cost.summary  # v1.1.0 costs 1.8 per request
                assert cost.query == gauge.promql
            finally:
                stop.set()
                loop.join()


def test_unreachable_prometheus_is_source_unavailable_not_a_verdict() -> None:
    src = PrometheusSource("http://127.0.0.1:9", timeout_s=1)
    with pytest.raises(SourceUnavailable, match="did not answer"):
        src.fetch(Selector.of("up"), 0, 60)
