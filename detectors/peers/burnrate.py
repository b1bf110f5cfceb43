"""Multi-window, multi-burn-rate SLO alerts from the Site Reliability Workbook, used as a rollback rule.

Source: Google, *The Site Reliability Workbook*, ch. 5 "Alerting on SLOs", the table of
recommended parameters for multiwindow, multi-burn-rate alerts (page: 1 h & 5 min at 14.4×,
6 h & 30 min at 6×; ticket: 1 d & 2 h at 3×, 3 d & 6 h at 1×). An alert fires when the burn rate —
the bad-event fraction over a window divided by the fraction the SLO allows — exceeds the factor
in both its long and its short window. Any firing alert, page or ticket, is a rollback here.

Windows end at the judged step and reach back into the pre-deploy data of the same cohort (the
canary, or the whole service without one). A scenario holds far less than 3 days, so a window
longer than the data simply uses all the data there is: early on the 1 d/3 d windows are no
longer than the 6 h one, and a sustained burn above 1× trips the slowest ticket alert as soon as
it outweighs the healthy history present.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from detectors.observations import Observations, PeerDecision
from detectors.peers._common import (
    LATENCY_SIGNALS,
    RATIO_SIGNALS,
    SIGNALS,
    buckets,
    counts,
    has_data,
    judged_cohort,
    slo_usable,
    slow_counts,
    steps_for,
    trailing_sums,
)


@dataclass(frozen=True)
class BurnRateAlert:
    """Fire when the burn rate exceeds ``factor`` over both ``long_s`` and ``short_s``."""

    name: str
    severity: str
    long_s: float
    short_s: float
    factor: float


WORKBOOK_ALERTS: tuple[BurnRateAlert, ...] = (
    BurnRateAlert("page-1h-5m", "page", 3600.0, 300.0, 14.4),
    BurnRateAlert("page-6h-30m", "page", 21600.0, 1800.0, 6.0),
    BurnRateAlert("ticket-1d-2h", "ticket", 86400.0, 7200.0, 3.0),
    BurnRateAlert("ticket-3d-6h", "ticket", 259200.0, 21600.0, 1.0),
)


def burn_rates(bad: np.ndarray, total: np.ndarray, budget: float, width: int) -> np.ndarray:
    """Per step: (bad / total over the trailing ``width`` steps) / ``budget``; NaN with no events."""
    bad_w, total_w = trailing_sums(bad, width), trailing_sums(total, width)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total_w > 0, bad_w / np.where(total_w > 0, total_w, 1.0) / budget, np.nan)


def _bad_and_total(obs: Observations, signal: str) -> tuple[np.ndarray, np.ndarray, float]:
    """The signal's bad events, all events and error budget (the bad fraction the SLO allows)."""
    cohort = judged_cohort(obs)
    if signal in RATIO_SIGNALS:
        spec = RATIO_SIGNALS[signal]
        return counts(cohort, spec.numerator), counts(cohort, spec.denominator), obs.slo[spec.slo_key]
    spec_l = LATENCY_SIGNALS[signal]
    b = buckets(cohort)
    return slow_counts(obs.le, b, obs.slo[spec_l.slo_key]), b[:, -1], 1.0 - spec_l.quantile


def burnrate_peer(
    obs: Observations,
    *,
    alerts: Sequence[BurnRateAlert] = WORKBOOK_ALERTS,
    signals: Iterable[str] | None = None,
) -> PeerDecision:
    """Evaluate the alerts at every step of the watch; the first step where one fires is the rollback.

    Judged signals: the 5xx ratio against ``error_rate`` and, where their SLO keys exist, token
    reuse and device-proof failures against their rates, and latency as the share of requests above
    the p95/p99 threshold's bucket bound against 5 %/1 %. ``signals`` narrows that list.
    """
    cohort = judged_cohort(obs)
    wanted = SIGNALS if signals is None else tuple(signals)
    judged = [s for s in SIGNALS if s in wanted and slo_usable(obs, s) and has_data(cohort, s)]
    first: tuple[int, int, str, BurnRateAlert] | None = None
    rates: dict[tuple[str, float], np.ndarray] = {}
    for order, s in enumerate(judged):
        bad, total, budget = _bad_and_total(obs, s)
        for a in alerts:
            for w in (a.long_s, a.short_s):
                if (s, w) not in rates:
                    rates[(s, w)] = burn_rates(bad, total, budget, steps_for(obs, w))
            firing = (rates[(s, a.long_s)] > a.factor) & (rates[(s, a.short_s)] > a.factor)
            hits = np.flatnonzero(firing[obs.deploy_index :])
            if hits.size:
                step = int(hits[0]) + obs.deploy_index
                if first is None or (step, order) < (first[0], first[1]):
                    first = (step, order, s, a)
    if first is None:
        return PeerDecision("promote", None, None, {"signals": judged, "alerts": [a.name for a in alerts]})
    step, _, s, a = first
    evidence: dict[str, object] = {
        "alert": a.name,
        "severity": a.severity,
        "factor": a.factor,
        "burn_long": float(rates[(s, a.long_s)][step]),
        "burn_short": float(rates[(s, a.short_s)][step]),
        "long_s": a.long_s,
        "short_s": a.short_s,
    }
    return PeerDecision("rollback", step, s, evidence)
