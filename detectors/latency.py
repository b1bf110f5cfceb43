"""Latency against the SLO from histogram bucket counts, never from interpolated quantiles.

"p95 ≤ 300 ms" is the same statement as "at most 5% of requests take longer than 300 ms", and the
histogram counts requests above each bucket bound exactly. So the p95 check is an SLO bound on the
fraction of requests above the bucket bound at the threshold, with the same anytime-valid test as
any other bad-event fraction. ``histogram_quantile`` (Prometheus's interpolation) is provided only
to show people a familiar number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from detectors.slo import slo_bound
from detectors.verdict import Outcome, Verdict


def pick_bound(bounds: Sequence[float], threshold_s: float) -> float:
    """The smallest finite bucket bound ≥ the threshold (rounding toward fewer false alarms).

    A request between the threshold and that bound is counted as fast; when the threshold is itself
    a bound (configure it so) nothing is rounded.
    """
    finite = sorted(b for b in bounds if math.isfinite(b))
    for b in finite:
        if b >= threshold_s - 1e-12:
            return b
    raise ValueError(f"no bucket bound at or above the threshold {threshold_s}s (largest: {finite[-1:]})")


def histogram_quantile(q: float, bounds: Sequence[float], cumulative: Sequence[float]) -> float:
    """Prometheus's ``histogram_quantile``: linear interpolation inside the bucket. Display only."""
    le = np.asarray(bounds, dtype=float)
    c = np.asarray(cumulative, dtype=float)
    order = np.argsort(le)
    le, c = le[order], c[order]
    if c.size == 0 or not math.isinf(le[-1]) or c[-1] <= 0:
        return math.nan
    c = np.maximum.accumulate(c)
    rank = q * c[-1]
    i = int(np.searchsorted(c, rank, side="left"))
    if i >= le.size - 1:  # falls in the +Inf bucket: Prometheus returns the largest finite bound
        return float(le[-2]) if le.size > 1 else math.nan
    lower = 0.0 if i == 0 else float(le[i - 1])
    below = 0.0 if i == 0 else float(c[i - 1])
    in_bucket = float(c[i]) - below
    if in_bucket <= 0:
        return float(le[i])
    return float(lower + (float(le[i]) - lower) * (rank - below) / in_bucket)


def latency_exceedance(
    bounds: Sequence[float],
    cumulative: Sequence[float],
    quantile: float,
    threshold_s: float,
    alpha: float,
    *,
    detector: str = "latency_exceedance",
) -> Verdict:
    """Judge "the ``quantile`` of latency is at most ``threshold_s``" from cumulative bucket counts.

    ``bounds`` are the ``le`` values (``inf`` for ``+Inf``), ``cumulative`` the number of requests in
    the window at or below each bound. The bad events are the requests above the chosen bound, the
    SLO rate is ``1 − quantile``.
    """
    le = [float(b) for b in bounds]
    if not any(math.isinf(b) for b in le):
        raise ValueError("histogram has no +Inf bucket")
    counts = dict(zip(le, (float(c) for c in cumulative), strict=True))
    bound = pick_bound(le, threshold_s)
    total = counts[math.inf]
    fast = min(counts[bound], total)
    verdict = slo_bound(total - fast, total, 1.0 - quantile, alpha, detector=detector)
    shown = histogram_quantile(quantile, le, [counts[b] for b in le])
    evidence = dict(verdict.evidence)
    evidence.update(
        {
            "quantile": quantile,
            "threshold_s": threshold_s,
            "bucket_bound_s": bound,
            "estimated_quantile_s": None if math.isnan(shown) else shown,
        }
    )
    summary = verdict.summary
    if verdict.outcome is not Outcome.NO_DATA:
        shown_txt = "n/a" if math.isnan(shown) else f"{shown * 1000:.0f} ms"
        summary = (
            f"p{quantile * 100:g} ≈ {shown_txt} vs SLO {threshold_s * 1000:.0f} ms; "
            f"{total - fast:.0f}/{total:.0f} requests above {bound * 1000:g} ms "
            f"(allowed {1 - quantile:.0%}): {verdict.outcome.value}"
        )
    return Verdict(verdict.outcome, detector, verdict.statistic, verdict.threshold, summary, evidence)
