"""Direct scraping of ``/metrics`` endpoints: the embedded default, no Prometheus needed.

A small in-memory time-series store filled by ``scrape_once`` (called on a schedule). Each target
adds its labels to its series, as Prometheus adds ``job``/``instance`` and target labels; each
probe records ``probe_success`` like the blackbox exporter, so healthchecks need no extra service.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from watchdog.clock import Clock
from watchdog.errors import SourceUnavailable
from watchdog.series import Selector, Series

LabelKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ScrapeTarget:
    url: str  # the full /metrics URL
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeTarget:
    """An HTTP healthcheck recorded as ``probe_success{probe=name, **labels}`` (1 or 0)."""

    name: str
    url: str
    labels: Mapping[str, str] = field(default_factory=dict)
    expect_status: int = 200


class ScrapeSource:
    name = "scrape"

    def __init__(
        self,
        targets: list[ScrapeTarget],
        clock: Clock,
        *,
        probes: list[ProbeTarget] | None = None,
        client: httpx.Client | None = None,
        timeout_s: float = 5.0,
        retention_s: float = 6 * 3600,
    ) -> None:
        self.targets = list(targets)
        self.probes = list(probes or [])
        self.clock = clock
        self.retention_s = retention_s
        self._client = client or httpx.Client(timeout=timeout_s)
        self._lock = threading.Lock()
        self._data: dict[LabelKey, deque[tuple[float, float]]] = {}
        self._last_ok: dict[str, bool] = {}
        self.scrapes = 0

    def _add(self, labels: Mapping[str, str], t: float, v: float) -> None:
        key = tuple(sorted(labels.items()))
        buf = self._data.get(key)
        if buf is None:
            buf = self._data[key] = deque()
        buf.append((t, v))
        horizon = t - self.retention_s
        while buf and buf[0][0] < horizon:
            buf.popleft()

    def scrape_once(self) -> None:
        """Scrape every target and run every probe once, stamped with the clock's time."""
        t = self.clock.now()
        for target in self.targets:
            try:
                resp = self._client.get(target.url)
                resp.raise_for_status()
                families = list(text_string_to_metric_families(resp.text))
            except (httpx.HTTPError, ValueError):
                with self._lock:
                    self._last_ok[target.url] = False
                    self._add({"__name__": "up", **target.labels}, t, 0.0)
                continue
            with self._lock:
                self._last_ok[target.url] = True
                self._add({"__name__": "up", **target.labels}, t, 1.0)
                for fam in families:
                    for sample in fam.samples:
                        if sample.name.endswith("_created"):
                            continue
                        self._add(
                            {**sample.labels, **target.labels, "__name__": sample.name},
                            t,
                            float(sample.value),
                        )
        for probe in self.probes:
            try:
                ok = self._client.get(probe.url).status_code == probe.expect_status
            except httpx.HTTPError:
                ok = False
            with self._lock:
                self._add(
                    {"__name__": "probe_success", "probe": probe.name, **probe.labels}, t, 1.0 if ok else 0.0
                )
        self.scrapes += 1

    def fetch(self, selector: Selector, start: float, end: float) -> list[Series]:
        with self._lock:
            if self.targets and self._last_ok and not any(self._last_ok.values()):
                raise SourceUnavailable("no scrape target answered at the last scrape: the watchdog is blind")
            snapshot = [(dict(k), list(buf)) for k, buf in self._data.items() if selector.matches(dict(k))]
        out = []
        for labels, samples in snapshot:
            pts = [(t, v) for t, v in samples if start <= t <= end]
            out.append(
                Series(
                    labels,
                    np.array([p[0] for p in pts], dtype=float),
                    np.array([p[1] for p in pts], dtype=float),
                )
            )
        return out
