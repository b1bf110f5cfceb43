"""The peers on small synthetic deploys: they catch what they should, when their rules say they would."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats

from detectors.latency import histogram_quantile
from detectors.observations import CohortSeries, Observations, PeerDecision
from detectors.peers import (
    WORKBOOK_ALERTS,
    argo_peer,
    burnrate_peer,
    kayenta_peer,
    naive_peer,
    two_proportion_z,
)
from detectors.peers._common import histogram_quantiles, slow_counts, trailing_sums

STEP_S = 15.0
LE = np.array([0.025, 0.05, 0.1, 0.25, 0.3, 0.5, 0.8, 1.0, 2.5, math.inf])
SLO = {
    "error_rate": 0.01,
    "latency_p95_s": 0.3,
    "latency_p99_s": 0.8,
    "token_reuse_rate": 0.002,
    "device_proof_failure_rate": 0.02,
}
PEERS: dict[str, Callable[[Observations], PeerDecision]] = {
    "kayenta": kayenta_peer,
    "argo": argo_peer,
    "burnrate": burnrate_peer,
    "naive": naive_peer,
}


def cohort(
    rng: np.random.Generator,
    n: int,
    *,
    rps: float = 100.0,
    error_rate: float | np.ndarray = 0.002,
    median_s: float | np.ndarray = 0.08,
    reuse_rate: float | np.ndarray = 0.0005,
    proof_failure_rate: float | np.ndarray = 0.005,
    http_only: bool = False,
) -> CohortSeries:
    """Poisson traffic with binomial bad events and log-normal latency (σ 0.5) binned into ``LE``."""
    requests = rng.poisson(rps * STEP_S, n).astype(float)
    errors = rng.binomial(requests.astype(int), np.broadcast_to(error_rate, n)).astype(float)
    medians = np.broadcast_to(median_s, n)
    cdf = stats.norm.cdf((np.log(LE[None, :-1]) - np.log(medians[:, None])) / 0.5)
    probs = np.diff(np.concatenate([np.zeros((n, 1)), cdf, np.ones((n, 1))], axis=1), axis=1)
    per_bucket = np.array([rng.multinomial(int(r), p) for r, p in zip(requests, probs, strict=True)])
    hist = np.cumsum(per_bucket, axis=1).astype(float)
    claims = rng.poisson(20 * STEP_S, n).astype(float)
    attempts = rng.poisson(10 * STEP_S, n).astype(float)
    zeros = np.zeros(n)
    return CohortSeries(
        requests=requests,
        errors=errors,
        buckets=np.zeros((n, LE.size)) if http_only else hist,
        claims=zeros if http_only else claims,
        token_reuse=zeros
        if http_only
        else rng.binomial(claims.astype(int), np.broadcast_to(reuse_rate, n)) * 1.0,
        proof_attempts=zeros if http_only else attempts,
        proof_failures=zeros
        if http_only
        else rng.binomial(attempts.astype(int), np.broadcast_to(proof_failure_rate, n)) * 1.0,
        probe=np.ones(n),
    )


def observations(
    n: int,
    deploy_index: int,
    *,
    canary: CohortSeries | None = None,
    baseline: CohortSeries | None = None,
    everything: CohortSeries | None = None,
) -> Observations:
    return Observations(
        t=1_764_300_000.0 + STEP_S * (np.arange(n) + 1),
        deploy_index=deploy_index,
        step_s=STEP_S,
        le=LE,
        slo=dict(SLO),
        canary=canary,
        baseline=baseline,
        all=everything,
    )


def after_deploy(n: int, deploy_index: int, before: float, after: float) -> np.ndarray:
    return np.where(np.arange(n) >= deploy_index, after, before)


def counted(n: int, errors_per_step: np.ndarray | float, requests_per_step: float = 1500.0) -> CohortSeries:
    """Exact counts, no noise: ``requests_per_step`` requests and the given errors at each step."""
    zeros = np.zeros(n)
    return CohortSeries(
        requests=np.full(n, requests_per_step),
        errors=np.broadcast_to(np.asarray(errors_per_step, dtype=float), n).copy(),
        buckets=np.zeros((n, LE.size)),
        claims=zeros,
        token_reuse=zeros,
        proof_attempts=zeros,
        proof_failures=zeros,
        probe=np.ones(n),
    )


# --- every peer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PEERS))
def test_clearly_bad_canary_is_rolled_back_after_the_deploy(name: str) -> None:
    """10× the baseline's 5xx ratio at 100 req/s (0.4 % → 4 %, four times the error budget)."""
    rng = np.random.default_rng(7)
    n, d = 160, 40
    obs = observations(
        n,
        d,
        canary=cohort(rng, n, error_rate=after_deploy(n, d, 0.004, 0.04), http_only=True),
        baseline=cohort(rng, n, error_rate=0.004, http_only=True),
    )
    decision = PEERS[name](obs)
    assert decision.decision == "rollback"
    assert decision.decided_index is not None and decision.decided_index >= d
    assert decision.signal == "http_5xx"


