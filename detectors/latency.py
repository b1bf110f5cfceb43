"""Latency from histogram bucket counts, never from interpolated quantiles.

"p95 ≤ 300 ms" is the same statement as "at most 5% of requests take longer than 300 ms", and the
histogram counts requests above each bucket bound exactly. So a latency signal counts the requests
above the bucket bound at its threshold (``pick_bound``) and judges them with the same tests as any
other bad events (``detectors.compare``, ``detectors.change``, ``detectors.slo``; wired in
``watchdog.evaluate``). ``histogram_quantile`` (Prometheus's interpolation) is only for showing
people a familiar number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


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
