"""The textbook two-proportion z-test, re-run at every step: what a hand-rolled canary check often does.

A pooled, one-sided z-test (canary worse) on the counts accumulated since the deploy, compared at
every scrape with the fixed-sample critical value z₁₋α (2.326 at α = 0.01). Each look alone has a
1 % false-alarm rate; looking every step gives many chances to cross, so over a watch the false
rollback rate is far above α — the peeking problem this peer exists to show
(Armitage, McPherson & Rowe 1969, "Repeated significance tests on accumulating data").
"""

from __future__ import annotations

import numpy as np
from scipy import stats

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
)


def two_proportion_z(
    x1: np.ndarray | float, n1: np.ndarray | float, x2: np.ndarray | float, n2: np.ndarray | float
) -> np.ndarray:
    """Pooled z for p₁ > p₂: (p₁ − p₂) / √(p̂(1 − p̂)(1/n₁ + 1/n₂)); NaN with no events or no variance."""
    x1, n1, x2, n2 = (np.asarray(v, dtype=float) for v in (x1, n1, x2, n2))
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (x1 + x2) / (n1 + n2)
        se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        z = (x1 / n1 - x2 / n2) / se
    return np.where((n1 > 0) & (n2 > 0) & (se > 0), z, np.nan)


def _bad_and_total(obs: Observations, signal: str, which: str) -> tuple[np.ndarray, np.ndarray]:
    cohort = getattr(obs, which)
    if signal in RATIO_SIGNALS:
        spec = RATIO_SIGNALS[signal]
        return np.nan_to_num(counts(cohort, spec.numerator)), np.nan_to_num(counts(cohort, spec.denominator))
    b = np.nan_to_num(buckets(cohort))
    return slow_counts(obs.le, b, obs.slo[LATENCY_SIGNALS[signal].slo_key]), b[:, -1]


def naive_peer(obs: Observations, alpha: float = 0.01) -> PeerDecision:
    """Roll back at the first step where any signal's cumulative z exceeds z₁₋α; else promote.

    Ratio signals compare bad-event fractions; latency compares the fraction of requests above the
    smallest bucket bound at or over the SLO threshold (so latency needs its SLO key). Without a
    canary the post-deploy counts are tested against the whole pre-deploy period.
    """
    critical = float(stats.norm.isf(alpha))
    cohort = judged_cohort(obs)
    start = obs.deploy_index
    best: tuple[int, int, str, float] | None = None
    judged: list[str] = []
    for order, s in enumerate(SIGNALS):
        if not has_data(cohort, s) or (s in LATENCY_SIGNALS and not slo_usable(obs, s)):
            continue
        judged.append(s)
        if obs.has_canary:
            x1, n1 = _bad_and_total(obs, s, "canary")
            x2, n2 = _bad_and_total(obs, s, "baseline")
            cx2, cn2 = np.cumsum(x2[start:]), np.cumsum(n2[start:])
        else:
            x1, n1 = _bad_and_total(obs, s, "all")
            cx2 = np.full(len(x1) - start, x1[:start].sum())
            cn2 = np.full(len(n1) - start, n1[:start].sum())
        z = two_proportion_z(np.cumsum(x1[start:]), np.cumsum(n1[start:]), cx2, cn2)
        hits = np.flatnonzero(z > critical)
        if hits.size and (best is None or (int(hits[0]), order) < (best[0], best[1])):
            best = (int(hits[0]), order, s, float(z[hits[0]]))
    if best is None:
        return PeerDecision("promote", None, None, {"critical_z": critical, "signals": judged})
    offset, _, s, z_value = best
    evidence: dict[str, object] = {"z": z_value, "critical_z": critical, "alpha": alpha, "looks": offset + 1}
    return PeerDecision("rollback", start + offset, s, evidence)
