"""Arithmetic the peers share: per-step ratios, trailing-window sums, Prometheus quantiles.

Every peer reads the same ``Observations`` the same way, so differences between peers come from
their decision rules, not from how each one happened to count. Missing data stays NaN here; each
peer decides what NaN means in its own semantics (Kayenta removes it, Argo's condition fails on it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors.latency import pick_bound
from detectors.observations import CohortSeries, Observations

#: The signals every peer judges, in a fixed order (the order decides ties between signals).
SIGNALS: tuple[str, ...] = ("http_5xx", "latency_p95", "latency_p99", "token_reuse", "device_proof_failures")


@dataclass(frozen=True)
class RatioSignal:
    """A bad-event fraction: ``numerator`` events among ``denominator`` events of a cohort."""

    numerator: str
    denominator: str
    slo_key: str


@dataclass(frozen=True)
class LatencySignal:
    """A latency quantile read from the histogram, with the SLO key holding its threshold (s)."""

    quantile: float
    slo_key: str


RATIO_SIGNALS: dict[str, RatioSignal] = {
    "http_5xx": RatioSignal("errors", "requests", "error_rate"),
    "token_reuse": RatioSignal("token_reuse", "claims", "token_reuse_rate"),
    "device_proof_failures": RatioSignal("proof_failures", "proof_attempts", "device_proof_failure_rate"),
}
LATENCY_SIGNALS: dict[str, LatencySignal] = {
    "latency_p95": LatencySignal(0.95, "latency_p95_s"),
    "latency_p99": LatencySignal(0.99, "latency_p99_s"),
}


def counts(cohort: CohortSeries, name: str) -> np.ndarray:
    """A count array of the cohort as float (NaN kept)."""
    return np.asarray(getattr(cohort, name), dtype=float)


def buckets(cohort: CohortSeries) -> np.ndarray:
    """The cohort's per-step cumulative bucket counts as a float (steps × buckets) matrix."""
    return np.asarray(cohort.buckets, dtype=float)


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise ``numerator / denominator``; NaN where the denominator is 0 (0/0) or missing."""
    num = np.asarray(numerator, dtype=float)
    den = np.asarray(denominator, dtype=float)
    out = np.full(np.broadcast(num, den).shape, math.nan)
    ok = np.isfinite(num) & np.isfinite(den) & (den > 0)
    np.divide(num, den, out=out, where=ok)
    return out


def trailing_sums(x: np.ndarray, width: int) -> np.ndarray:
    """Sum of the last ``width`` entries ending at each index (fewer at the start), NaN counted as 0.

    Works along the first axis, so a (steps × buckets) matrix gives windowed bucket counts.
    """
    if width < 1:
        raise ValueError("window width must be at least one step")
    arr = np.nan_to_num(np.asarray(x, dtype=float), nan=0.0)
    csum = np.cumsum(arr, axis=0)
    out = csum.copy()
    out[width:] -= csum[:-width]
    return out


def trailing_valid(x: np.ndarray, width: int) -> np.ndarray:
    """How many non-NaN entries each trailing window of ``width`` steps holds."""
    finite = np.isfinite(np.asarray(x, dtype=float)).astype(float)
    return trailing_sums(finite, width)


def histogram_quantiles(q: float, le: Sequence[float] | np.ndarray, cumulative: np.ndarray) -> np.ndarray:
    """Prometheus's ``histogram_quantile`` for each row of a (rows × buckets) cumulative matrix.

    Same rules as ``detectors.latency.histogram_quantile`` (bounds sorted, counts made monotonic,
    NaN for an empty row, the largest finite bound for a rank in the +Inf bucket, linear
    interpolation inside the bucket with 0 as the first bucket's lower bound), vectorised because
    the peers ask for one quantile per step.
    """
    bounds = np.asarray(le, dtype=float)
    c = np.atleast_2d(np.asarray(cumulative, dtype=float))
    order = np.argsort(bounds)
    bounds, c = bounds[order], np.nan_to_num(c[:, order], nan=0.0)
    rows = c.shape[0]
    out = np.full(rows, math.nan)
    if bounds.size < 2 or not math.isinf(bounds[-1]):
        return out
    c = np.maximum.accumulate(c, axis=1)
    total = c[:, -1]
    live = total > 0
    rank = q * total
    reached = c[:, :-1] >= rank[:, None]
    b = np.where(reached.any(axis=1), reached.argmax(axis=1), bounds.size - 1)
    in_inf = b == bounds.size - 1
    b_fin = np.minimum(b, bounds.size - 2)
    upper = bounds[b_fin]
    lower = np.where(b_fin > 0, bounds[np.maximum(b_fin - 1, 0)], 0.0)
    below = np.where(b_fin > 0, c[np.arange(rows), np.maximum(b_fin - 1, 0)], 0.0)
    in_bucket = c[np.arange(rows), b_fin] - below
    with np.errstate(divide="ignore", invalid="ignore"):
        interpolated = lower + (upper - lower) * (rank - below) / in_bucket
    first_nonpositive = (b_fin == 0) & (bounds[0] <= 0)
    value = np.where(in_inf, bounds[-2], np.where(first_nonpositive, bounds[0], interpolated))
    out[live] = value[live]
    return out


def slow_counts(le: Sequence[float] | np.ndarray, cumulative: np.ndarray, threshold_s: float) -> np.ndarray:
    """Requests per row above the smallest bucket bound ≥ the threshold (the bucket-exact tail)."""
    bounds = [float(b) for b in np.asarray(le, dtype=float)]
    bound = pick_bound(bounds, threshold_s)
    c = np.atleast_2d(np.asarray(cumulative, dtype=float))
    total = c[:, bounds.index(math.inf)]
    fast = c[:, bounds.index(bound)]
    return np.asarray(total - np.minimum(fast, total), dtype=float)


def has_data(cohort: CohortSeries | None, signal: str) -> bool:
    """Whether the scenario carries this signal at all (some step with a positive denominator)."""
    if cohort is None:
        return False
    if signal in RATIO_SIGNALS:
        den = counts(cohort, RATIO_SIGNALS[signal].denominator)
    else:
        b = buckets(cohort)
        if b.ndim != 2 or b.size == 0:
            return False
        den = b[:, -1]
    return bool(np.any(np.nan_to_num(den, nan=0.0) > 0))


def slo_key(signal: str) -> str:
    """The ``Observations.slo`` key holding the signal's limit."""
    return RATIO_SIGNALS[signal].slo_key if signal in RATIO_SIGNALS else LATENCY_SIGNALS[signal].slo_key


def slo_usable(obs: Observations, signal: str) -> bool:
    """The signal has an SLO we can judge: a positive budget, a latency threshold within the buckets."""
    key = slo_key(signal)
    if key not in obs.slo:
        return False
    value = float(obs.slo[key])
    if signal in RATIO_SIGNALS:
        return value > 0
    finite = [float(b) for b in np.asarray(obs.le, dtype=float) if math.isfinite(b)]
    return bool(finite) and value <= max(finite) + 1e-12


def judged_cohort(obs: Observations) -> CohortSeries:
    """The cohort a single-cohort peer watches: the canary, or everything without a canary."""
    cohort = obs.canary if obs.has_canary else obs.all
    if cohort is None:
        raise ValueError("observations carry neither a canary/baseline pair nor an 'all' cohort")
    return cohort


def steps_for(obs: Observations, seconds: float) -> int:
    """A duration in whole scrape steps, at least one."""
    return max(1, round(seconds / obs.step_s))


def finite_or_none(value: float | None) -> float | None:
    """A number for the evidence: NaN and infinities become None so the evidence stays valid JSON."""
    return value if value is not None and math.isfinite(value) else None
