"""The canary-vs-baseline share test: calibrated under continuous peeking, powerful, vectorised."""

import numpy as np

from detectors.compare import ShareTest, combine_any, dispersion
from detectors.verdict import Outcome

ALPHA = 0.01


def simulate(rng, n, steps, rate, rho, p0, ratio, *, shared_cv=0.0, canary_cv=0.0, drift=False, phi=1.0):
    """First step at which each of n services is flagged (−1: never)."""
    test = ShareTest(n=n, alpha=ALPHA, phi=phi)
    first = np.full(n, -1)
    for s in range(steps):
        share = rho * (1 + 0.5 * np.sin(s / 10)) if drift else rho
        total = rng.poisson(rate * 15, size=n)
        canary = rng.binomial(total, share)
        base = total - canary
        burst = rng.gamma(1 / shared_cv**2, shared_cv**2, size=n) if shared_cv else 1.0
        own = rng.gamma(1 / canary_cv**2, canary_cv**2, size=n) if canary_cv else 1.0
        c = rng.binomial(canary, np.clip(p0 * ratio * burst * own, 0, 1))
        b = rng.binomial(base, np.clip(p0 * burst, 0, 1))
        test.update(c, b, np.where(total > 0, canary / np.maximum(total, 1), share))
        hit = (test.log_e()[0] >= np.log(1 / ALPHA)) & (first < 0)
        first[hit] = s
    return first


def test_false_alarms_stay_below_alpha_however_often_it_looks() -> None:
    rng = np.random.default_rng(1)
    for rate, rho in ((2, 0.1), (50, 0.05), (500, 0.3)):
        flagged = simulate(rng, 2000, 120, rate, rho, 0.005, 1.0)
        assert np.mean(flagged >= 0) <= 2 * ALPHA, (rate, rho)


def test_shared_incidents_and_drifting_splits_do_not_fool_it() -> None:
    """Bursts that hit both cohorts and a canary share that moves over time cancel out."""
    rng = np.random.default_rng(2)
    flagged = simulate(rng, 2000, 120, 100, 0.1, 0.005, 1.0, shared_cv=1.0, drift=True)
    assert np.mean(flagged >= 0) <= 2 * ALPHA


def test_canary_only_overdispersion_is_tamed_by_the_measured_dispersion() -> None:
    rng = np.random.default_rng(3)
    n = 1000
    # the A/A period before the deploy measures the dispersion of the canary's share
    c = rng.binomial(rng.binomial(rng.poisson(3000, 80), 0.2), np.clip(0.005 * rng.gamma(4, 0.25, 80), 0, 1))
    b = rng.binomial(rng.poisson(12000, 80), 0.005)
    phi = dispersion(c, b, np.full(80, 0.2))
    assert phi > 1.0
    untempered = simulate(rng, n, 120, 200, 0.2, 0.005, 1.0, canary_cv=0.5)
    tempered = simulate(rng, n, 120, 200, 0.2, 0.005, 1.0, canary_cv=0.5, phi=phi)
    assert np.mean(tempered >= 0) <= 2 * ALPHA < np.mean(untempered >= 0)


def test_a_real_regression_is_caught_fast() -> None:
    rng = np.random.default_rng(4)
    flagged = simulate(rng, 300, 120, 100, 0.1, 0.005, 5.0)
    assert np.mean(flagged >= 0) == 1.0
    assert np.median(flagged) <= 8  # two minutes of 15 s steps for 5× at 10 req/s of canary traffic


def test_vectorised_update_equals_one_by_one() -> None:
    rng = np.random.default_rng(5)
    c, b, rho = rng.integers(0, 5, (20, 3)), rng.integers(0, 20, (20, 3)), rng.uniform(0.05, 0.5, (20, 3))
    many = ShareTest(n=3, alpha=ALPHA)
    single = [ShareTest(n=1, alpha=ALPHA) for _ in range(3)]
    for i in range(20):
        many.update(c[i], b[i], rho[i])
        for j in range(3):
            single[j].update(c[i, j : j + 1], b[i, j : j + 1], rho[i, j : j + 1])
    np.testing.assert_allclose(many.log_e()[0], [s.log_e()[0][0] for s in single])


def test_verdicts_explain_themselves() -> None:
    t = ShareTest(n=1, alpha=ALPHA)
    assert t.verdict().outcome is Outcome.NO_DATA
    t.update(np.array([40]), np.array([40]), np.array([0.1]))
    v = t.verdict()
    assert v.outcome is Outcome.FAIL
    assert v.evidence["canary_bad"] == 40 and v.evidence["expected_canary_bad"] == 8.0
    assert "5.00×" in v.summary
    healthy = ShareTest(n=1, alpha=ALPHA)
    for _ in range(50):
        healthy.update(np.array([10]), np.array([90]), np.array([0.1]))
    assert healthy.verdict().outcome is Outcome.PASS


def test_omnibus_is_the_mean_of_e_values() -> None:
    tests = [ShareTest(n=1, alpha=ALPHA) for _ in range(4)]
    tests[3].update(np.array([30]), np.array([10]), np.array([0.2]))  # only the slowest bound shifts
    combined = combine_any([t.verdict() for t in tests], "omnibus")
    logs = [t.log_e()[0][0] for t in tests]
    assert combined.statistic == np.log(np.mean(np.exp(logs)))
    assert combined.outcome is Outcome.FAIL
