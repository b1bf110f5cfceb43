"""Gauges (cost per tenant, queue depth): a limit that must hold persistently, per group.

A gauge is not a count of events, so there is no likelihood to test; the rule is Prometheus's
``for:`` clause: the signal fails when a group's gauge stayed above the limit in every sample
of the last ``min_samples``, so that one spike does not roll a release back.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

import numpy as np

from detectors.verdict import Outcome, Verdict


def gauge_limit(
    groups: Mapping[str, Sequence[float]], limit: float, min_samples: int, *, detector: str = "gauge_limit"
) -> Verdict:
    """``groups`` maps a group (e.g. a tenant) to its samples in time order; NaN samples are skipped."""
    if min_samples < 1:
        raise ValueError("min_samples must be >= 1")
    worst_name, worst_run, worst_value = "", 0, float("nan")
    seen_any = False
    complete = True
    for name, values in sorted(groups.items()):
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        if v.size == 0:
            continue
        seen_any = True
        complete = complete and v.size >= min_samples
        above = v > limit
        run = int(np.argmin(above[::-1])) if not above.all() else int(v.size)
        if run > worst_run or (run == worst_run and not worst_name):
            worst_name, worst_run, worst_value = name, run, float(v[-1])
    evidence = {
        "limit": limit,
        "min_samples": min_samples,
        "worst_group": worst_name,
        "worst_run": worst_run,
        "worst_last_value": worst_value,
        "groups": len(groups),
        "statistic_name": "consecutive samples above the limit (worst group)",
    }
    if not seen_any:
        return Verdict(Outcome.NO_DATA, detector, None, float(min_samples), "no samples", evidence)
    if worst_run >= min_samples:
        return Verdict(
            Outcome.FAIL,
            detector,
            float(worst_run),
            float(min_samples),
            f"{worst_name}: {worst_value:.4g} above the limit {limit:.4g} for {worst_run} samples",
            evidence,
        )
    outcome = Outcome.PASS if complete else Outcome.INCONCLUSIVE
    return Verdict(
        outcome,
        detector,
        float(worst_run),
        float(min_samples),
        f"all groups within {limit:.4g} (worst run {worst_run}/{min_samples})",
        evidence,
    )


def gauge_ratio(
    canary: Mapping[str, Sequence[float]],
    baseline: Mapping[str, Sequence[float]],
    max_ratio: float,
    min_samples: int,
    *,
    detector: str = "gauge_ratio",
) -> Verdict:
    """Canary versus baseline per group: fails when a group's canary value stayed above
    ``max_ratio`` × the baseline's median (over the same samples) for ``min_samples`` samples."""
    ratios: dict[str, list[float]] = {}
    for name, values in canary.items():
        ref = [float(x) for x in baseline.get(name, ()) if math.isfinite(x)]
        if not ref:
            continue
        med = float(statistics.median(ref))  # (numpy's median, the same value, at a tenth of the cost)
        if med <= 0:
            continue
        ratios[name] = [float(v) / med for v in values]
    verdict = gauge_limit(ratios, max_ratio, min_samples, detector=detector)
    evidence = dict(verdict.evidence)
    evidence["statistic_name"] = "consecutive samples above max_ratio × baseline (worst group)"
    summary = verdict.summary.replace("above the limit", "× baseline, above").replace("within", "within ×")
    return Verdict(verdict.outcome, detector, verdict.statistic, verdict.threshold, summary, evidence)
