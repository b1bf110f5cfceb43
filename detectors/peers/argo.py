"""Argo Rollouts background analysis with Prometheus metrics, as an AnalysisRun would run on a deploy.

Semantics follow ``argoproj/argo-rollouts``:

- ``analysis/analysis.go`` — each measurement is *Successful*, *Failed* or *Error*; a metric is
  *Failed* once ``failed > failureLimit`` (default 0) and *Error* once ``consecutiveErrors >
  consecutiveErrorLimit`` (default 4, ``utils/defaults``); a successful or failed measurement
  resets the consecutive-error count; after an error the next measurement comes after
  ``DefaultErrorRetryInterval`` (10 s) instead of ``interval``; one completed bad metric
  terminates the run with the worst phase.
- ``rollout/analysis.go`` (``setPauseOrAbort``) — a *Failed* **or** *Error* run aborts the rollout
  (our rollback); *Inconclusive* pauses it. A run still running when the rollout completes is
  terminated as *Successful* (our promote).
- ``utils/evaluate/evaluate.go`` and ``docs/features/analysis.md`` ("Handling Metric Results") —
  with only ``successCondition: result[0] <= limit``, a measurement fails when the condition is
  false (so it is never *Inconclusive*), and NaN compares false, so a NaN result (0/0: no requests
  in the window) is *Failed*; an empty result vector (no samples at all) makes ``result[0]`` an
  evaluation error: *Error*.
- ``metricproviders/prometheus/prometheus.go`` — one instant query per measurement.

The queries are ``sum(rate(bad[1m])) / sum(rate(all[1m]))`` and
``histogram_quantile(q, sum by (le) (rate(bucket[1m])))`` on the canary (or the whole service
without a canary). ``rate``'s extrapolation scales numerator and denominator (and every bucket)
alike, so the window's summed step increments give the same ratios and quantiles.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from detectors.observations import Observations, PeerDecision
from detectors.peers._common import (
    LATENCY_SIGNALS,
    RATIO_SIGNALS,
    SIGNALS,
    buckets,
    counts,
    finite_or_none,
    has_data,
    histogram_quantiles,
    judged_cohort,
    slo_key,
    slo_usable,
    steps_for,
    trailing_sums,
    trailing_valid,
)

SUCCESSFUL, FAILED, ERROR = "Successful", "Failed", "Error"
#: ``analysis.go``: ``DefaultErrorRetryInterval``.
ERROR_RETRY_S = 10.0
#: Slack for comparing measurement times with scrape times built from float additions.
_TIME_EPS = 1e-6


@dataclass(frozen=True)
class Measurement:
    """One measurement: when (seconds since the run started), its value (None: empty result), phase."""

    at_s: float
    value: float | None
    phase: str


def _window_values(obs: Observations, signal: str, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Per step: the query's value over the ``width`` steps ending there, and whether it had samples."""
    cohort = judged_cohort(obs)
    if signal in RATIO_SIGNALS:
        spec = RATIO_SIGNALS[signal]
        num, den = counts(cohort, spec.numerator), counts(cohort, spec.denominator)
        num_w, den_w = trailing_sums(num, width), trailing_sums(den, width)
        present = trailing_valid(den, width) > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(den_w > 0, num_w / np.where(den_w > 0, den_w, 1.0), math.nan)
        return value, present
    b = buckets(cohort)
    value = histogram_quantiles(LATENCY_SIGNALS[signal].quantile, obs.le, trailing_sums(b, width))
    present = trailing_valid(b[:, -1], width) > 0
    return value, present


def argo_peer(
    obs: Observations,
    failure_limit: int = 3,
    consecutive_error_limit: int = 4,
    interval_s: float = 60.0,
    *,
    window_s: float = 60.0,
    nan_phase: Literal["Failed", "Successful", "Error"] = "Failed",
) -> PeerDecision:
    """One metric per signal with an SLO key and data, measured from the deploy every ``interval_s``.

    ``failure_limit`` 3 is the docs' examples' value (Argo's own default is 0; pass 0 for it).
    ``nan_phase`` is what a NaN result becomes: *Failed* with the plain ``result[0] <= limit``
    condition, *Successful* for templates guarding with ``isNaN(result[0]) || ...``. The first
    measurement is taken when the run starts, at the deploy, over the minute before it; a decision
    taken then is reported at the deploy's first step.
    """
    cohort = judged_cohort(obs)
    width = steps_for(obs, window_s)
    metrics = [s for s in SIGNALS if slo_usable(obs, s) and has_data(cohort, s)]
    if not metrics:
        return PeerDecision("inconclusive", None, None, {"reason": "no metric with both data and an SLO"})
    t = np.asarray(obs.t, dtype=float)
    start = float(t[obs.deploy_index]) - obs.step_s
    end = float(t[-1])
    windows = {s: _window_values(obs, s, width) for s in metrics}
    failed = dict.fromkeys(metrics, 0)
    errors = dict.fromkeys(metrics, 0)
    history: dict[str, list[Measurement]] = {s: [] for s in metrics}
    queue = [(start, SIGNALS.index(s), s) for s in metrics]
    heapq.heapify(queue)
    while queue:
        at, order, s = heapq.heappop(queue)
        if at > end + _TIME_EPS:
            break
        i = int(np.searchsorted(t, at + _TIME_EPS, side="right")) - 1
        values, present = windows[s]
        if i < 0 or not present[i]:
            m = Measurement(at - start, None, ERROR)
        elif math.isnan(values[i]):
            m = Measurement(at - start, math.nan, nan_phase)
        else:
            v = float(values[i])
            m = Measurement(at - start, v, SUCCESSFUL if v <= obs.slo[slo_key(s)] else FAILED)
        history[s].append(m)
        if m.phase == ERROR:
            errors[s] += 1
        else:
            errors[s] = 0
            failed[s] += m.phase == FAILED
        phase = (
            FAILED if failed[s] > failure_limit else ERROR if errors[s] > consecutive_error_limit else None
        )
        if phase is not None:
            decided = max(obs.deploy_index, int(np.searchsorted(t, at - _TIME_EPS, side="left")))
            message = (
                f"failed ({failed[s]}) > failureLimit ({failure_limit})"
                if phase == FAILED
                else f"consecutiveErrors ({errors[s]}) > consecutiveErrorLimit ({consecutive_error_limit})"
            )
            return PeerDecision("rollback", decided, s, _evidence(history, phase, message, s))
        heapq.heappush(queue, (at + (ERROR_RETRY_S if m.phase == ERROR else interval_s), order, s))
    return PeerDecision("promote", None, None, _evidence(history, SUCCESSFUL, "Run Terminated", None))


def _evidence(
    history: dict[str, list[Measurement]], phase: str, message: str, metric: str | None
) -> dict[str, object]:
    summary: dict[str, object] = {}
    for s, ms in history.items():
        summary[s] = {
            "count": sum(m.phase != ERROR for m in ms),
            "successful": sum(m.phase == SUCCESSFUL for m in ms),
            "failed": sum(m.phase == FAILED for m in ms),
            "error": sum(m.phase == ERROR for m in ms),
            "last_value": finite_or_none(ms[-1].value) if ms else None,
        }
    out: dict[str, object] = {"phase": phase, "message": message, "metrics": summary}
    if metric is not None:
        out["measurements"] = [(m.at_s, finite_or_none(m.value), m.phase) for m in history[metric]]
    return out
