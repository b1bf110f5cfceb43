"""The SLO bound: right answers on clear cases, and false alarms controlled under peeking."""

import math

import numpy as np
import pytest

from detectors.slo import confidence_sequence, slo_bound
from detectors.verdict import Outcome


def test_no_events_is_no_data_never_failed() -> None:
    v = slo_bound(0, 0, 0.01, 0.01)
    assert v.outcome is Outcome.NO_DATA


def test_clear_regression_fails_with_evidence() -> None:
    v = slo_bound(80, 1000, 0.01, 0.01)
    assert v.outcome is Outcome.FAIL
    assert v.statistic is not None and v.threshold is not None and v.statistic >= v.threshold
    assert v.evidence["bad"] == 80 and v.evidence["total"] == 1000
    assert v.evidence["ci_low"] > 0.01  # the confidence bound itself excludes the SLO


def test_clearly_healthy_passes_and_borderline_is_inconclusive() -> None:
    assert slo_bound(4, 2000, 0.01, 0.01).outcome is Outcome.PASS
    assert slo_bound(1, 20, 0.01, 0.01).outcome is Outcome.INCONCLUSIVE


def test_confidence_sequence_contains_the_rate() -> None:
    lo, hi = confidence_sequence(30, 1000, 0.01)
    assert lo < 0.03 < hi
    assert lo >= 0.0 and hi <= 1.0


@pytest.mark.parametrize("bad", [-1, 11])
def test_rejects_impossible_counts(bad: int) -> None:
    with pytest.raises(ValueError, match="bad <= total"):
        slo_bound(bad, 10, 0.01, 0.01)


def test_false_alarm_rate_under_continuous_peeking_stays_below_alpha() -> None:
    """A release exactly at its SLO, checked after every batch for a long watch, rarely fails.

    Fixed-sample tests peeked at like this exceed α many times over; Ville's inequality keeps the
    mixture test at or below α. 400 seeded watches of 120 looks: expect ≤ 1% (allowing noise: 3%).
    """
    rng = np.random.default_rng(7)
    p0, alpha, watches, looks, batch = 0.01, 0.01, 400, 120, 50
    alarms = 0
    for _ in range(watches):
        bad = np.cumsum(rng.binomial(batch, p0, size=looks))
        total = batch * np.arange(1, looks + 1)
        if any(
            slo_bound(float(b), float(t), p0, alpha, interval=False).outcome is Outcome.FAIL
            for b, t in zip(bad, total, strict=False)
        ):
            alarms += 1
    assert alarms / watches <= 0.03


def test_power_on_a_5x_regression() -> None:
    rng = np.random.default_rng(11)
    caught = 0
    for _ in range(50):
        bad = np.cumsum(rng.binomial(50, 0.05, size=40))
        total = 50 * np.arange(1, 41)
        caught += any(
            slo_bound(float(b), float(t), 0.01, 0.01, interval=False).outcome is Outcome.FAIL
            for b, t in zip(bad, total, strict=False)
        )
    assert caught == 50
    assert math.isfinite(slo_bound(0, 10**7, 0.01, 0.01).statistic or 0.0)