@pytest.mark.parametrize("name", sorted(PEERS))
def test_clean_aa_deploy_is_promoted(name: str) -> None:
    rng = np.random.default_rng(11)
    n, d = 160, 40
    obs = observations(n, d, canary=cohort(rng, n), baseline=cohort(rng, n))
    decision = PEERS[name](obs)
    assert decision.decision == "promote", decision.evidence
    assert decision.decided_index is None


@pytest.mark.parametrize("name", sorted(PEERS))
def test_before_after_mode_without_a_canary(name: str) -> None:
    rng = np.random.default_rng(5)
    n, d = 160, 80
    bad = observations(
        n, d, everything=cohort(rng, n, error_rate=after_deploy(n, d, 0.004, 0.04), http_only=True)
    )
    good = observations(n, d, everything=cohort(rng, n, error_rate=0.002, http_only=True))
    assert PEERS[name](bad).decision == "rollback"
    assert PEERS[name](good).decision == "promote"


# --- Argo Rollouts ------------------------------------------------------------------------------


def _minutes_bad(n: int, d: int, minutes: list[int]) -> np.ndarray:
    """Errors per step: 5 % in the given minutes after the deploy (minute k = steps d+4(k−1) … d+4k−1)."""
    errors = np.zeros(n)
    for k in minutes:
        errors[d + 4 * (k - 1) : d + 4 * k] = 75.0
    return errors


def test_argo_failure_limit_3_tolerates_three_failed_measurements_not_four() -> None:
    n, d = 100, 20
    three = observations(n, d, everything=counted(n, _minutes_bad(n, d, [2, 4, 6])))
    four = observations(n, d, everything=counted(n, _minutes_bad(n, d, [2, 4, 6, 8])))
    kept = argo_peer(three, failure_limit=3)
    assert kept.decision == "promote"
    assert kept.evidence["metrics"] == {
        "http_5xx": {"count": 21, "successful": 18, "failed": 3, "error": 0, "last_value": 0.0}
    }
    failed = argo_peer(four, failure_limit=3)
    assert failed.decision == "rollback"
    assert failed.decided_index == d + 4 * 8 - 1  # the measurement at the end of minute 8
    assert failed.evidence["phase"] == "Failed"
    assert failed.evidence["message"] == "failed (4) > failureLimit (3)"
    first = argo_peer(three, failure_limit=0)  # Argo's own default: the first failure fails the run
    assert first.decision == "rollback" and first.decided_index == d + 4 * 2 - 1


def test_argo_nan_fails_the_plain_condition_and_passes_an_isnan_guard() -> None:
    n, d = 60, 8
    c = counted(n, 0.0)
    c.requests[d + 8 : d + 12] = 0.0  # a minute without traffic: 0/0 = NaN
    obs = observations(n, d, everything=c)
    assert argo_peer(obs, failure_limit=0).decided_index == d + 11
    assert argo_peer(obs, failure_limit=0, nan_phase="Successful").decision == "promote"


def test_argo_five_consecutive_errors_abort_the_rollout() -> None:
    """No samples in the window: ``result[0]`` of an empty vector is an Error, retried every 10 s."""
    n, d = 60, 8
    c = counted(n, 0.0)
    c.requests[d + 8 : d + 20] = math.nan
    c.errors[d + 8 : d + 20] = math.nan
    decision = argo_peer(observations(n, d, everything=c))
    # Errors at 180, 190, 200, 210, 220 s after the start: the fifth exceeds consecutiveErrorLimit 4.
    assert decision.decision == "rollback"
    assert decision.evidence["phase"] == "Error"
    assert decision.evidence["message"] == "consecutiveErrors (5) > consecutiveErrorLimit (4)"
    assert decision.decided_index == d + 14


# --- SRE workbook burn rates --------------------------------------------------------------------


def test_burn_rate_fires_on_a_20x_burn_within_five_minutes() -> None:
    n, d = 120, 4  # one healthy minute of history, then 20 % errors against a 1 % budget
    obs = observations(n, d, everything=counted(n, after_deploy(n, d, 1.5, 300.0)))
    decision = burnrate_peer(obs)
    assert decision.decision == "rollback"
    # With one minute of history the 1 d/2 h windows hold 4.1× at the first bad step already.
    assert decision.decided_index == d
    assert decision.evidence["alert"] == "ticket-1d-2h"
    page = burnrate_peer(obs, alerts=WORKBOOK_ALERTS[:1])
    assert page.decided_index is not None and d <= page.decided_index < d + 20
    assert page.evidence["burn_long"] > 14.4 and page.evidence["burn_short"] > 14.4  # type: ignore[operator]


def test_burn_rate_does_not_fire_on_a_2x_burn_with_a_healthy_history() -> None:
    n, d = 600, 480  # two healthy hours, then 30 minutes at 2 % errors against a 1 % budget
    obs = observations(n, d, everything=counted(n, after_deploy(n, d, 0.0, 30.0)))
    decision = burnrate_peer(obs)
    assert decision.decision == "promote"


