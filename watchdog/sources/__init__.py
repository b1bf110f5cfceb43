"""Metric sources: Prometheus, direct scraping of ``/metrics``, and replay of recorded scenarios.

Every source answers one question — the raw samples of the series a selector matches in a time
range — so the counting (``watchdog.series``) and everything after it is shared.
"""

from watchdog.sources.base import MetricSource
from watchdog.sources.prometheus import PrometheusSource
from watchdog.sources.replay import ReplaySource, Scenario, load_scenario
from watchdog.sources.scrape import ScrapeSource, ScrapeTarget

__all__ = [
    "MetricSource",
    "PrometheusSource",
    "ReplaySource",
    "Scenario",
    "ScrapeSource",
    "ScrapeTarget",
    "load_scenario",
]
