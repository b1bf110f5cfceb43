"""Signals → verdicts: fetch the raw samples a signal needs, count them, hand them to a detector.

The one place that knows how each signal kind maps onto the sources and the detectors; the
daemon, replay and the benchmark all go through it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from detectors.gauge import gauge_limit
from detectors.latency import latency_exceedance
from detectors.probe import probe_k_of_n
from detectors.rate import rate_bound
from detectors.slo import slo_bound
from detectors.verdict import Outcome, Verdict
from watchdog.config import (
    GaugeSignal,
    LatencySignal,
    ProbeSignal,
    RateSignal,
    RatioSignal,
    ServiceConfig,
    Severity,
    compile_promql,
)
from watchdog.errors import SourceUnavailable
from watchdog.phases import SignalState
from watchdog.series import Series, samples_by, sum_increase_by
from watchdog.sources.base import MetricSource

AnySignal = RatioSignal | LatencySignal | ProbeSignal | RateSignal | GaugeSignal
STATISTICAL = (RatioSignal, LatencySignal, RateSignal)


@dataclass(frozen=True)
class SignalResult:
    """A signal's state at one tick: the detector's verdict, or ``error`` when the source broke."""

    signal: str
    severity: Severity
    state: SignalState
    verdict: Verdict | None
    query: str
    error: str | None = None

    @property
    def summary(self) -> str:
        if self.error is not None:
            return f"source unavailable: {self.error}"
        return self.verdict.summary if self.verdict is not None else ""

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"signal": self.signal, "state": self.state.value, "query": self.query}
        if self.verdict is not None:
            out.update(self.verdict.as_dict())
        if self.error is not None:
            out["error"] = self.error
        return out


def signal_alpha(service: ServiceConfig, alpha: float) -> float:
    """The deploy's false-alarm budget split evenly (Bonferroni) over its statistical signals."""
    n = sum(1 for s in service.signals if isinstance(s, STATISTICAL) and s.severity is not Severity.OBSERVE)
    return alpha / max(n, 1)


class Evaluator:
    """Evaluates one service's signals for one cohort over a window, against one source."""

    def __init__(
        self, service: ServiceConfig, source: MetricSource, *, lookback_s: float, step_s: float = 15.0
    ):
        self.service = service
        self.source = source
        self.lookback_s = lookback_s
        self.step_s = step_s

    @property
    def cohort(self) -> str:
        s = self.service
        return s.canary_value if s.canary else s.all_value

    def _fetch(self, ref: Any, start: float, end: float) -> list[Series]:
        return self.source.fetch(ref.selector(self.service.match), start, end)

    def _by(self, *extra: str) -> list[str]:
        return [self.service.cohort_label, *extra] if self.service.canary else list(extra)

    def _mine(self, key: tuple[str, ...]) -> bool:
        return not self.service.canary or key[0] == self.service.canary_value

    def evaluate(self, signal: AnySignal, start: float, end: float, alpha: float) -> SignalResult:
        query = compile_promql(
            signal, extra=self.service.match, by=(self.service.cohort_label,) if self.service.canary else ()
        )
        try:
            verdict = self._verdict(signal, start, end, alpha)
        except SourceUnavailable as exc:
            return SignalResult(signal.name, signal.severity, SignalState.ERROR, None, query, str(exc))
        return SignalResult(signal.name, signal.severity, SignalState(verdict.outcome.value), verdict, query)

    def _verdict(self, signal: AnySignal, start: float, end: float, alpha: float) -> Verdict:
        lo = start - self.lookback_s
        if isinstance(signal, RatioSignal):
            bad = self._counts(self._fetch(signal.bad, lo, end), start, end)
            total = self._counts(self._fetch(signal.total, lo, end), start, end)
            b, t = min(bad, total), total
            return slo_bound(b, t, signal.slo, alpha)
        if isinstance(signal, LatencySignal):
            bucket = signal.histogram.model_copy(update={"metric": signal.histogram.metric + "_bucket"})
            counts = sum_increase_by(self._fetch(bucket, lo, end), self._by("le"), start, end)
            per_le: dict[float, float] = {}
            for key, v in counts.items():
                if self._mine(key):
                    le = float(key[-1].replace("+Inf", "inf"))
                    per_le[le] = per_le.get(le, 0.0) + v
            if math.inf not in per_le:
                return Verdict(Outcome.NO_DATA, "latency_exceedance", None, None, "no histogram data")
            bounds = sorted(per_le)
            return latency_exceedance(
                bounds, [per_le[b] for b in bounds], signal.quantile, signal.threshold_s, alpha
            )
        if isinstance(signal, ProbeSignal):
            groups = samples_by(self._fetch(signal.probe, start, end), self._by(), start, end)
            merged = sorted(p for key, pts in groups.items() if self._mine(key) for p in pts)
            return probe_k_of_n([v for _, v in merged], signal.k, signal.n)
        if isinstance(signal, RateSignal):
            events = self._counts(self._fetch(signal.events, lo, end), start, end)
            return rate_bound(events, end - start, signal.limit_per_s, alpha)
        return self._gauge(signal, start, end)

    def _gauge(self, signal: GaugeSignal, start: float, end: float) -> Verdict:
        if signal.promql is not None:
            fetch_expr = getattr(self.source, "fetch_expr", None)
            if fetch_expr is None:
                raise SourceUnavailable(f"signal {signal.name}: raw PromQL needs the Prometheus source")
            series: list[Series] = fetch_expr(signal.promql, start, end, self.step_s)
        else:
            series = self._fetch(signal.gauge, start, end)
        groups = samples_by(series, self._by(*signal.by), start, end)
        mine = {
            "/".join(k[1:] if self.service.canary else k) or "all": [v for _, v in pts]
            for k, pts in groups.items()
            if self._mine(k)
        }
        return gauge_limit(mine, signal.limit, signal.for_samples)

    def _counts(self, series: Sequence[Series], start: float, end: float) -> float:
        return sum(v for k, v in sum_increase_by(series, self._by(), start, end).items() if self._mine(k))
