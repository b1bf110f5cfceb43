"""Per-step observations of one deploy, the common input of the benchmark's peers.

The watchdog itself reads metrics through ``watchdog.sources`` and ``watchdog.evaluate``; the
benchmark turns the same raw samples (same counting rules, ``watchdog.series``) into these arrays
once per scenario so every peer judges exactly the same data. All arrays have one entry per scrape
step: counts are the events *in* that step (increments), gauges the value at that step (NaN when
the scrape was missed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class CohortSeries:
    """One cohort's per-step data. ``buckets[t, j]`` counts requests in step t with latency ≤ le[j]."""

    requests: np.ndarray
    errors: np.ndarray
    buckets: np.ndarray
    claims: np.ndarray
    token_reuse: np.ndarray
    proof_attempts: np.ndarray
    proof_failures: np.ndarray
    probe: np.ndarray
    cost: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Observations:
    """A deploy as arrays: step end times ``t``; ``deploy_index`` is the first step after the deploy.

    With a canary, ``canary`` and ``baseline`` are set (before the deploy both run the old
    release: an A/A period); without one, ``all`` is set and the comparison is before/after.
    ``le`` are the histogram's bucket bounds (``inf`` last).
    """

    t: np.ndarray
    deploy_index: int
    step_s: float
    le: np.ndarray
    slo: dict[str, float]
    canary: CohortSeries | None = None
    baseline: CohortSeries | None = None
    all: CohortSeries | None = None

    @property
    def has_canary(self) -> bool:
        return self.canary is not None and self.baseline is not None


@dataclass(frozen=True)
class PeerDecision:
    """A peer's answer for one deploy, in the benchmark's vocabulary."""

    decision: str  # "rollback" | "promote" | "inconclusive"
    decided_index: int | None  # the step at whose end a rollback was decided
    signal: str | None = None
    evidence: dict[str, object] = field(default_factory=dict)
