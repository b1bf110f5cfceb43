"""Before/after without a canary: calibrated against the pre-deploy rate, and powerful."""

import numpy as np

from detectors.change import before_after, binomial_dispersion, upper_bound
from detectors.verdict import Outcome


def first_fail(rng, p_after, watches=400, looks=120, p_before=0.005, n_before=80_000, per_step=600):
    flagged = 0
    for _ in range(watches):
        bb = rng.binomial(n_before, p_before)
        bad = np.cumsum(rng.binomial(per_step, p_after, looks))
        total = per_step * np.arange(1, looks + 1)
        for k in range(0, looks, 4):  # every minute
            if before_after(bb, n_before, bad[k], total[k], 0.01).outcome is Outcome.FAIL:
                flagged += 1
                break
    return flagged / watches


def test_same_rate_after_the_deploy_is_rarely_flagged() -> None:
    assert first_fail(np.random.default_rng(1), 0.005) <= 0.02


def test_a_tripled_rate_is_found() -> None:
    assert first_fail(np.random.default_rng(2), 0.015, watches=100) == 1.0


def test_reference_and_dispersion() -> None:
    assert 0.005 < upper_bound(50, 10_000, 0.005) < 0.008
    assert upper_bound(0, 0, 0.01) == 1.0
    rng = np.random.default_rng(3)
    n = np.full(100, 1000)
    assert binomial_dispersion(rng.binomial(n, 0.01), n) == 1.0
    bursty = rng.binomial(n, np.clip(0.01 * rng.gamma(1, 1, 100), 0, 1))
    assert binomial_dispersion(bursty, n) > 2.0
    v = before_after(10, 10_000, 5, 100, 0.01)
    assert v.outcome is Outcome.FAIL and v.evidence["reference_rate"] > 0.001
    assert before_after(0, 0, 5, 100, 0.01).outcome is Outcome.NO_DATA