def test_burn_rate_short_history_lets_the_slow_ticket_alert_fire_on_a_2x_burn() -> None:
    """Documented consequence of windows longer than the data: 3 d and 6 h both cover what exists."""
    n, d = 120, 40
    decision = burnrate_peer(observations(n, d, everything=counted(n, after_deploy(n, d, 0.0, 30.0))))
    assert decision.decision == "rollback"
    assert decision.evidence["alert"] == "ticket-3d-6h"
    assert (
        decision.decided_index == d + 40
    )  # burn over all data first exceeds 1 with as many bad steps as good


# --- naive z-test -------------------------------------------------------------------------------


def test_naive_z_test_rolls_back_on_a_look_the_fixed_sample_test_would_not_reject() -> None:
    """An early excursion that washes out: peeking catches it, the test at the end does not."""
    n, d = 60, 10
    canary_errors = np.full(n, 15.0)
    canary_errors[d : d + 4] = 30.0
    canary_errors[d + 4 :] = 12.0
    obs = observations(n, d, canary=counted(n, canary_errors), baseline=counted(n, 15.0))
    decision = naive_peer(obs)
    assert decision.decision == "rollback"
    assert decision.decided_index == d + 1  # the second look: z = 3.2 > 2.326
    final_z = two_proportion_z(canary_errors[d:].sum(), 1500.0 * (n - d), 15.0 * (n - d), 1500.0 * (n - d))
    assert float(final_z) < stats.norm.isf(0.01)  # one look at the end: no rejection
    # The largest z on the way (4.5 after four steps) stays below a stricter level's critical value.
    assert naive_peer(obs, alpha=1e-6).decision == "promote"


# --- Kayenta ------------------------------------------------------------------------------------


def test_kayenta_fails_a_clearly_worse_canary_within_a_few_intervals() -> None:
    rng = np.random.default_rng(3)
    n, d = 160, 40
    worse = cohort(
        rng,
        n,
        error_rate=after_deploy(n, d, 0.002, 0.02),
        median_s=after_deploy(n, d, 0.08, 0.2),
        reuse_rate=after_deploy(n, d, 0.0005, 0.005),
        proof_failure_rate=after_deploy(n, d, 0.005, 0.05),
    )
    decision = kayenta_peer(observations(n, d, canary=worse, baseline=cohort(rng, n)))
    assert decision.decision == "rollback"
    assert decision.decided_index is not None and d <= decision.decided_index < d + 3 * 4
    assert decision.evidence["spinnaker_stage"] == "TERMINAL"


def test_kayenta_one_bad_metric_of_five_is_diluted_unless_critical() -> None:
    """Equal weights: one High metric of five scores 80, above both thresholds."""
    rng = np.random.default_rng(3)
    n, d = 160, 40
    obs = observations(
        n,
        d,
        canary=cohort(rng, n, error_rate=after_deploy(n, d, 0.004, 0.04)),
        baseline=cohort(rng, n, error_rate=0.004),
    )
    diluted = kayenta_peer(obs)
    assert diluted.decision == "promote"
    assert diluted.evidence["score"] == 80.0
    assert diluted.evidence["metrics"]["http_5xx"]["classification"] == "High"  # type: ignore[index]
    critical = kayenta_peer(obs, critical_signals={"http_5xx"})
    assert critical.decision == "rollback" and critical.decided_index == d + 3


# --- shared arithmetic --------------------------------------------------------------------------


def test_vectorised_histogram_quantile_matches_the_scalar_one() -> None:
    rng = np.random.default_rng(2)
    rows = np.cumsum(rng.integers(0, 50, size=(200, LE.size)), axis=1).astype(float)
    rows[:5] = 0.0  # empty steps give NaN
    rows[5:10, :-1] = 0.0  # everything in +Inf gives the largest finite bound
    for q in (0.5, 0.95, 0.99):
        got = histogram_quantiles(q, LE, rows)
        want = np.array([histogram_quantile(q, list(LE), list(r)) for r in rows])
        np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)


def test_trailing_sums_and_slow_counts() -> None:
    assert trailing_sums(np.array([1.0, 2.0, math.nan, 4.0]), 2).tolist() == [1.0, 3.0, 2.0, 4.0]
    cumulative = np.array([[10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]])
    assert slow_counts(LE, cumulative, 0.3).tolist() == [50.0]  # above the 0.3 s bucket
    assert slow_counts(LE, cumulative, 0.27).tolist() == [50.0]  # rounded up to the 0.3 s bound


def test_each_peer_decides_a_scenario_sized_deploy() -> None:
    """How fast they do it is measured by ``benchmarks/run.py``, not asserted here."""
    rng = np.random.default_rng(13)
    n, d = 240, 120  # 30 min before and after the deploy at 15 s steps
    obs = observations(n, d, canary=cohort(rng, n), baseline=cohort(rng, n))
    for name, peer in PEERS.items():
        decision = peer(obs)
        assert decision.decision in ("rollback", "promote", "inconclusive"), name
        assert decision.decision != "rollback" or decision.decided_index is not None, name
