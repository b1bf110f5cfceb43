"""Healthchecks: k failures among the last n probe results fail the signal.

One red probe is usually a flap (a slow GC, a restarted pod); k of n is the classic rule that
tolerates flaps but not an outage. Missing results (NaN: the probe did not run or the scrape was
missed) are skipped, never counted as failures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detectors.verdict import Outcome, Verdict


def probe_k_of_n(results: Sequence[float], k: int, n: int, *, detector: str = "probe_k_of_n") -> Verdict:
    """``results`` in time order: 1 success, 0 failure, NaN missing."""
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k} n={n}")
    r = np.asarray(results, dtype=float)
    seen = r[~np.isnan(r)][-n:]
    failures = int(np.sum(seen < 0.5))
    evidence = {
        "k": k,
        "n": n,
        "seen": int(seen.size),
        "failures": failures,
        "last": [int(v) for v in seen.tolist()],
        "statistic_name": "failures in the last n",
    }
    if seen.size == 0:
        return Verdict(Outcome.NO_DATA, detector, None, float(k), "no probe results", evidence)
    if failures >= k:
        outcome, summary = Outcome.FAIL, f"{failures} of the last {seen.size} probes failed (limit {k - 1})"
    elif seen.size < n:
        outcome, summary = Outcome.INCONCLUSIVE, f"{failures} failed of {seen.size} probes so far (need {n})"
    else:
        outcome, summary = Outcome.PASS, f"{failures} of the last {n} probes failed (limit {k - 1})"
    return Verdict(outcome, detector, float(failures), float(k), summary, evidence)
